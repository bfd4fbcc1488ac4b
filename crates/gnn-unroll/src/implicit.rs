//! Gradients of the baseband QoS problem by implicit differentiation (spec §4, Theorem 4.2).
//!
//! Unknowns: `v_k = √p_k w_k ∈ C^M` with `Im v_{k,1} = 0` (the phase convention of
//! [`solve_qos`](crate::qos::solve_qos)) and the uplink powers `q ∈ R^K`; real coordinates
//! `y = (ṽ_1 … ṽ_K, q) ∈ R^{2MK}`, `ṽ_k = [Re v_k; Im v_{k,2:M}]`. With
//! `Z_k = Φ + Σ_{j≠k} q_j I_j − (q_k/γ_k) S_k` and `r(z) = [Re z; Im z_{2:M}]` the solution satisfies
//!
//! - `F1_k = r(Z_k v_k) = 0` (the uplink MMSE beam is a generalised eigenvector, `2M − 1` equations);
//! - `F2_k = v_k^H S_k v_k / γ_k − Σ_{j≠k} v_j^H I_k v_j − 1 = 0` (downlink SINR = γ_k).
//!
//! For a loss `L(y)`, solve `J^T u = ∂L/∂y` (`J = ∂F/∂y`, full rank under Assumption 4.1) and split
//! `u` into `ū_k = u1_re + j[0; u1_im]` and scalars `u2_k`. With `herm(X) = (X + X^H)/2`,
//!
//! - `∇_{S_k} L = (q_k/γ_k) herm(ū_k v_k^H) − (u2_k/γ_k) v_k v_k^H`;
//! - `∇_{I_j} L = −q_j Σ_{k≠j} herm(ū_k v_k^H) + u2_j Σ_{i≠j} v_i v_i^H`;
//! - `∇_Φ L = −Σ_k herm(ū_k v_k^H)`.
//!
//! **Gradient convention**: every matrix gradient `G` here is Hermitian and satisfies
//! `dL = Σ Re tr(G dX)` for Hermitian perturbations `dX` (the inputs are Hermitian, so only those
//! directions exist). The Wirtinger gradient `∂L/∂X*` of an unconstrained complex matrix is `G^T/…`.
//! For `X = A^H R A` the chain is `∇_R L = A G A^H`, `∂L/∂A* = R A G` (the unrolled backward pass
//! uses it; `chain_to_covariance` checks it against finite differences in the tests).
//!
//! The **envelope shortcut** for the trial power `P = Σ_k q_k` needs no linear solve:
//! `∇_{S_k}P = −(q_k p_k/γ_k) w_k w_k^H`, `∇_{I_k}P = q_k Σ_{j≠k} p_j w_j w_j^H`,
//! `∇_Φ P = Σ_k p_k w_k w_k^H` ([`power_envelope`]).

use beamlab_linalg_ops::c64;
use ndarray::{Array1, Array2};

use crate::Error;
use crate::qos::{QosSolution, QosSystem};
#[cfg(test)]
use crate::util::adjoint;
use crate::util::{herm, lu_solve, outer};

/// Hermitian gradients of a scalar with respect to `S_k`, `I_k` and `Φ` (convention in the module
/// docs).
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub(crate) struct QosGradient {
    /// `∇_{S_k}`, `K` matrices `[M × M]`.
    pub(crate) wanted: Vec<Array2<c64>>,
    /// `∇_{I_k}`, `K` matrices `[M × M]`.
    pub(crate) interference: Vec<Array2<c64>>,
    /// `∇_Φ`, `[M × M]`.
    pub(crate) phi: Array2<c64>,
}

#[cfg(test)]
impl QosGradient {
    /// The directional derivative `Σ_k Re tr(∇_{S_k} E^S_k) + Σ_k Re tr(∇_{I_k} E^I_k) + Re tr(∇_Φ E^Φ)`.
    #[must_use]
    pub(crate) fn directional(
        &self,
        d_wanted: &[Array2<c64>],
        d_interference: &[Array2<c64>],
        d_phi: &Array2<c64>,
    ) -> f64 {
        let tr = |g: &Array2<c64>, e: &Array2<c64>| g.iter().zip(e.t().iter()).map(|(a, b)| (a * b).re).sum::<f64>();
        self.wanted.iter().zip(d_wanted).map(|(g, e)| tr(g, e)).sum::<f64>()
            + self.interference.iter().zip(d_interference).map(|(g, e)| tr(g, e)).sum::<f64>()
            + tr(&self.phi, d_phi)
    }
}

/// `v_k = √p_k w_k`, `[M]` each.
fn amplitudes(sol: &QosSolution) -> Vec<Array1<c64>> {
    sol.beams.columns().into_iter().zip(&sol.powers).map(|(w, p)| w.mapv(|z| z * p.sqrt())).collect()
}

/// `r(z) = [Re z; Im z_{2:M}]`.
fn real_form(z: &Array1<c64>) -> Vec<f64> {
    z.iter().map(|x| x.re).chain(z.iter().skip(1).map(|x| x.im)).collect()
}

/// The Jacobian `J = ∂F/∂y`, `[2MK × 2MK]` (layout in the module docs).
fn jacobian(sys: &QosSystem, sol: &QosSolution, v: &[Array1<c64>]) -> Array2<f64> {
    let (k, m) = (sys.n_users(), sys.n_rf());
    let bw = 2 * m - 1;
    let n = 2 * m * k;
    let qoff = k * bw;
    let q = &sol.uplink_powers;
    let g = sys.targets();
    let mut j = Array2::<f64>::zeros((n, n));
    for u in 0..k {
        // ∂F1_u/∂ṽ_u: the real form of Z_u with row and column M+1 (Im of entry 1) deleted.
        let mut z = sys.uplink_covariance(q, u);
        z.scaled_add(c64::new(-q[u] / g[u], 0.0), &sys.wanted()[u]);
        let row_idx = |r: usize| if r < m { (r, false) } else { (r - m + 1, true) };
        for r in 0..bw {
            let (ri, r_im) = row_idx(r);
            for c in 0..bw {
                let (ci, c_im) = row_idx(c);
                let zz = z[[ri, ci]];
                // [[Re Z, −Im Z], [Im Z, Re Z]].
                j[[u * bw + r, u * bw + c]] = match (r_im, c_im) {
                    (false, false) | (true, true) => zz.re,
                    (false, true) => -zz.im,
                    (true, false) => zz.im,
                };
            }
        }
        // ∂F1_u/∂q.
        for t in 0..k {
            let col = if t == u {
                real_form(&sys.wanted()[u].dot(&v[u])).iter().map(|x| -x / g[u]).collect::<Vec<_>>()
            } else {
                real_form(&sys.interference()[t].dot(&v[u]))
            };
            for (r, x) in col.iter().enumerate() {
                j[[u * bw + r, qoff + t]] = *x;
            }
        }
        // ∂F2_u/∂ṽ_t.
        for t in 0..k {
            let row = if t == u {
                real_form(&sys.wanted()[u].dot(&v[u])).iter().map(|x| 2.0 * x / g[u]).collect::<Vec<_>>()
            } else {
                real_form(&sys.interference()[u].dot(&v[t])).iter().map(|x| -2.0 * x).collect()
            };
            for (c, x) in row.iter().enumerate() {
                j[[qoff + u, t * bw + c]] = *x;
            }
        }
    }
    j
}

/// Vector–Jacobian product of the QoS solution map (see the module docs).
///
/// - `grad_v`: `∂L/∂Re v_k + j ∂L/∂Im v_k`, `K` vectors `[M]` (the imaginary part of the first
///   entry is ignored: it is fixed by the phase convention);
/// - `grad_q`: `∂L/∂q_k`, `[K]`.
///
/// # Errors
/// [`Error::ShapeMismatch`] for mismatched shapes, [`Error::Singular`] when the Jacobian is
/// (numerically) singular (Assumption 4.1 violated).
pub(crate) fn implicit_vjp(
    sys: &QosSystem,
    sol: &QosSolution,
    grad_v: &[Array1<c64>],
    grad_q: &[f64],
) -> Result<QosGradient, Error> {
    let (k, m) = (sys.n_users(), sys.n_rf());
    if sol.beams.dim() != (m, k) {
        return Err(Error::shape("implicit_vjp solution beams", format!("{m}x{k}"), format!("{:?}", sol.beams.dim())));
    }
    if grad_v.len() != k || grad_q.len() != k || grad_v.iter().any(|g| g.len() != m) {
        return Err(Error::shape(
            "implicit_vjp gradients (K beam gradients of length M, K power gradients)",
            format!("{k} x [{m}], [{k}]"),
            format!("{} x {:?}, [{}]", grad_v.len(), grad_v.iter().map(Array1::len).collect::<Vec<_>>(), grad_q.len()),
        ));
    }
    let bw = 2 * m - 1;
    let v = amplitudes(sol);
    let j = jacobian(sys, sol, &v);
    let mut rhs = Array1::<f64>::zeros(2 * m * k);
    for u in 0..k {
        for (r, x) in real_form(&grad_v[u]).iter().enumerate() {
            rhs[u * bw + r] = *x;
        }
        rhs[k * bw + u] = grad_q[u];
    }
    let sol_u = lu_solve(j.t().to_owned(), rhs).ok_or(Error::Singular { what: "implicit-function Jacobian J^T" })?;
    let ubar: Vec<Array1<c64>> = (0..k)
        .map(|u| {
            Array1::from_shape_fn(m, |i| {
                let re = sol_u[u * bw + i];
                let im = if i == 0 { 0.0 } else { sol_u[u * bw + m + i - 1] };
                c64::new(re, im)
            })
        })
        .collect();
    let u2: Vec<f64> = (0..k).map(|u| sol_u[k * bw + u]).collect();
    let q = &sol.uplink_powers;
    let g = sys.targets();
    let uv: Vec<Array2<c64>> = (0..k).map(|u| herm(&outer(ubar[u].view(), v[u].view()))).collect();
    let vv: Vec<Array2<c64>> = v.iter().map(|x| outer(x.view(), x.view())).collect();
    let zeros = || Array2::<c64>::zeros((m, m));
    let wanted = (0..k).map(|u| &uv[u].mapv(|z| z * (q[u] / g[u])) - &vv[u].mapv(|z| z * (u2[u] / g[u]))).collect();
    let interference = (0..k)
        .map(|t| {
            let mut acc = zeros();
            for u in (0..k).filter(|&u| u != t) {
                acc.scaled_add(c64::new(-q[t], 0.0), &uv[u]);
                acc.scaled_add(c64::new(u2[t], 0.0), &vv[u]);
            }
            acc
        })
        .collect();
    let mut phi = zeros();
    for x in &uv {
        phi -= x;
    }
    Ok(QosGradient { wanted, interference, phi })
}

/// Converts gradients with respect to downlink powers and unit beams into the `v` gradient of
/// [`implicit_vjp`]: with `p_k = ‖v_k‖²`, `w_k = v_k/‖v_k‖`,
/// `∂L/∂v_k = 2 v_k ∂L/∂p_k + (g_w − w_k Re(w_k^H g_w)) / ‖v_k‖`.
///
/// - `grad_p`: `∂L/∂p_k`, `[K]`; `grad_w`: `∂L/∂Re w_k + j ∂L/∂Im w_k`, `K` vectors `[M]`.
///
/// # Errors
/// [`Error::ShapeMismatch`] for mismatched shapes.
pub(crate) fn powers_beams_to_v(
    sol: &QosSolution,
    grad_p: &[f64],
    grad_w: &[Array1<c64>],
) -> Result<Vec<Array1<c64>>, Error> {
    let (m, k) = sol.beams.dim();
    if grad_p.len() != k || grad_w.len() != k || grad_w.iter().any(|g| g.len() != m) {
        return Err(Error::shape(
            "power and beam gradients (K powers, K beams of length M)",
            format!("[{k}], {k} x [{m}]"),
            format!("[{}], {} x {:?}", grad_p.len(), grad_w.len(), grad_w.iter().map(Array1::len).collect::<Vec<_>>()),
        ));
    }
    Ok((0..k)
        .map(|u| {
            let w = sol.beams.column(u);
            let norm = sol.powers[u].sqrt();
            let proj: c64 = w.iter().zip(&grad_w[u]).map(|(a, b)| a.conj() * b).sum();
            Array1::from_shape_fn(m, |i| w[i] * (2.0 * norm * grad_p[u]) + (grad_w[u][i] - w[i] * proj.re) / norm)
        })
        .collect())
}

/// The envelope gradient of the trial power `P = Σ_k q_k` (module docs); no linear solve.
pub(crate) fn power_envelope(sys: &QosSystem, sol: &QosSolution) -> QosGradient {
    let (k, m) = (sys.n_users(), sys.n_rf());
    let pww: Vec<Array2<c64>> = (0..k)
        .map(|u| {
            let w = sol.beams.column(u);
            outer(w, w).mapv(|z| z * sol.powers[u])
        })
        .collect();
    let q = &sol.uplink_powers;
    let wanted = (0..k).map(|u| pww[u].mapv(|z| z * (-q[u] / sys.targets()[u]))).collect();
    let interference = (0..k)
        .map(|u| {
            let mut acc = Array2::<c64>::zeros((m, m));
            for j in (0..k).filter(|&j| j != u) {
                acc.scaled_add(c64::new(q[u], 0.0), &pww[j]);
            }
            acc
        })
        .collect();
    let mut phi = Array2::<c64>::zeros((m, m));
    for x in &pww {
        phi += x;
    }
    QosGradient { wanted, interference, phi }
}

/// Chains a Hermitian gradient `G = ∇_X L` of `X = A^H R A` (`A: [N × M]`, `R: [N × N]` Hermitian)
/// to `(∇_R L, ∂L/∂A*)`: `∇_R L = A G A^H` (same Hermitian convention) and the Wirtinger gradient
/// `∂L/∂A* = R A G` (so `dL = 2 Re tr((∂L/∂A*)^H dA)`).
#[cfg(test)]
fn chain_to_covariance(g: &Array2<c64>, a: &Array2<c64>, r: &Array2<c64>) -> (Array2<c64>, Array2<c64>) {
    (a.dot(g).dot(&adjoint(a)), r.dot(a).dot(g))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qos::{QosOptions, solve_qos};
    use crate::util::testutil::{rand_hermitian, rand_hpd, rand_vec};

    const OPTS: QosOptions =
        QosOptions { max_n_iterations: 10_000, tolerance: 1e-15, power_cap: 1e9, accelerate: true };

    /// A random instance with full-rank virtual channels (so Assumption 4.1 holds).
    fn system(m: usize, k: usize, seed: u64, perturb: Option<(f64, u64)>) -> QosSystem {
        let (t, dseed) = perturb.unwrap_or((0.0, 0));
        let d = |i: u64| rand_hermitian(m, dseed * 1000 + i).mapv(|z| z * t);
        let s: Vec<_> = (0..k).map(|u| rand_hpd(m, seed * 10 + u as u64) + d(u as u64)).collect();
        let i: Vec<_> =
            (0..k).map(|u| rand_hpd(m, seed * 10 + 5 + u as u64).mapv(|z| z * 0.3) + d(50 + u as u64)).collect();
        let phi = Array2::<c64>::eye(m) + rand_hpd(m, seed + 77).mapv(|z| z * 0.1) + d(99);
        let targets = (0..k).map(|u| 0.5 + u as f64).collect();
        QosSystem::new(s, i, phi, targets).unwrap()
    }

    fn direction(m: usize, k: usize, dseed: u64) -> (Vec<Array2<c64>>, Vec<Array2<c64>>, Array2<c64>) {
        let d = |i: u64| rand_hermitian(m, dseed * 1000 + i);
        ((0..k).map(|u| d(u as u64)).collect(), (0..k).map(|u| d(50 + u as u64)).collect(), d(99))
    }

    /// A phase-invariant loss of (p, w, q) with its gradients.
    struct Loss {
        a: Vec<f64>,
        b: Vec<f64>,
        c: Vec<Array1<c64>>,
    }

    impl Loss {
        fn new(m: usize, k: usize) -> Self {
            Self {
                a: (0..k).map(|u| 0.3 + 0.2 * u as f64).collect(),
                b: (0..k).map(|u| 1.0 - 0.3 * u as f64).collect(),
                c: (0..k).map(|u| rand_vec(m, 500 + u as u64)).collect(),
            }
        }
        fn value(&self, sol: &QosSolution) -> f64 {
            (0..self.a.len())
                .map(|u| {
                    let cw: c64 = self.c[u].iter().zip(sol.beams.column(u)).map(|(x, y)| x.conj() * y).sum();
                    self.a[u] * sol.powers[u] + self.b[u] * sol.uplink_powers[u] + cw.norm_sqr()
                })
                .sum()
        }
        fn grad_v(&self, sol: &QosSolution) -> Vec<Array1<c64>> {
            // ∂|c^H w|²/∂(Re w, Im w) = 2 c (c^H w).
            let gw: Vec<Array1<c64>> = (0..self.a.len())
                .map(|u| {
                    let cw: c64 = self.c[u].iter().zip(sol.beams.column(u)).map(|(x, y)| x.conj() * y).sum();
                    self.c[u].mapv(|z| z * cw * 2.0)
                })
                .collect();
            powers_beams_to_v(sol, &self.a, &gw).unwrap()
        }
    }

    #[test]
    fn implicit_gradient_matches_finite_differences() {
        let (m, k) = (4, 3);
        let loss = Loss::new(m, k);
        for seed in 0..3 {
            let sys = system(m, k, seed, None);
            let sol = solve_qos(&sys, &OPTS, None).unwrap();
            let grad = implicit_vjp(&sys, &sol, &loss.grad_v(&sol), &loss.b).unwrap();
            for dseed in 1..4 {
                let (ds, di, dp) = direction(m, k, dseed);
                let analytic = grad.directional(&ds, &di, &dp);
                let t = 1e-5;
                let at = |tt: f64| loss.value(&solve_qos(&system(m, k, seed, Some((tt, dseed))), &OPTS, None).unwrap());
                let fd = (at(t) - at(-t)) / (2.0 * t);
                let rel = (fd - analytic).abs() / fd.abs().max(1e-3);
                assert!(rel < 1e-5, "seed {seed} dir {dseed}: fd {fd} vs implicit {analytic} (rel {rel:e})");
            }
        }
    }

    #[test]
    fn envelope_matches_finite_differences_and_the_implicit_gradient() {
        let (m, k) = (4, 3);
        for seed in 0..3 {
            let sys = system(m, k, seed, None);
            let sol = solve_qos(&sys, &OPTS, None).unwrap();
            let env = power_envelope(&sys, &sol);
            let zero_v = vec![Array1::<c64>::zeros(m); k];
            let imp = implicit_vjp(&sys, &sol, &zero_v, &[1.0; 3]).unwrap();
            for dseed in 1..4 {
                let (ds, di, dp) = direction(m, k, dseed);
                let e = env.directional(&ds, &di, &dp);
                let t = 1e-5;
                let at = |tt: f64| solve_qos(&system(m, k, seed, Some((tt, dseed))), &OPTS, None).unwrap().uplink_sum();
                let fd = (at(t) - at(-t)) / (2.0 * t);
                let rel = (fd - e).abs() / fd.abs();
                assert!(rel < 1e-5, "seed {seed}: fd {fd} vs envelope {e} (rel {rel:e})");
                let i = imp.directional(&ds, &di, &dp);
                assert!((i - e).abs() < 1e-8 * e.abs(), "implicit {i} vs envelope {e}");
            }
        }
    }

    #[test]
    fn covariance_chain_rule_matches_finite_differences() {
        // f(A, R) = Re tr(G A^H R A) for fixed Hermitian G.
        let (n, m) = (5, 3);
        let g = rand_hermitian(m, 1);
        let a = crate::util::testutil::rand_mat(n, m, 2);
        let r = rand_hpd(n, 3);
        let f = |a: &Array2<c64>, r: &Array2<c64>| {
            let x = adjoint(a).dot(r).dot(a);
            g.iter().zip(x.t().iter()).map(|(p, q)| (p * q).re).sum::<f64>()
        };
        let (gr, ga) = chain_to_covariance(&g, &a, &r);
        let da = crate::util::testutil::rand_mat(n, m, 4);
        let dr = rand_hermitian(n, 5);
        let t = 1e-6;
        let fd_a = (f(&(&a + &da.mapv(|z| z * t)), &r) - f(&(&a - &da.mapv(|z| z * t)), &r)) / (2.0 * t);
        let an_a = 2.0 * ga.iter().zip(da.iter()).map(|(p, q)| (p.conj() * q).re).sum::<f64>();
        assert!((fd_a - an_a).abs() < 1e-6 * an_a.abs().max(1.0), "{fd_a} vs {an_a}");
        let fd_r = (f(&a, &(&r + &dr.mapv(|z| z * t))) - f(&a, &(&r - &dr.mapv(|z| z * t)))) / (2.0 * t);
        let an_r = gr.iter().zip(dr.t().iter()).map(|(p, q)| (p * q).re).sum::<f64>();
        assert!((fd_r - an_r).abs() < 1e-6 * an_r.abs().max(1.0), "{fd_r} vs {an_r}");
    }

    #[test]
    fn shape_errors_are_typed() {
        let sys = system(3, 2, 0, None);
        let sol = solve_qos(&sys, &OPTS, None).unwrap();
        assert!(implicit_vjp(&sys, &sol, &[Array1::zeros(3)], &[1.0, 1.0]).is_err());
        assert!(powers_beams_to_v(&sol, &[1.0], &[]).is_err());
    }
}
