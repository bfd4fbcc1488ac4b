//! QoS power minimisation for a fixed analog matrix (spec §2; Hegde, Cheng, Pesavento, ICASSP 2017).
//!
//! System model, for `K` users and `M` RF chains, all matrices `[M × M]` Hermitian:
//! wanted-signal matrices `S_k = A^H R^S_k A`, interference matrices `I_k = A^H R^I_k A` (the
//! interference *received at* user `k`), a power-weighting matrix `Φ` (`I_M` for baseband power,
//! `A^H A` for RF power) and SINR targets `γ_k > 0`. Unit noise variance.
//!
//! Downlink problem: minimise `Σ_k ω_k p_k`, `ω_k = w_k^H Φ w_k`, over unit beams `w_k` and powers
//! `p_k ≥ 0` subject to
//! `SINR_k = p_k w_k^H S_k w_k / (Σ_{j≠k} p_j w_j^H I_k w_j + 1) ≥ γ_k`.
//!
//! It is solved in the virtual uplink (16)-(17): minimise `Σ q_k` subject to
//! `q_k w_k^H S_k w_k / (w_k^H B_k(q) w_k) ≥ γ_k`, `B_k(q) = Φ + Σ_{j≠k} q_j I_j`.
//!
//! - Fixed-point power iteration (Yates; Schubert–Boche):
//!   `q_k ← γ_k / λ_max(S_k, B_k(q))`, the largest generalised eigenvalue. From `q = 0` the iterates
//!   increase monotonically to the minimal fixed point when the targets are feasible.
//! - Optional acceleration (default on, [`QosOptions::accelerate`]): with the MMSE beams of the
//!   current iterate fixed, the uplink power equations are linear,
//!   `(D − Ψ^T) q = ω`, `D_kk = w_k^H S_k w_k / γ_k`, `Ψ_kj = w_j^H I_k w_j`. A positive solution is a
//!   componentwise upper bound of the optimum, and from it the iteration decreases monotonically
//!   (Schubert–Boche's second algorithm); otherwise the plain fixed-point step is taken.
//! - Uplink MMSE beams: principal generalised eigenvector of `(S_k, B_k(q*))`, unit norm, first
//!   entry real and non-negative (the phase convention of the implicit gradient, spec §4).
//! - Downlink powers (22)-(23): `G p = 1`, `G_kk = w_k^H S_k w_k / γ_k`, `G_kj = −w_j^H I_k w_j`.
//!   Uplink–downlink duality gives `Σ_k ω_k p_k = Σ_k q_k` and every downlink SINR equals `γ_k`.
//!
//! Infeasibility is an error ([`Error::Infeasible`]): the uplink sum power exceeds
//! [`QosOptions::power_cap`], the iteration limit is hit, a user has no wanted signal, or the
//! downlink system has no positive solution. A non-positive-definite `B_k` (for example `Φ = 0`) is
//! [`Error::Singular`].

use beamlab_linalg_ops::{LinalgError, c64, generalized_self_adjoint_eigen};
use ndarray::{Array1, Array2, ArrayView2};

use crate::util::{lu_solve, quad};
use crate::{Error, InfeasibleReason};

/// A QoS power-minimisation instance for a fixed analog matrix: `S_k`, `I_k`, `Φ` (all `[M × M]`)
/// and the targets `γ_k` (linear). See the module docs for the model.
#[derive(Clone, Debug)]
pub struct QosSystem {
    wanted: Vec<Array2<c64>>,
    interference: Vec<Array2<c64>>,
    phi: Array2<c64>,
    targets: Vec<f64>,
}

impl QosSystem {
    /// The system seen through the analog matrix `A: [N × M]`: `S_k = Aᴴ R_k A`,
    /// `I_k = Aᴴ Q_k A` for the `[N × N]` covariances `wanted` (`R_k`) and `interference`
    /// (`Q_k`), with `Φ = I_M` (unit-modulus analog beams) — the baseband problem of a codeword
    /// selection.
    ///
    /// # Errors
    /// As [`QosSystem::new`].
    pub fn through_analog(
        a: &Array2<c64>,
        wanted: &[Array2<c64>],
        interference: &[Array2<c64>],
        targets: Vec<f64>,
    ) -> Result<Self, Error> {
        let ah = a.t().mapv(|z| z.conj());
        Self::new(
            wanted.iter().map(|r| ah.dot(r).dot(a)).collect(),
            interference.iter().map(|r| ah.dot(r).dot(a)).collect(),
            Array2::eye(a.ncols()),
            targets,
        )
    }

    /// Validates and bundles an instance.
    ///
    /// - `wanted`: `S_k`, `K` matrices `[M × M]`;
    /// - `interference`: `I_k`, `K` matrices `[M × M]` (interference received at user `k`);
    /// - `phi`: `Φ`, `[M × M]`;
    /// - `targets`: `γ_k`, `K` finite positive values.
    ///
    /// # Errors
    /// [`Error::Empty`] without users or RF chains, [`Error::ShapeMismatch`] for counts or sizes
    /// that do not fit, [`Error::NonFinite`] for a non-finite matrix entry,
    /// [`Error::InvalidTarget`] for a target that is not finite and positive.
    pub fn new(
        wanted: Vec<Array2<c64>>,
        interference: Vec<Array2<c64>>,
        phi: Array2<c64>,
        targets: Vec<f64>,
    ) -> Result<Self, Error> {
        let k = wanted.len();
        let m = phi.nrows();
        if k == 0 {
            return Err(Error::Empty { what: "QoS system users (wanted matrices)" });
        }
        if m == 0 {
            return Err(Error::Empty { what: "QoS system RF chains (phi)" });
        }
        if interference.len() != k {
            return Err(Error::shape("QoS interference matrices (one per user)", k, interference.len()));
        }
        if targets.len() != k {
            return Err(Error::shape("QoS SINR targets (one per user)", k, targets.len()));
        }
        if let Some(a) = std::iter::once(&phi).chain(&wanted).chain(&interference).find(|a| a.dim() != (m, m)) {
            return Err(Error::shape("QoS system matrix", format!("{m}x{m}"), format!("{:?}", a.dim())));
        }
        let finite = |a: &Array2<c64>| a.iter().all(|z| z.re.is_finite() && z.im.is_finite());
        if !finite(&phi) || !wanted.iter().chain(&interference).all(finite) {
            return Err(Error::NonFinite { what: "QoS system matrices" });
        }
        if let Some((user, &value)) = targets.iter().enumerate().find(|(_, g)| !(g.is_finite() && **g > 0.0)) {
            return Err(Error::InvalidTarget { user, value });
        }
        Ok(Self { wanted, interference, phi, targets })
    }

    /// Number of users `K`.
    #[must_use]
    pub fn n_users(&self) -> usize {
        self.wanted.len()
    }

    /// Number of RF chains `M`.
    #[must_use]
    pub fn n_rf(&self) -> usize {
        self.phi.nrows()
    }

    /// `S_k`.
    #[must_use]
    pub fn wanted(&self) -> &[Array2<c64>] {
        &self.wanted
    }

    /// `I_k`.
    #[must_use]
    pub fn interference(&self) -> &[Array2<c64>] {
        &self.interference
    }

    /// `Φ`.
    #[must_use]
    pub fn phi(&self) -> &Array2<c64> {
        &self.phi
    }

    /// `γ_k`.
    #[must_use]
    pub fn targets(&self) -> &[f64] {
        &self.targets
    }

    /// `B_k(q) = Φ + Σ_{j≠k} q_j I_j`, `[M × M]`.
    #[must_use]
    pub(crate) fn uplink_covariance(&self, q: &[f64], k: usize) -> Array2<c64> {
        let mut b = self.phi.clone();
        for (j, (ij, &qj)) in self.interference.iter().zip(q).enumerate() {
            if j != k && qj != 0.0 {
                b.scaled_add(c64::new(qj, 0.0), ij);
            }
        }
        b
    }

    /// Downlink SINRs `[K]` of beams `w: [M × K]` (any norm) with powers `p` (unit noise).
    #[must_use]
    pub fn downlink_sinrs(&self, w: ArrayView2<'_, c64>, p: &[f64]) -> Vec<f64> {
        (0..self.n_users())
            .map(|k| {
                let sig = p[k] * quad(&self.wanted[k], w.column(k));
                let int: f64 = (0..self.n_users())
                    .filter(|&j| j != k)
                    .map(|j| p[j] * quad(&self.interference[k], w.column(j)))
                    .sum();
                sig / (int + 1.0)
            })
            .collect()
    }
}

/// Options of [`solve_qos`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QosOptions {
    /// Iteration limit of the power iteration (default 5 000); hitting it means infeasible.
    pub max_n_iterations: usize,
    /// Stop when `Σ|Δq| ≤ tolerance · Σ q` (default 1e-12).
    pub tolerance: f64,
    /// Declare infeasibility when `Σ q` exceeds this (default 1e9).
    pub power_cap: f64,
    /// Use the Schubert–Boche linear-system step when it is valid (default true).
    pub accelerate: bool,
}

impl Default for QosOptions {
    fn default() -> Self {
        Self { max_n_iterations: 5_000, tolerance: 1e-12, power_cap: 1e9, accelerate: true }
    }
}

/// The solution of a QoS instance.
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct QosSolution {
    /// Virtual uplink powers `q_k`, `[K]`.
    pub uplink_powers: Vec<f64>,
    /// Unit beams `w_k` as columns, `[M × K]`, first entry of each real and ≥ 0.
    pub beams: Array2<c64>,
    /// Downlink powers `p_k`, `[K]`.
    pub powers: Vec<f64>,
    /// Power weights `ω_k = w_k^H Φ w_k`, `[K]`.
    pub weights: Vec<f64>,
    /// Power-iteration steps taken.
    pub n_iterations: usize,
}

impl QosSolution {
    /// `Σ_k q_k`.
    #[must_use]
    pub fn uplink_sum(&self) -> f64 {
        self.uplink_powers.iter().sum()
    }

    /// `Σ_k ω_k p_k` (equal to [`QosSolution::uplink_sum`] by duality).
    #[must_use]
    pub fn weighted_power(&self) -> f64 {
        self.weights.iter().zip(&self.powers).map(|(w, p)| w * p).sum()
    }

    /// Baseband precoder `[√p_1 w_1, …, √p_K w_K]`, `[M × K]`.
    #[must_use]
    pub fn baseband(&self) -> Array2<c64> {
        let mut d = self.beams.clone();
        for (mut col, p) in d.columns_mut().into_iter().zip(&self.powers) {
            col.mapv_inplace(|z| z * p.sqrt());
        }
        d
    }
}

/// Largest generalised eigenpair of `(S, B)`: `(λ_max, w)` with `‖w‖ = 1`, `w_0` real ≥ 0.
pub(crate) fn principal_pair(s: &Array2<c64>, b: &Array2<c64>) -> Result<(f64, Array1<c64>), Error> {
    let (lambda, v) = generalized_self_adjoint_eigen(s.view(), b.view()).map_err(|e| match e {
        LinalgError::NotPositiveDefinite { .. } => Error::Singular { what: "uplink interference-plus-noise matrix" },
        e => Error::Linalg(e),
    })?;
    let m = lambda.len();
    let mut w = v.column(m - 1).to_owned();
    normalise_phase(&mut w);
    Ok((lambda[m - 1], w))
}

/// Scales `w` to unit norm with its first entry real and non-negative (a zero first entry keeps
/// its phase).
pub(crate) fn normalise_phase(w: &mut Array1<c64>) {
    let norm = w.iter().map(|z| z.norm_sqr()).sum::<f64>().sqrt();
    let first = w[0];
    let rot = if first.norm() > 0.0 { first.conj() / first.norm() } else { c64::new(1.0, 0.0) };
    let f = rot / norm;
    w.mapv_inplace(|z| z * f);
    w[0] = c64::new(w[0].re.max(0.0), 0.0);
}

/// Beams, `λ_max` per user at uplink powers `q`.
fn beams_at(sys: &QosSystem, q: &[f64]) -> Result<(Vec<f64>, Array2<c64>), Error> {
    let (k, m) = (sys.n_users(), sys.n_rf());
    let mut lambdas = vec![0.0; k];
    let mut w = Array2::zeros((m, k));
    for (u, lambda) in lambdas.iter_mut().enumerate() {
        let b = sys.uplink_covariance(q, u);
        let (l, v) = principal_pair(&sys.wanted[u], &b)?;
        *lambda = l;
        w.column_mut(u).assign(&v);
    }
    Ok((lambdas, w))
}

/// Uplink powers of fixed beams, `(D − Ψ^T) q = ω`; `None` when the system has no positive solution.
fn linear_uplink(sys: &QosSystem, w: &Array2<c64>) -> Option<Vec<f64>> {
    let k = sys.n_users();
    let mut a = Array2::<f64>::zeros((k, k));
    let mut omega = Array1::<f64>::zeros(k);
    for u in 0..k {
        let wu = w.column(u);
        a[[u, u]] = quad(&sys.wanted[u], wu) / sys.targets[u];
        for j in 0..k {
            if j != u {
                a[[u, j]] = -quad(&sys.interference[j], wu);
            }
        }
        omega[u] = quad(&sys.phi, wu);
    }
    let q = lu_solve(a, omega)?;
    q.iter().all(|x| x.is_finite() && *x > 0.0).then(|| q.to_vec())
}

/// Downlink powers `p` from `G p = 1` (see the module docs); `None` without a positive solution.
pub(crate) fn downlink_powers(sys: &QosSystem, w: ArrayView2<'_, c64>) -> Option<Vec<f64>> {
    let k = sys.n_users();
    let g = Array2::from_shape_fn((k, k), |(u, j)| {
        if u == j {
            quad(&sys.wanted[u], w.column(u)) / sys.targets[u]
        } else {
            -quad(&sys.interference[u], w.column(j))
        }
    });
    let p = lu_solve(g, Array1::ones(k))?;
    p.iter().all(|x| x.is_finite() && *x > 0.0).then(|| p.to_vec())
}

/// Solves the QoS power-minimisation problem of `sys` (see the module docs).
///
/// `warm_start`: initial uplink powers (for example the solution of a neighbouring greedy trial);
/// `None` starts at `q = 0`.
///
/// # Errors
/// [`Error::Infeasible`] when the targets cannot be met (or the iteration limit is hit),
/// [`Error::Singular`] when some `B_k` is not positive definite, [`Error::ShapeMismatch`] or
/// [`Error::InvalidParameter`] (`warm_start`) for a warm start that is not `K` finite non-negative
/// powers.
pub fn solve_qos(sys: &QosSystem, opts: &QosOptions, warm_start: Option<&[f64]>) -> Result<QosSolution, Error> {
    let k = sys.n_users();
    let mut q = match warm_start {
        Some(q0) if q0.len() != k => return Err(Error::shape("warm-start powers (one per user)", k, q0.len())),
        Some(q0) if q0.iter().any(|x| !(x.is_finite() && *x >= 0.0)) => {
            return Err(Error::param("warm_start", format!("powers must be finite and >= 0, got {q0:?}")));
        }
        Some(q0) => q0.to_vec(),
        None => vec![0.0; k],
    };
    let infeasible =
        |sum: f64, n: usize, reason: InfeasibleReason| Error::Infeasible { sum_power: sum, n_iterations: n, reason };
    let mut n_iterations = 0;
    loop {
        if n_iterations >= opts.max_n_iterations {
            return Err(infeasible(q.iter().sum(), n_iterations, InfeasibleReason::IterationLimit));
        }
        n_iterations += 1;
        let (lambdas, w) = beams_at(sys, &q)?;
        if let Some(user) = lambdas.iter().position(|l| !(*l > 0.0 && l.is_finite())) {
            return Err(infeasible(f64::INFINITY, n_iterations, InfeasibleReason::NoWantedSignal { user }));
        }
        let fixed_point: Vec<f64> = lambdas.iter().zip(&sys.targets).map(|(l, g)| g / l).collect();
        let next = match opts.accelerate.then(|| linear_uplink(sys, &w)).flatten() {
            Some(lin) if lin.iter().sum::<f64>() <= opts.power_cap => lin,
            _ => fixed_point,
        };
        let sum: f64 = next.iter().sum();
        if !(sum <= opts.power_cap) {
            return Err(infeasible(sum, n_iterations, InfeasibleReason::PowerCap));
        }
        let change: f64 = next.iter().zip(&q).map(|(a, b)| (a - b).abs()).sum();
        q = next;
        if change <= opts.tolerance * sum {
            break;
        }
    }
    let (_, beams) = beams_at(sys, &q)?;
    let powers = downlink_powers(sys, beams.view())
        .ok_or_else(|| infeasible(q.iter().sum(), n_iterations, InfeasibleReason::NoPositiveDownlink))?;
    let weights = (0..k).map(|u| quad(&sys.phi, beams.column(u))).collect();
    Ok(QosSolution { uplink_powers: q, beams, powers, weights, n_iterations })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::testutil::{rand_hpd, rand_vec};

    /// A random rank-one instance (instantaneous CSI) with `M` chains, `K` users.
    pub(crate) fn rank_one_system(m: usize, k: usize, gamma: f64, seed: u64) -> QosSystem {
        let s: Vec<Array2<c64>> = (0..k)
            .map(|u| {
                let g = rand_vec(m, seed * 100 + u as u64);
                Array2::from_shape_fn((m, m), |(i, j)| g[i] * g[j].conj())
            })
            .collect();
        QosSystem::new(s.clone(), s, Array2::eye(m), vec![gamma; k]).unwrap()
    }

    fn check_identities(sys: &QosSystem, sol: &QosSolution) {
        let rel = (sol.weighted_power() - sol.uplink_sum()).abs() / sol.uplink_sum();
        assert!(rel < 1e-9, "duality: Σωp = {} vs Σq = {}", sol.weighted_power(), sol.uplink_sum());
        let sinr = sys.downlink_sinrs(sol.beams.view(), &sol.powers);
        for (s, g) in sinr.iter().zip(sys.targets()) {
            assert!((s / g - 1.0).abs() < 1e-9, "SINR {s} vs target {g}");
        }
        for c in sol.beams.columns() {
            let n: f64 = c.iter().map(|z| z.norm_sqr()).sum();
            assert!((n - 1.0).abs() < 1e-12 && c[0].im == 0.0 && c[0].re >= 0.0);
        }
    }

    #[test]
    fn duality_and_exact_sinr_rank_one() {
        for seed in 0..5 {
            let sys = rank_one_system(5, 4, 2.0, seed);
            let sol = solve_qos(&sys, &QosOptions::default(), None).unwrap();
            check_identities(&sys, &sol);
        }
    }

    #[test]
    fn duality_and_exact_sinr_full_rank_rf_weighting() {
        // Distinct wanted and interference matrices (virtual channels) and a non-identity Φ.
        let (m, k) = (4, 3);
        let s: Vec<_> = (0..k).map(|u| rand_hpd(m, 10 + u as u64)).collect();
        let i: Vec<_> = (0..k).map(|u| rand_hpd(m, 20 + u as u64).mapv(|z| z * 0.2)).collect();
        let sys = QosSystem::new(s, i, rand_hpd(m, 99), vec![1.5, 0.7, 3.0]).unwrap();
        let sol = solve_qos(&sys, &QosOptions::default(), None).unwrap();
        check_identities(&sys, &sol);
    }

    #[test]
    fn plain_and_accelerated_iterations_agree() {
        let sys = rank_one_system(5, 4, 3.0, 7);
        let fast = solve_qos(&sys, &QosOptions::default(), None).unwrap();
        let plain = solve_qos(&sys, &QosOptions { accelerate: false, ..QosOptions::default() }, None).unwrap();
        assert!(fast.n_iterations < plain.n_iterations, "{} vs {}", fast.n_iterations, plain.n_iterations);
        for (a, b) in fast.uplink_powers.iter().zip(&plain.uplink_powers) {
            assert!((a - b).abs() < 1e-8 * a, "{a} vs {b}");
        }
        // The warm start from the optimum converges immediately to the same point.
        let warm = solve_qos(&sys, &QosOptions::default(), Some(&fast.uplink_powers)).unwrap();
        assert!(warm.n_iterations <= 2);
    }

    #[test]
    fn single_user_closed_form() {
        // One user: q = γ / λ_max(S, Φ) = γ / ‖g‖² for S = g g^H, Φ = I.
        let sys = rank_one_system(3, 1, 4.0, 3);
        let g2 = sys.wanted()[0].diag().iter().map(|z| z.re).sum::<f64>();
        let sol = solve_qos(&sys, &QosOptions::default(), None).unwrap();
        assert!((sol.uplink_powers[0] - 4.0 / g2).abs() < 1e-12);
        assert!((sol.powers[0] - 4.0 / g2).abs() < 1e-12);
    }

    #[test]
    fn infeasible_targets_are_a_typed_error() {
        // Five users on a two-chain array with high targets cannot all be served.
        let sys = rank_one_system(2, 5, 100.0, 1);
        for accelerate in [true, false] {
            let opts = QosOptions { accelerate, ..QosOptions::default() };
            assert!(matches!(
                solve_qos(&sys, &opts, None),
                Err(Error::Infeasible { reason: InfeasibleReason::PowerCap | InfeasibleReason::IterationLimit, .. })
            ));
        }
        // The caller can act on it: the same channels serve lower targets.
        let low = rank_one_system(2, 5, 0.01, 1);
        let sol = solve_qos(&low, &QosOptions::default(), None).unwrap();
        check_identities(&low, &sol);
        // A user with a zero channel: named in the reason.
        let mut s = rank_one_system(3, 2, 1.0, 2).wanted().to_vec();
        s[1] = Array2::zeros((3, 3));
        let sys = QosSystem::new(s.clone(), s, Array2::eye(3), vec![1.0, 1.0]).unwrap();
        let err = solve_qos(&sys, &QosOptions::default(), None).unwrap_err();
        assert!(matches!(err, Error::Infeasible { reason: InfeasibleReason::NoWantedSignal { user: 1 }, .. }), "{err}");
        assert!(err.to_string().contains("user 1 receives no wanted signal"), "{err}");
    }

    #[test]
    fn singular_uplink_matrix_is_a_typed_error() {
        let base = rank_one_system(3, 2, 1.0, 4);
        let sys =
            QosSystem::new(base.wanted().to_vec(), base.interference().to_vec(), Array2::zeros((3, 3)), vec![1.0; 2])
                .unwrap();
        assert!(matches!(solve_qos(&sys, &QosOptions::default(), None), Err(Error::Singular { .. })));
    }

    #[test]
    fn bad_input_is_rejected() {
        let base = rank_one_system(3, 2, 1.0, 5);
        let (s, i) = (base.wanted().to_vec(), base.interference().to_vec());
        assert!(matches!(QosSystem::new(vec![], vec![], Array2::eye(3), vec![]), Err(Error::Empty { .. })));
        assert!(matches!(
            QosSystem::new(s.clone(), i.clone(), Array2::eye(2), vec![1.0; 2]),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            QosSystem::new(s.clone(), i.clone(), Array2::eye(3), vec![1.0, f64::NAN]),
            Err(Error::InvalidTarget { user: 1, value }) if value.is_nan()
        ));
        let mut bad = s.clone();
        bad[0][[0, 0]] = c64::new(f64::INFINITY, 0.0);
        assert!(matches!(QosSystem::new(bad, i.clone(), Array2::eye(3), vec![1.0; 2]), Err(Error::NonFinite { .. })));
        let sys = QosSystem::new(s, i, Array2::eye(3), vec![1.0; 2]).unwrap();
        assert!(matches!(
            solve_qos(&sys, &QosOptions::default(), Some(&[1.0])),
            Err(Error::ShapeMismatch { expected, found, .. }) if expected == "2" && found == "1"
        ));
        assert!(matches!(
            solve_qos(&sys, &QosOptions::default(), Some(&[1.0, -1.0])),
            Err(Error::InvalidParameter { name: "warm_start", .. })
        ));
        assert!(solve_qos(&sys, &QosOptions::default(), Some(&[1.0, -1.0])).is_err());
    }
}
