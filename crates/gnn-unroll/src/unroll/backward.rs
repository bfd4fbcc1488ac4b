//! Gradients through the unrolled forward pass: the implicit gradient of the final baseband
//! problem chained to the virtual-channel coefficients and to the analog matrix, and the
//! straight-through softmin gradient (35) of the greedy selection (module docs of [`super`]).

use beamlab_linalg_ops::c64;
use ndarray::{Array1, Array2, Axis};

use super::{
    UnrollSettings, UnrolledOutput, VirtualChannels, evaluate_selection, select, virtual_channels, virtual_channels_cov,
};
use crate::Error;
use crate::data::Instance;
use crate::implicit::{QosGradient, implicit_vjp, power_envelope, powers_beams_to_v};
use crate::qos::QosSystem;
use crate::util::adjoint;

/// Gradients of a loss through one unrolled forward pass.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Backward {
    /// `∂L/∂c: [K × 4]` with the selection held fixed.
    pub(crate) coeffs: Array2<f64>,
    /// Wirtinger gradient `∂L/∂A*: [N × M]` with `A` treated as continuous
    /// (`dL = 2 Re tr((∂L/∂A*)^H dA)`), the input of the straight-through selection gradient.
    pub(crate) analog: Array2<c64>,
}

/// Chains Hermitian gradients of `S_k = A^H R̃^S_k A`, `I_k = A^H R̃^I_k A` to the coefficients:
/// `∂/∂c_k1 = Re tr(∇_{S_k} A^H R̂_k A)`, `∂/∂c_k2 = τ_k Re tr(∇_{S_k} A^H A)`, likewise `c_k3, c_k4`.
pub(super) fn coefficient_chain(h_est: &[Array1<c64>], a: &Array2<c64>, g: &QosGradient) -> Array2<f64> {
    let ah = adjoint(a);
    let n = a.nrows() as f64;
    coefficient_chain_with(h_est.len(), a, g, |u| {
        let b = ah.dot(&h_est[u]);
        let tau = h_est[u].iter().map(|z| z.norm_sqr()).sum::<f64>() / n;
        (crate::util::outer(b.view(), b.view()), tau)
    })
}

/// `coefficient_chain` for (possibly full-rank) covariances `R̂_k`.
pub(super) fn coefficient_chain_cov(r: &[Array2<c64>], a: &Array2<c64>, g: &QosGradient) -> Array2<f64> {
    let ah = adjoint(a);
    let n = a.nrows() as f64;
    coefficient_chain_with(r.len(), a, g, |u| (ah.dot(&r[u]).dot(a), r[u].diag().iter().map(|z| z.re).sum::<f64>() / n))
}

/// The shared chain: `proj(u) = (A^H R̂_u A, τ_u)`.
fn coefficient_chain_with(
    k: usize,
    a: &Array2<c64>,
    g: &QosGradient,
    proj: impl Fn(usize) -> (Array2<c64>, f64),
) -> Array2<f64> {
    let gram = adjoint(a).dot(a);
    let tr = |g: &Array2<c64>, e: &Array2<c64>| g.iter().zip(e.t().iter()).map(|(p, q)| (p * q).re).sum::<f64>();
    let mut dc = Array2::<f64>::zeros((k, 4));
    for u in 0..k {
        let (p, tau) = proj(u);
        dc[[u, 0]] = tr(&g.wanted[u], &p);
        dc[[u, 1]] = tau * tr(&g.wanted[u], &gram);
        dc[[u, 2]] = tr(&g.interference[u], &p);
        dc[[u, 3]] = tau * tr(&g.interference[u], &gram);
    }
    dc
}

/// Gradients of a loss with upstream `grad_margin[k] = ∂L/∂d_k` and
/// `grad_power = ∂L/∂(Σ_k s p_k)` through the forward pass `out` (module docs).
///
/// # Errors
/// [`Error::ShapeMismatch`] for mismatched lengths; [`Error::Singular`] from the implicit solve.
pub(crate) fn backward(
    inst: &Instance,
    out: &UnrolledOutput,
    grad_margin: &[f64],
    grad_power: f64,
) -> Result<Backward, Error> {
    let k = inst.h.len();
    if grad_margin.len() != k {
        return Err(Error::shape("margin gradients (one per user)", k, grad_margin.len()));
    }
    if out.coeffs.dim() != (k, 4) {
        return Err(Error::shape("forward-pass coefficients", format!("{k}x4"), format!("{:?}", out.coeffs.dim())));
    }
    let sol = &out.solution;
    let (n, m) = out.analog.dim();
    let x = &out.powers;
    // b_k = A^H h_k, gains G_kj = |b_k^H w_j|², ∂G_kj/∂A* = (b_k^H w_j) h_k w_j^H.
    let ah = adjoint(&out.analog);
    let b: Vec<Array1<c64>> = inst.h.iter().map(|h| ah.dot(h)).collect();
    let bw = |u: usize, j: usize| -> c64 { b[u].iter().zip(sol.beams.column(j)).map(|(p, q)| p.conj() * q).sum() };
    let db = 10.0 / std::f64::consts::LN_10;
    let mut grad_x = vec![grad_power; k];
    let mut grad_w = vec![Array1::<c64>::zeros(m); k];
    let mut d_analog = Array2::<c64>::zeros((n, m));
    let add_gain = |d: &mut Array2<c64>, scale: f64, u: usize, j: usize, z: c64| {
        let hw = crate::util::outer(inst.h[u].view(), sol.beams.column(j));
        d.scaled_add(z * scale, &hw);
    };
    for u in 0..k {
        let gu = grad_margin[u] * db;
        if gu == 0.0 {
            continue;
        }
        let den: f64 = 1.0 + (0..k).filter(|&j| j != u).map(|j| x[j] * bw(u, j).norm_sqr()).sum::<f64>();
        let own = bw(u, u);
        // ∂ ln SINR_u / ∂x_u = 1/x_u; ∂/∂x_j = −G_uj / D_u; ∂/∂G_uu = 1/G_uu; ∂/∂G_uj = −x_j / D_u.
        grad_x[u] += gu / x[u];
        grad_w[u].scaled_add(c64::new(2.0 * gu / own.norm_sqr(), 0.0) * own, &b[u]);
        add_gain(&mut d_analog, gu / own.norm_sqr(), u, u, own);
        for j in (0..k).filter(|&j| j != u) {
            let c = bw(u, j);
            grad_x[j] -= gu * c.norm_sqr() / den;
            grad_w[j].scaled_add(c64::new(-2.0 * gu * x[j] / den, 0.0) * c, &b[u]);
            add_gain(&mut d_analog, -gu * x[j] / den, u, j, c);
        }
    }
    // x = s p with s = min(1, P_max / Σp): when the projection is active,
    // ∂x_i/∂p_j = s (δ_ij − p_i / Σp).
    let grad_p: Vec<f64> = if out.scale < 1.0 {
        let total: f64 = sol.powers.iter().sum();
        let dot: f64 = grad_x.iter().zip(&sol.powers).map(|(g, p)| g * p).sum();
        grad_x.iter().map(|g| out.scale * (g - dot / total)).collect()
    } else {
        grad_x
    };
    let grad_v = powers_beams_to_v(sol, &grad_p, &grad_w)?;
    let g = implicit_vjp(&out.system, sol, &grad_v, &vec![0.0; k])?;
    // ∂L/∂A* through S_k and I_k: R̃ A ∇ with R̃ = c ĥĥ^H + c' τ I.
    let taus: Vec<f64> = inst.h_est.iter().map(|h| h.iter().map(|z| z.norm_sqr()).sum::<f64>() / n as f64).collect();
    analog_chain_with(&mut d_analog, &out.analog, &out.coeffs, &g, &taus, |u, grad| {
        let h = &inst.h_est[u];
        // ĥ (ĥ^H A G).
        let row = grad.t().dot(&ah.dot(h).mapv(|z| z.conj())); // (ĥ^H A G)^T
        crate::util::outer(h.view(), row.mapv(|z| z.conj()).view())
    });
    Ok(Backward { coeffs: coefficient_chain(&inst.h_est, &out.analog, &g), analog: d_analog })
}

/// Adds `∂L/∂A*` through `S_k = A^H R̃^S_k A`, `I_k = A^H R̃^I_k A` to `d_analog`:
/// `Σ_k (c_k1 R̂_k A ∇_{S_k} + c_k2 τ_k A ∇_{S_k} + c_k3 R̂_k A ∇_{I_k} + c_k4 τ_k A ∇_{I_k})`,
/// with `r_a_grad(k, ∇) = R̂_k A ∇`.
fn analog_chain_with(
    d_analog: &mut Array2<c64>,
    a: &Array2<c64>,
    coeffs: &Array2<f64>,
    g: &QosGradient,
    taus: &[f64],
    r_a_grad: impl Fn(usize, &Array2<c64>) -> Array2<c64>,
) {
    for (u, tau) in taus.iter().enumerate() {
        for (grad, c_r, c_i) in
            [(&g.wanted[u], coeffs[[u, 0]], coeffs[[u, 1]]), (&g.interference[u], coeffs[[u, 2]], coeffs[[u, 3]])]
        {
            *d_analog += &r_a_grad(u, grad).mapv(|z| z * c_r);
            d_analog.scaled_add(c64::new(c_i * tau, 0.0), &a.dot(grad));
        }
    }
}

/// `∂L/∂A*` through the virtual channels built from (possibly full-rank) covariances `R̂_k`
/// ([`virtual_channels_cov`]) for Hermitian upstream gradients `g` of `S_k`, `I_k`.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `r`, `coeffs` and `g` disagree in the number of users or sizes.
#[cfg(test)]
pub(super) fn analog_chain_cov(
    r: &[Array2<c64>],
    a: &Array2<c64>,
    coeffs: &Array2<f64>,
    g: &QosGradient,
) -> Result<Array2<c64>, Error> {
    let (n, m) = a.dim();
    let k = r.len();
    if coeffs.dim() != (k, 4)
        || g.wanted.len() != k
        || g.interference.len() != k
        || r.iter().any(|ru| ru.dim() != (n, n))
        || g.wanted.iter().chain(&g.interference).any(|x| x.dim() != (m, m))
    {
        return Err(Error::shape(
            "analog chain (covariances, coefficients, gradients)",
            format!("{k} of {n}x{n}, {k}x4, 2x{k} of {m}x{m}"),
            format!(
                "{} covariances, coefficients {:?}, {} + {} gradients",
                k,
                coeffs.dim(),
                g.wanted.len(),
                g.interference.len()
            ),
        ));
    }
    let taus: Vec<f64> = r.iter().map(|ru| ru.diag().iter().map(|z| z.re).sum::<f64>() / n as f64).collect();
    let mut d = Array2::<c64>::zeros((n, m));
    analog_chain_with(&mut d, a, coeffs, g, &taus, |u, grad| r[u].dot(&a.dot(grad)));
    Ok(d)
}

/// [`super::forward`] without recording the greedy trials (inference and evaluation).
///
/// # Errors
/// As [`super::forward`].
pub(crate) fn forward_untraced(
    inst: &Instance,
    coeffs: &Array2<f64>,
    settings: &UnrollSettings,
) -> Result<UnrolledOutput, Error> {
    let greedy = select(inst, coeffs, settings, false)?;
    evaluate_selection(inst, coeffs, &greedy.selection, settings)
}

/// `∂L/∂c` with the selection held fixed (the coefficient part of [`backward`]).
///
/// # Errors
/// As [`backward`].
#[cfg(test)]
pub(super) fn coefficient_gradient(
    inst: &Instance,
    out: &UnrolledOutput,
    grad_margin: &[f64],
    grad_power: f64,
) -> Result<Array2<f64>, Error> {
    Ok(backward(inst, out, grad_margin, grad_power)?.coeffs)
}

/// Softmin weights (35) `π = softmax(−κ_b P / min P)` over finite powers (0 for infinite ones).
#[must_use]
pub(super) fn softmin_weights(powers: &[f64], sharpness: f64) -> Vec<f64> {
    let p_min = powers.iter().copied().filter(|p| p.is_finite()).fold(f64::INFINITY, f64::min);
    if !(p_min.is_finite() && p_min > 0.0) {
        return vec![0.0; powers.len()];
    }
    let e: Vec<f64> =
        powers.iter().map(|p| if p.is_finite() { (-sharpness * (p / p_min - 1.0)).exp() } else { 0.0 }).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|x| x / z).collect()
}

/// The straight-through selection gradient (35) `∂L/∂c: [K × 4]`.
///
/// For each RF chain `m`, the last greedy step that corrected it chose `a_m = c_{i*}` by a hard
/// argmin of the trial powers `P_i`; the backward pass uses `a_soft = Σ_i π_i c_i` instead, with
/// `π = softmax(−κ_b P_i / min_j P_j)` (infeasible trials `π_i = 0`). With
/// `g_i = 2 Re(c_i^H ∂L/∂a_m*)` the upstream derivative is `∂L/∂P̄_j = −κ_b π_j (g_j − Σ_i π_i g_i)`,
/// chained through `P̄_j = P_j / P_{i*}` and the envelope gradient of every trial power
/// ([`power_envelope`]) to the coefficients. The dependence of later trials on earlier choices
/// is not followed (each column's gradient enters only through its own last step).
///
/// # Errors
/// [`Error::ShapeMismatch`] when `d_analog` does not match `A`; solver errors of a trial rebuild.
pub(crate) fn straight_through_gradient(
    inst: &Instance,
    out: &UnrolledOutput,
    d_analog: &Array2<c64>,
    settings: &UnrollSettings,
) -> Result<Array2<f64>, Error> {
    let vc = virtual_channels(&inst.h_est, &out.coeffs)?;
    straight_through_with(vc, &inst.targets, out, d_analog, settings, |a, g| coefficient_chain(&inst.h_est, a, g))
}

/// [`straight_through_gradient`] for a selection made on (possibly full-rank) covariances `R̂_k`
/// ([`super::select_cov`]); `out` carries the selection's trials, `A` and the coefficients.
///
/// # Errors
/// As [`straight_through_gradient`] and [`virtual_channels_cov`].
pub(crate) fn straight_through_gradient_cov(
    r_hat: &[Array2<c64>],
    targets: &[f64],
    out: &UnrolledOutput,
    d_analog: &Array2<c64>,
    settings: &UnrollSettings,
) -> Result<Array2<f64>, Error> {
    let vc = virtual_channels_cov(r_hat, &out.coeffs)?;
    straight_through_with(vc, targets, out, d_analog, settings, |a, g| coefficient_chain_cov(r_hat, a, g))
}

/// The shared straight-through pass; `chain(A, ∇)` maps trial gradients to the coefficients.
fn straight_through_with(
    (wanted, interference): VirtualChannels,
    targets: &[f64],
    out: &UnrolledOutput,
    d_analog: &Array2<c64>,
    settings: &UnrollSettings,
    chain: impl Fn(&Array2<c64>, &QosGradient) -> Array2<f64>,
) -> Result<Array2<f64>, Error> {
    let k = wanted.len();
    let mut dc = Array2::<f64>::zeros((k, 4));
    if d_analog.dim() != out.analog.dim() {
        return Err(Error::shape(
            "straight-through gradient (shape of A)",
            format!("{:?}", out.analog.dim()),
            format!("{:?}", d_analog.dim()),
        ));
    }
    let kb = settings.softmin_sharpness;
    let n_rf = out.analog.ncols();
    for m in 0..n_rf {
        let Some(step) = out.steps.iter().rev().find(|s| s.chain == m) else { continue };
        let powers: Vec<f64> = step.trials.iter().map(|t| t.power).collect();
        let pi = softmin_weights(&powers, kb);
        let p_min = powers.iter().copied().fold(f64::INFINITY, f64::min);
        let Some(i_star) = powers.iter().position(|p| *p == p_min) else { continue };
        if !p_min.is_finite() {
            continue;
        }
        let g: Vec<f64> = step
            .trials
            .iter()
            .map(|t| {
                let c = settings.codebook.column(t.codeword);
                2.0 * c.iter().zip(d_analog.column(m)).map(|(a, b)| a.conj() * b).sum::<c64>().re
            })
            .collect();
        let g_bar: f64 = pi.iter().zip(&g).map(|(p, x)| p * x).sum();
        let d_bar: Vec<f64> = pi.iter().zip(&g).map(|(p, x)| -kb * p * (x - g_bar)).collect();
        let mut d_p: Vec<f64> = d_bar.iter().map(|d| d / p_min).collect();
        d_p[i_star] -=
            d_bar.iter().zip(&powers).filter(|(_, p)| p.is_finite()).map(|(d, p)| d * p).sum::<f64>() / (p_min * p_min);
        for (t, dp) in step.trials.iter().zip(&d_p) {
            let Some(sol) = &t.solution else { continue };
            if *dp == 0.0 || !dp.is_finite() {
                continue;
            }
            let a = settings.codebook.select(Axis(1), &t.selection);
            let sys = QosSystem::through_analog(&a, &wanted, &interference, targets.to_vec())?;
            dc.scaled_add(*dp, &chain(&a, &power_envelope(&sys, sol)));
        }
    }
    Ok(dc)
}
