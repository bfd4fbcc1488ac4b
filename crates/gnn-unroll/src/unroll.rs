//! The unrolled forward pass of U-G-HBF and its gradient with respect to the virtual-channel
//! coefficients (spec §3–4), in plain ndarray (the network lives in [`crate::model`]).
//!
//! For one instance with estimates `ĥ_k: [N]`, `R̂_k = ĥ_k ĥ_k^H`, `τ_k = tr(R̂_k)/N` and positive
//! coefficients `c_k = (c_k1, c_k2, c_k3, c_k4)` (`coeffs: [K × 4]`), the virtual channels (25)-(27)
//! are `R̃^S_k = c_k1 R̂_k + c_k2 τ_k I` (wanted) and `R̃^I_k = c_k3 R̂_k + c_k4 τ_k I` (interference).
//!
//! Forward: SNR initialisation (34) on `R̂`, `T` greedy selections with the virtual channels and no
//! power cap (31), the baseband solution for the final `A` (its downlink powers (32)), then the
//! projection (33) `p ← p · min(1, P_max / Σ_k ω_k p_k)`. Baseband power weighting (`ω_k = 1`).
//!
//! Loss interface: the caller supplies `∂L/∂d_k` for the SINR margins `d_k = 10 log10(SINR_k/γ_k)`
//! on the **true** channel and `∂L/∂P` for the projected power `P = Σ_k p_k`; [`coefficient_gradient`]
//! returns `∂L/∂c: [K × 4]` through the implicit gradient of the final baseband problem
//! ([`crate::implicit`]). The selection `A` is held fixed (the greedy argmin is piecewise
//! constant; the straight-through softmin path (35) is not implemented, see docs/gnn-unroll.md).

use beamlab_linalg_ops::c64;
use ndarray::{Array1, Array2, Axis};

use crate::Error;
use crate::data::Instance;
use crate::greedy::{
    GreedyOptions, GreedyResult, GreedyStep, PowerWeighting, greedy_hbf, rank_one_covariances, snr_init,
};
use crate::implicit::{QosGradient, implicit_vjp, power_envelope, powers_beams_to_v};
use crate::outage::sinrs;
use crate::qos::{QosOptions, QosSolution, QosSystem, solve_qos};
use crate::util::adjoint;

/// Fixed settings of the unrolled forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct UnrollSettings {
    /// Codebook `[N × |C|]`.
    pub codebook: Array2<c64>,
    /// RF chains `M`.
    pub n_rf: usize,
    /// Greedy selections `T`.
    pub n_selections: usize,
    /// Power budget `P_max` of the projection (33).
    pub power_budget: f64,
    /// Baseband solver options.
    pub qos: QosOptions,
    /// Softmin sharpness `κ_b` of the straight-through selection gradient (35); 0 disables it.
    pub softmin_sharpness: f64,
}

/// Everything the forward pass computes for one instance.
#[derive(Clone, Debug)]
pub struct UnrolledOutput {
    /// Selected codewords `[M]`.
    pub selection: Vec<usize>,
    /// `A: [N × M]`.
    pub analog: Array2<c64>,
    /// The baseband problem with the virtual channels for `A`.
    pub system: QosSystem,
    /// Its solution (before the projection).
    pub solution: QosSolution,
    /// Projection factor `s = min(1, P_max / Σ p)`.
    pub scale: f64,
    /// Projected powers `s p_k`.
    pub powers: Vec<f64>,
    /// SINRs on the true channel.
    pub sinr: Vec<f64>,
    /// Margins `d_k = 10 log10(SINR_k / γ_k)` (dB).
    pub margin_db: Vec<f64>,
    /// The coefficients `[K × 4]` used.
    pub coeffs: Array2<f64>,
    /// The greedy steps with all trials (empty for [`evaluate_selection`]).
    pub steps: Vec<GreedyStep>,
}

impl UnrolledOutput {
    /// Transmit power `Σ_k s p_k`.
    #[must_use]
    pub fn power(&self) -> f64 {
        self.powers.iter().sum()
    }

    /// Effective precoder `A [√p_k w_k]`, `[N × K]`.
    #[must_use]
    pub fn precoder(&self) -> Array2<c64> {
        let mut d = self.solution.beams.clone();
        for (mut c, p) in d.columns_mut().into_iter().zip(&self.powers) {
            c.mapv_inplace(|z| z * p.sqrt());
        }
        self.analog.dot(&d)
    }
}

/// Wanted and interference covariances `(R̃^S_k, R̃^I_k)`, `K` matrices `[N × N]` each.
pub type VirtualChannels = (Vec<Array2<c64>>, Vec<Array2<c64>>);

/// Virtual-channel covariances `(R̃^S_k, R̃^I_k)` from estimates `h_est` and `coeffs: [K × 4]`
/// (the rank-one case `R̂_k = ĥ_k ĥ_k^H` of [`virtual_channels_cov`]).
///
/// # Errors
/// [`Error::InvalidInput`] when `coeffs` is not `[K × 4]`, or has a non-finite or negative entry.
pub fn virtual_channels(h_est: &[Array1<c64>], coeffs: &Array2<f64>) -> Result<VirtualChannels, Error> {
    virtual_channels_cov(&rank_one_covariances(h_est), coeffs)
}

/// Virtual-channel covariances from (possibly full-rank) estimated covariances `R̂_k`:
/// `R̃^S_k = c_k1 R̂_k + c_k2 τ_k I`, `R̃^I_k = c_k3 R̂_k + c_k4 τ_k I`, `τ_k = tr(R̂_k)/N`
/// (statistical CSI of Table 4 uses the sample covariance of the fed-back samples).
///
/// # Errors
/// [`Error::InvalidInput`] when `coeffs` is not `[K × 4]`, has a non-finite or negative entry, or a
/// covariance is not square.
pub fn virtual_channels_cov(r: &[Array2<c64>], coeffs: &Array2<f64>) -> Result<VirtualChannels, Error> {
    let k = r.len();
    if coeffs.dim() != (k, 4) || coeffs.iter().any(|c| !(c.is_finite() && *c >= 0.0)) {
        return Err(Error::InvalidInput(format!("coefficients must be finite, >= 0 and {k}x4")));
    }
    if r.iter().any(|ru| ru.nrows() != ru.ncols()) {
        return Err(Error::InvalidInput("covariances must be square".into()));
    }
    let mut wanted = Vec::with_capacity(k);
    let mut interference = Vec::with_capacity(k);
    for (u, ru) in r.iter().enumerate() {
        let n = ru.nrows();
        let tau: f64 = ru.diag().iter().map(|z| z.re).sum::<f64>() / n as f64;
        let eye = Array2::<c64>::eye(n);
        wanted.push(ru.mapv(|z| z * coeffs[[u, 0]]) + eye.mapv(|z| z * (coeffs[[u, 1]] * tau)));
        interference.push(ru.mapv(|z| z * coeffs[[u, 2]]) + eye.mapv(|z| z * (coeffs[[u, 3]] * tau)));
    }
    Ok((wanted, interference))
}

/// The greedy selection with the virtual channels (no power cap); `record` keeps every trial.
///
/// # Errors
/// As [`greedy_hbf`] and [`virtual_channels`].
pub fn select(
    inst: &Instance,
    coeffs: &Array2<f64>,
    settings: &UnrollSettings,
    record: bool,
) -> Result<GreedyResult, Error> {
    select_cov(&rank_one_covariances(&inst.h_est), &inst.targets, coeffs, settings, record)
}

/// [`select`] on (possibly full-rank) estimated covariances `R̂_k` (statistical CSI, Table 4): SNR
/// initialisation (34) on `R̂`, greedy selection with [`virtual_channels_cov`].
///
/// # Errors
/// As [`greedy_hbf`] and [`virtual_channels_cov`].
pub fn select_cov(
    r_hat: &[Array2<c64>],
    targets: &[f64],
    coeffs: &Array2<f64>,
    settings: &UnrollSettings,
    record: bool,
) -> Result<GreedyResult, Error> {
    let (wanted, interference) = virtual_channels_cov(r_hat, coeffs)?;
    let init = snr_init(&settings.codebook, r_hat, settings.n_rf)?;
    let opts = GreedyOptions {
        n_selections: settings.n_selections,
        power_budget: None,
        weighting: PowerWeighting::Baseband,
        qos: settings.qos,
        record_trials: record,
    };
    greedy_hbf(&settings.codebook, &wanted, &interference, targets, &init, &opts)
}

/// The forward pass for a fixed selection (baseband solve, projection, true-channel SINRs).
///
/// # Errors
/// As [`solve_qos`] and [`virtual_channels`].
pub fn evaluate_selection(
    inst: &Instance,
    coeffs: &Array2<f64>,
    selection: &[usize],
    settings: &UnrollSettings,
) -> Result<UnrolledOutput, Error> {
    if selection.iter().any(|&i| i >= settings.codebook.ncols()) {
        return Err(Error::InvalidInput(format!("selection {selection:?} out of the codebook")));
    }
    evaluate_analog(inst, coeffs, settings.codebook.select(Axis(1), selection), selection, settings)
}

/// [`evaluate_selection`] for an arbitrary analog matrix `a: [N × M]` (`selection` is only
/// recorded); used by gradient checks that move `A` continuously.
///
/// # Errors
/// As [`solve_qos`] and [`virtual_channels`].
pub fn evaluate_analog(
    inst: &Instance,
    coeffs: &Array2<f64>,
    a: Array2<c64>,
    selection: &[usize],
    settings: &UnrollSettings,
) -> Result<UnrolledOutput, Error> {
    let (wanted, interference) = virtual_channels(&inst.h_est, coeffs)?;
    let ah = adjoint(&a);
    let system = QosSystem::new(
        wanted.iter().map(|r| ah.dot(r).dot(&a)).collect(),
        interference.iter().map(|r| ah.dot(r).dot(&a)).collect(),
        Array2::eye(selection.len()),
        inst.targets.clone(),
    )?;
    let solution = solve_qos(&system, &settings.qos, None)?;
    let total: f64 = solution.powers.iter().sum();
    let scale = (settings.power_budget / total).min(1.0);
    let powers: Vec<f64> = solution.powers.iter().map(|p| p * scale).collect();
    let mut out = UnrolledOutput {
        selection: selection.to_vec(),
        analog: a,
        system,
        solution,
        scale,
        powers,
        sinr: vec![],
        margin_db: vec![],
        coeffs: coeffs.clone(),
        steps: vec![],
    };
    out.sinr = sinrs(out.precoder().view(), &inst.h)?;
    out.margin_db = out.sinr.iter().zip(&inst.targets).map(|(s, g)| 10.0 * (s / g).log10()).collect();
    Ok(out)
}

/// Greedy selection followed by [`evaluate_selection`].
///
/// # Errors
/// As [`select`] and [`evaluate_selection`].
pub fn forward(inst: &Instance, coeffs: &Array2<f64>, settings: &UnrollSettings) -> Result<UnrolledOutput, Error> {
    let greedy = select(inst, coeffs, settings, settings.softmin_sharpness > 0.0)?;
    let mut out = evaluate_selection(inst, coeffs, &greedy.selection, settings)?;
    out.steps = greedy.steps;
    Ok(out)
}

/// Beamforming architecture of the learned model.
///
/// - `Hybrid` (U-G-HBF): `M` RF chains chosen by the greedy selection, as above.
/// - `FullyDigital` (U-FDBF, paper §5.1.3 "A = I_N effectively"): one RF chain per antenna,
///   `A = I_N`, no codeword selection; the same coefficients and virtual channels, the baseband
///   problem is solved directly on `R̃^S_k, R̃^I_k: [N × N]` with `Φ = I_N` (transmit power), then
///   the downlink powers and the projection (33). Its gradient is the coefficient part of
///   [`backward`] (there is no selection, hence no straight-through path).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    /// Greedy codebook hybrid beamforming (U-G-HBF).
    #[default]
    Hybrid,
    /// Fully digital beamforming, `A = I_N` (U-FDBF).
    FullyDigital,
}

/// The fully digital forward pass (`A = I_N`, see [`Architecture::FullyDigital`]); the output's
/// `selection` is `0..N` and `steps` is empty.
///
/// # Errors
/// [`Error::InvalidInput`] for an instance without users; as [`evaluate_analog`].
pub fn forward_fully_digital(
    inst: &Instance,
    coeffs: &Array2<f64>,
    settings: &UnrollSettings,
) -> Result<UnrolledOutput, Error> {
    let n = inst.h_est.first().map(Array1::len).ok_or_else(|| Error::InvalidInput("no users".into()))?;
    let selection: Vec<usize> = (0..n).collect();
    evaluate_analog(inst, coeffs, Array2::eye(n), &selection, settings)
}

/// The forward pass of `architecture`; `record` keeps the greedy trials (hybrid only, needed by
/// the straight-through gradient).
///
/// # Errors
/// As [`forward`], [`forward_untraced`] and [`forward_fully_digital`].
pub fn forward_arch(
    architecture: Architecture,
    inst: &Instance,
    coeffs: &Array2<f64>,
    settings: &UnrollSettings,
    record: bool,
) -> Result<UnrolledOutput, Error> {
    match (architecture, record) {
        (Architecture::Hybrid, true) => forward(inst, coeffs, settings),
        (Architecture::Hybrid, false) => forward_untraced(inst, coeffs, settings),
        (Architecture::FullyDigital, _) => forward_fully_digital(inst, coeffs, settings),
    }
}

/// Gradients of a loss through one unrolled forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct Backward {
    /// `∂L/∂c: [K × 4]` with the selection held fixed.
    pub coeffs: Array2<f64>,
    /// Wirtinger gradient `∂L/∂A*: [N × M]` with `A` treated as continuous
    /// (`dL = 2 Re tr((∂L/∂A*)^H dA)`), the input of the straight-through selection gradient.
    pub analog: Array2<c64>,
}

/// Chains Hermitian gradients of `S_k = A^H R̃^S_k A`, `I_k = A^H R̃^I_k A` to the coefficients:
/// `∂/∂c_k1 = Re tr(∇_{S_k} A^H R̂_k A)`, `∂/∂c_k2 = τ_k Re tr(∇_{S_k} A^H A)`, likewise `c_k3, c_k4`.
fn coefficient_chain(h_est: &[Array1<c64>], a: &Array2<c64>, g: &QosGradient) -> Array2<f64> {
    let ah = adjoint(a);
    let n = a.nrows() as f64;
    coefficient_chain_with(h_est.len(), a, g, |u| {
        let b = ah.dot(&h_est[u]);
        let tau = h_est[u].iter().map(|z| z.norm_sqr()).sum::<f64>() / n;
        (crate::util::outer(b.view(), b.view()), tau)
    })
}

/// `coefficient_chain` for (possibly full-rank) covariances `R̂_k`.
pub fn coefficient_chain_cov(r: &[Array2<c64>], a: &Array2<c64>, g: &QosGradient) -> Array2<f64> {
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
/// [`Error::InvalidInput`] for mismatched lengths; [`Error::Singular`] from the implicit solve.
pub fn backward(
    inst: &Instance,
    out: &UnrolledOutput,
    grad_margin: &[f64],
    grad_power: f64,
) -> Result<Backward, Error> {
    let k = inst.h.len();
    if grad_margin.len() != k || out.coeffs.dim() != (k, 4) {
        return Err(Error::InvalidInput(format!("{} margin gradients for {k} users", grad_margin.len())));
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
/// [`Error::InvalidInput`] when `r`, `coeffs` and `g` disagree in the number of users or sizes.
pub fn analog_chain_cov(
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
        return Err(Error::InvalidInput(format!(
            "analog chain: {k} covariances, A {n}x{m}, coefficients {:?}",
            coeffs.dim()
        )));
    }
    let taus: Vec<f64> = r.iter().map(|ru| ru.diag().iter().map(|z| z.re).sum::<f64>() / n as f64).collect();
    let mut d = Array2::<c64>::zeros((n, m));
    analog_chain_with(&mut d, a, coeffs, g, &taus, |u, grad| r[u].dot(&a.dot(grad)));
    Ok(d)
}

/// [`forward`] without recording the greedy trials (inference and evaluation).
///
/// # Errors
/// As [`forward`].
pub fn forward_untraced(
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
pub fn coefficient_gradient(
    inst: &Instance,
    out: &UnrolledOutput,
    grad_margin: &[f64],
    grad_power: f64,
) -> Result<Array2<f64>, Error> {
    Ok(backward(inst, out, grad_margin, grad_power)?.coeffs)
}

/// Softmin weights (35) `π = softmax(−κ_b P / min P)` over finite powers (0 for infinite ones).
#[must_use]
pub fn softmin_weights(powers: &[f64], sharpness: f64) -> Vec<f64> {
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
/// [`Error::InvalidInput`] when `d_analog` does not match `A`; solver errors of a trial rebuild.
pub fn straight_through_gradient(
    inst: &Instance,
    out: &UnrolledOutput,
    d_analog: &Array2<c64>,
    settings: &UnrollSettings,
) -> Result<Array2<f64>, Error> {
    let vc = virtual_channels(&inst.h_est, &out.coeffs)?;
    straight_through_with(vc, &inst.targets, out, d_analog, settings, |a, g| coefficient_chain(&inst.h_est, a, g))
}

/// [`straight_through_gradient`] for a selection made on (possibly full-rank) covariances `R̂_k`
/// ([`select_cov`]); `out` carries the selection's trials, `A` and the coefficients.
///
/// # Errors
/// As [`straight_through_gradient`] and [`virtual_channels_cov`].
pub fn straight_through_gradient_cov(
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
        return Err(Error::InvalidInput("straight-through: gradient shape differs from A".into()));
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
            let ah = adjoint(&a);
            let sys = QosSystem::new(
                wanted.iter().map(|r| ah.dot(r).dot(&a)).collect(),
                interference.iter().map(|r| ah.dot(r).dot(&a)).collect(),
                Array2::eye(n_rf),
                targets.to_vec(),
            )?;
            dc.scaled_add(*dp, &chain(&a, &power_envelope(&sys, sol)));
        }
    }
    Ok(dc)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::{CsiModel, Scenario, draw_instance};
    use crate::greedy::dft_codebook;
    use rand::SeedableRng;

    pub(crate) fn settings(p_max: f64) -> UnrollSettings {
        UnrollSettings {
            codebook: dft_codebook(4, 4, 1, 1).unwrap(),
            n_rf: 5,
            n_selections: 5,
            power_budget: p_max,
            qos: QosOptions { tolerance: 1e-15, ..QosOptions::default() },
            softmin_sharpness: 5.0,
        }
    }

    pub(crate) fn instance(seed: u64) -> Instance {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        draw_instance(&Scenario::default(), &CsiModel::Pilot { lo_db: 5.0, hi_db: 5.0 }, 0, &mut rng).unwrap()
    }

    /// Central differences of `loss` in every coefficient (step `1e-6 c`) against `grad`:
    /// relative error below `tol`, relative to `max(|fd|, floor)`.
    fn check_coefficient_gradient(
        c: &Array2<f64>,
        grad: &Array2<f64>,
        loss: impl Fn(&Array2<f64>) -> f64,
        floor: f64,
        tol: f64,
        label: &str,
    ) {
        for ((u, i), &an) in grad.indexed_iter() {
            let t = 1e-6 * c[[u, i]];
            let mut cp = c.clone();
            cp[[u, i]] += t;
            let mut cm = c.clone();
            cm[[u, i]] -= t;
            let fd = (loss(&cp) - loss(&cm)) / (2.0 * t);
            let rel = (fd - an).abs() / fd.abs().max(floor);
            assert!(rel < tol, "{label} c[{u},{i}]: fd {fd} vs {an} (rel {rel:e})");
        }
    }

    fn coeffs() -> Array2<f64> {
        ndarray::array![[1.0, 0.1, 1.2, 0.05], [0.8, 0.2, 1.0, 0.1], [1.1, 0.05, 0.9, 0.2]]
    }

    #[test]
    fn coefficient_gradient_matches_finite_differences() {
        let gm = [0.7, -0.4, 0.25];
        for (seed, p_max) in [(1, 100.0), (2, 100.0), (1, 0.05)] {
            let inst = instance(seed);
            let st = settings(p_max);
            let c = coeffs();
            let out = forward(&inst, &c, &st).unwrap();
            assert_eq!(out.scale < 1.0, p_max < 1.0, "projection activity, scale {}", out.scale);
            let loss = |c: &Array2<f64>| {
                let o = evaluate_selection(&inst, c, &out.selection, &st).unwrap();
                o.margin_db.iter().zip(&gm).map(|(d, g)| d * g).sum::<f64>() + 0.3 * o.power()
            };
            let dc = coefficient_gradient(&inst, &out, &gm, 0.3).unwrap();
            check_coefficient_gradient(&c, &dc, loss, 1e-2, 1e-5, &format!("seed {seed} P {p_max}"));
        }
    }

    /// Full-rank covariance chain rule vs central differences of
    /// `L(c) = Σ_k Re tr(G^S_k A^H R̃^S_k(c) A + G^I_k A^H R̃^I_k(c) A)` with fixed Hermitian `G`.
    #[test]
    fn covariance_coefficient_chain_matches_finite_differences() {
        use crate::util::outer;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (n, m, k) = (6, 3, 3);
        let mut cvec = |len: usize| -> Array1<c64> {
            Array1::from_shape_fn(len, |_| {
                c64::new(rand::Rng::random_range(&mut rng, -1.0..1.0), rand::Rng::random_range(&mut rng, -1.0..1.0))
            })
        };
        let mut cov = || -> Array2<c64> {
            let mut r = Array2::<c64>::zeros((n, n));
            for _ in 0..4 {
                let v = cvec(n);
                r += &outer(v.view(), v.view());
            }
            r
        };
        let r: Vec<Array2<c64>> = (0..k).map(|_| cov()).collect();
        let mut herm = || -> Array2<c64> {
            let mut g = Array2::<c64>::zeros((m, m));
            for s in [1.0, -0.7] {
                let v = cvec(m);
                g.scaled_add(c64::new(s, 0.0), &outer(v.view(), v.view()));
            }
            g
        };
        let g = QosGradient {
            wanted: (0..k).map(|_| herm()).collect(),
            interference: (0..k).map(|_| herm()).collect(),
            phi: Array2::zeros((m, m)),
        };
        let a = Array2::from_shape_fn((n, m), |(i, j)| c64::new((i as f64 + 1.0).sin(), (j as f64 * i as f64).cos()));
        let ah = adjoint(&a);
        let loss = |c: &Array2<f64>| -> f64 {
            let (s, i) = virtual_channels_cov(&r, c).unwrap();
            let tr =
                |g: &Array2<c64>, e: &Array2<c64>| g.iter().zip(e.t().iter()).map(|(p, q)| (p * q).re).sum::<f64>();
            (0..k)
                .map(|u| tr(&g.wanted[u], &ah.dot(&s[u]).dot(&a)) + tr(&g.interference[u], &ah.dot(&i[u]).dot(&a)))
                .sum()
        };
        let c = coeffs();
        let dc = coefficient_chain_cov(&r, &a, &g);
        check_coefficient_gradient(&c, &dc, loss, 1e-2, 1e-5, "covariance chain");
        // ∂L/∂A*: for L real, dL = 2 Re Σ conj(∂L/∂A*) ∘ dA.
        let da = analog_chain_cov(&r, &a, &c, &g).unwrap();
        let loss_a = |a: &Array2<c64>| -> f64 {
            let (s, i) = virtual_channels_cov(&r, &c).unwrap();
            let ah = adjoint(a);
            let tr =
                |g: &Array2<c64>, e: &Array2<c64>| g.iter().zip(e.t().iter()).map(|(p, q)| (p * q).re).sum::<f64>();
            (0..k)
                .map(|u| tr(&g.wanted[u], &ah.dot(&s[u]).dot(a)) + tr(&g.interference[u], &ah.dot(&i[u]).dot(a)))
                .sum()
        };
        for (idx, dir) in [(0usize, c64::new(1.0, 0.0)), (7, c64::new(0.0, 1.0)), (13, c64::new(0.6, -0.8))] {
            let (p, q) = (idx / m, idx % m);
            let t = 1e-6;
            let mut ap = a.clone();
            ap[[p, q]] += dir * t;
            let mut am = a.clone();
            am[[p, q]] -= dir * t;
            let fd = (loss_a(&ap) - loss_a(&am)) / (2.0 * t);
            let an = 2.0 * (da[[p, q]].conj() * dir).re;
            let rel = (fd - an).abs() / fd.abs().max(1e-2);
            assert!(rel < 1e-5, "A[{p},{q}] dir {dir}: fd {fd} vs {an} (rel {rel:e})");
        }
        assert!(analog_chain_cov(&r[..2], &a, &c, &g).is_err());
        // Rank-one covariances reproduce the estimate-based chain.
        let inst = instance(3);
        let a =
            Array2::from_shape_fn((inst.h_est[0].len(), m), |(i, j)| c64::new(((i + j) as f64).cos(), 0.3 * i as f64));
        let d1 = coefficient_chain(&inst.h_est, &a, &g);
        let d2 = coefficient_chain_cov(&rank_one_covariances(&inst.h_est), &a, &g);
        let scale = d1.iter().fold(1.0f64, |mx, x| mx.max(x.abs()));
        assert!(d1.iter().zip(&d2).all(|(x, y)| (x - y).abs() <= 1e-12 * scale), "{d1} vs {d2}");
        assert!(virtual_channels_cov(&[Array2::zeros((2, 3))], &Array2::ones((1, 4))).is_err());
        // The covariance selection on rank-one covariances is the estimate-based selection.
        let st = settings(100.0);
        let c = coeffs();
        let s1 = select(&inst, &c, &st, false).unwrap();
        let s2 = select_cov(&rank_one_covariances(&inst.h_est), &inst.targets, &c, &st, false).unwrap();
        assert_eq!(s1.selection, s2.selection);
        // Straight-through on rank-one covariances matches the estimate-based one.
        let out = forward(&inst, &c, &st).unwrap();
        let d_a =
            Array2::from_shape_fn(out.analog.dim(), |(i, j)| c64::new((i as f64 * 0.7).sin(), (j as f64 + 0.5).cos()));
        let g1 = straight_through_gradient(&inst, &out, &d_a, &st).unwrap();
        let g2 =
            straight_through_gradient_cov(&rank_one_covariances(&inst.h_est), &inst.targets, &out, &d_a, &st).unwrap();
        let scale = g1.iter().fold(1e-12f64, |mx, x| mx.max(x.abs()));
        assert!(g1.iter().any(|x| *x != 0.0), "straight-through gradient vanished: {g1}");
        assert!(g1.iter().zip(&g2).all(|(x, y)| (x - y).abs() <= 1e-9 * scale), "{g1} vs {g2}");
    }

    #[test]
    fn analog_gradient_matches_finite_differences() {
        let gm = [0.5, 0.3, -0.6];
        for (seed, p_max) in [(4, 100.0), (5, 0.05)] {
            let inst = instance(seed);
            let st = settings(p_max);
            let c = coeffs();
            let out = forward(&inst, &c, &st).unwrap();
            let back = backward(&inst, &out, &gm, 0.3).unwrap();
            let loss = |a: Array2<c64>| {
                let o = evaluate_analog(&inst, &c, a, &out.selection, &st).unwrap();
                o.margin_db.iter().zip(&gm).map(|(d, g)| d * g).sum::<f64>() + 0.3 * o.power()
            };
            for dseed in 0..3 {
                let e = crate::util::testutil::rand_mat(16, 5, 40 + dseed);
                let t = 1e-6;
                let fd = (loss(&out.analog + &e.mapv(|z| z * t)) - loss(&out.analog - &e.mapv(|z| z * t))) / (2.0 * t);
                let an = 2.0 * back.analog.iter().zip(e.iter()).map(|(g, d)| (g.conj() * d).re).sum::<f64>();
                let rel = (fd - an).abs() / fd.abs().max(1e-2);
                assert!(rel < 1e-5, "seed {seed}: fd {fd} vs {an} (rel {rel:e})");
            }
        }
    }

    #[test]
    fn straight_through_gradient_matches_the_relaxed_softmin_objective() {
        // R(c) = Σ_m Σ_i π_i(P(c)) g_i with the trial selections and g held fixed: its gradient
        // is exactly what the straight-through path injects.
        let inst = instance(6);
        let st = settings(100.0);
        let c = coeffs();
        let out = forward(&inst, &c, &st).unwrap();
        assert_eq!(out.steps.len(), 5);
        let back = backward(&inst, &out, &[0.5, 0.3, -0.6], 0.3).unwrap();
        let st_grad = straight_through_gradient(&inst, &out, &back.analog, &st).unwrap();
        assert!(st_grad.iter().any(|x| x.abs() > 1e-8), "{st_grad:?}");
        let relaxed = |c: &Array2<f64>| -> f64 {
            let (wanted, interference) = virtual_channels(&inst.h_est, c).unwrap();
            relaxed_softmin(&wanted, &interference, &inst.targets, &out.steps, &back.analog, &st)
        };
        check_coefficient_gradient(&c, &st_grad, relaxed, 1e-3, 1e-4, "straight-through");
        let w = softmin_weights(&[2.0, 1.0, f64::INFINITY], 5.0);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12 && w[2] == 0.0 && w[1] > w[0]);
    }

    /// Full-rank statistical CSI: the straight-through gradient of a selection made on `R̂`
    /// ([`select_cov`]) is the exact gradient of the relaxed softmin objective
    /// `R(c) = Σ_m Σ_i π_i(P(c)) 2 Re(c_i^H ∂L/∂a_m*)` built from the virtual channels of `R̂`.
    #[test]
    fn straight_through_gradient_cov_matches_the_relaxed_softmin_objective_for_full_rank_covariances() {
        let sc = Scenario { angular_spread_deg: 20.0, target_db: (0.0, 3.0), ..Scenario::default() };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
        let st = settings(100.0);
        let c = coeffs();
        // A system whose statistical virtual problem is feasible (full-rank R̂ from 8 samples
        // with L = 4 kept coefficients).
        let (sys, greedy) = (0..20)
            .find_map(|_| {
                let sys = crate::statistical::draw_stat_instance(&sc, 4, 8, 0, &mut rng).unwrap();
                let g = select_cov(&sys.r_hat, sys.targets(), &c, &st, true).ok()?;
                Some((sys, g))
            })
            .expect("a statistically feasible system");
        // Rank > 1 (PSD: tr(R)² > ‖R‖_F² unless R is rank one): not the rank-one case.
        for r in &sys.r_hat {
            let fro: f64 = r.iter().map(|z| z.norm_sqr()).sum();
            let tr: f64 = r.diag().iter().map(|z| z.re).sum();
            assert!(tr * tr > 1.5 * fro, "R̂ is (nearly) rank one: tr² {} vs ‖R‖² {fro}", tr * tr);
        }
        assert_eq!(greedy.steps.len(), 5);
        let a = st.codebook.select(Axis(1), &greedy.selection);
        let mut out = evaluate_analog(&sys.samples[0], &c, a, &greedy.selection, &st).unwrap();
        out.steps = greedy.steps.clone();
        let d_a = crate::util::testutil::rand_mat(16, 5, 77);
        let st_grad = straight_through_gradient_cov(&sys.r_hat, sys.targets(), &out, &d_a, &st).unwrap();
        assert!(st_grad.iter().any(|x| x.abs() > 1e-6), "{st_grad}");
        let relaxed = |c: &Array2<f64>| -> f64 {
            let (wanted, interference) = virtual_channels_cov(&sys.r_hat, c).unwrap();
            relaxed_softmin(&wanted, &interference, sys.targets(), &out.steps, &d_a, &st)
        };
        let scale = st_grad.iter().fold(0.0f64, |mx, x| mx.max(x.abs()));
        check_coefficient_gradient(&c, &st_grad, relaxed, 1e-3 * scale, 1e-5, "full-rank straight-through");
    }

    /// The relaxed softmin objective `R = Σ_m Σ_i π_i(P) 2 Re(c_i^H ∂L/∂a_m*)` over the last greedy
    /// step of every RF chain, with trial powers `P` from the virtual channels and the trial
    /// selections held fixed: its gradient in the coefficients is what the straight-through path
    /// injects.
    fn relaxed_softmin(
        wanted: &[Array2<c64>],
        interference: &[Array2<c64>],
        targets: &[f64],
        steps: &[GreedyStep],
        d_analog: &Array2<c64>,
        st: &UnrollSettings,
    ) -> f64 {
        let n_rf = d_analog.ncols();
        let mut total = 0.0;
        for m in 0..n_rf {
            let step = steps.iter().rev().find(|s| s.chain == m).unwrap();
            let powers: Vec<f64> = step
                .trials
                .iter()
                .map(|t| {
                    let a = st.codebook.select(Axis(1), &t.selection);
                    let ah = adjoint(&a);
                    let sys = QosSystem::new(
                        wanted.iter().map(|r| ah.dot(r).dot(&a)).collect(),
                        interference.iter().map(|r| ah.dot(r).dot(&a)).collect(),
                        Array2::eye(n_rf),
                        targets.to_vec(),
                    )
                    .unwrap();
                    solve_qos(&sys, &st.qos, None).map_or(f64::INFINITY, |s| s.uplink_sum())
                })
                .collect();
            let pi = softmin_weights(&powers, st.softmin_sharpness);
            for (p, t) in pi.iter().zip(&step.trials) {
                let cw = st.codebook.column(t.codeword);
                total += p * 2.0 * cw.iter().zip(d_analog.column(m)).map(|(a, b)| a.conj() * b).sum::<c64>().re;
            }
        }
        total
    }

    fn perfect_csi(seed: u64) -> (Instance, Array2<f64>) {
        let mut inst = instance(seed);
        inst.h_est = inst.h.clone();
        (inst, Array2::from_shape_fn((3, 4), |(_, i)| if i % 2 == 0 { 1.0 } else { 0.0 }))
    }

    #[test]
    fn fully_digital_perfect_coefficients_on_perfect_csi_meet_targets() {
        let (inst, c) = perfect_csi(3);
        let out = forward_fully_digital(&inst, &c, &settings(1e6)).unwrap();
        assert_eq!((out.analog.dim(), out.selection.len(), out.steps.len()), ((16, 16), 16, 0));
        assert!(out.margin_db.iter().all(|d| d.abs() < 1e-8), "{:?}", out.margin_db);
        let same = forward_arch(Architecture::FullyDigital, &inst, &c, &settings(1e6), true).unwrap();
        assert_eq!(same.powers, out.powers);
    }

    #[test]
    fn fully_digital_coefficient_gradient_matches_finite_differences() {
        let gm = [0.7, -0.4, 0.25];
        for (seed, p_max) in [(1, 100.0), (2, 100.0), (1, 0.05)] {
            let inst = instance(seed);
            let st = settings(p_max);
            let c = coeffs();
            let out = forward_fully_digital(&inst, &c, &st).unwrap();
            assert_eq!(out.scale < 1.0, p_max < 1.0, "projection activity, scale {}", out.scale);
            let loss = |c: &Array2<f64>| {
                let o = forward_fully_digital(&inst, c, &st).unwrap();
                o.margin_db.iter().zip(&gm).map(|(d, g)| d * g).sum::<f64>() + 0.3 * o.power()
            };
            let dc = coefficient_gradient(&inst, &out, &gm, 0.3).unwrap();
            check_coefficient_gradient(&c, &dc, loss, 1e-2, 1e-5, &format!("seed {seed} P {p_max}"));
        }
    }

    #[test]
    fn fully_digital_never_needs_more_power_than_hybrid_on_perfect_csi() {
        // With an orthonormal codebook (O = 1) A^H A = I_M, so a hybrid design (A, w_k, p_k) is the
        // fully digital design (A w_k, p_k) with ‖A w_k‖ = 1, the same SINRs and the same power:
        // the fully digital feasible set contains the hybrid one and its optimum is never larger.
        let st = settings(1e6);
        let gram = adjoint(&st.codebook).dot(&st.codebook);
        assert!((&gram - &Array2::<c64>::eye(16)).iter().all(|z| z.norm() < 1e-12));
        let mut strictly = 0;
        for seed in 0..6 {
            let (inst, c) = perfect_csi(100 + seed);
            let fd = forward_fully_digital(&inst, &c, &st).unwrap().power();
            let hybrid = forward(&inst, &c, &st).unwrap().power();
            assert!(fd <= hybrid * (1.0 + 1e-9), "seed {seed}: fully digital {fd} > hybrid {hybrid}");
            strictly += usize::from(fd < hybrid * (1.0 - 1e-6));
        }
        assert!(strictly > 0, "the fully digital design never strictly better: suspicious");
    }

    #[test]
    fn perfect_coefficients_on_perfect_csi_meet_targets() {
        // ĥ = h and c = (1, 0, 1, 0): the unrolled pass is G-HBF-perf without a cap: zero outage.
        let mut inst = instance(3);
        inst.h_est = inst.h.clone();
        let c = Array2::from_shape_fn((3, 4), |(_, i)| if i % 2 == 0 { 1.0 } else { 0.0 });
        let out = forward(&inst, &c, &settings(1e6)).unwrap();
        assert!(out.margin_db.iter().all(|d| d.abs() < 1e-8), "{:?}", out.margin_db);
        assert!(virtual_channels(&inst.h_est, &Array2::zeros((2, 4))).is_err());
        assert!(virtual_channels(&inst.h_est, &Array2::from_elem((3, 4), f64::NAN)).is_err());
    }
}
