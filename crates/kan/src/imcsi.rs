//! GGML-ImCSI: worst-case robust hybrid precoding with imperfect CSI (spec §3; paper Sec. IV,
//! eqs. (28)–(34), Algorithm 2).
//!
//! Error model: `ĥ_k = h_k + e_k`, `e_k ~ CN(0, δ ‖h_k‖²/N I_N)` (`ĥ_k, e_k: [1 × N]`). The method
//! knows `δ` ([`beamlab_core::ErrorStats::Relative`]) and the estimate only:
//!
//! 1. **Error bound.** `ε_k` is the `(1 − outage)` quantile (95 % by default) of `σ_max(e_k) =
//!    ‖e_k‖` over Monte-Carlo draws. Since `e_k = s_k z` with `z ~ CN(0, I_N)` and
//!    `s_k² = δ ‖h_k‖²/N`, one set of draws of `‖z‖` gives every user's bound, `ε_k = s_k q`; the
//!    unknown `‖h_k‖²` is replaced by its unbiased estimate `‖ĥ_k‖²/(1 + δ)`.
//! 2. **Worst-case channel.** `R̂_k = ĥ_k^H ĥ_k = M̂ Λ̂ M̂^H` (Hermitian eigendecomposition);
//!    `J_k = (Λ̂ − 2 ε_k σ_max(ĥ_k) I)^+` has rank ≤ 1; `R_k^WC = M̂ J_k M̂^H = h̃_k^H h̃_k` with
//!    `h̃_k = √λ_k m̃_k^H`, `m̃_k` the principal eigenvector and `λ_k = (‖ĥ_k‖² − 2 ε_k ‖ĥ_k‖)^+`.
//!    When `λ_k` would fall below `min_gain_fraction · ‖ĥ_k‖²` it is floored there (a zero channel
//!    makes the zero-forcing initialisation singular and the user's rate identically 0).
//! 3. **Design.** GGML on `{h̃_k}` with the worst-case MMSE loss `Π_k (e_k^WC)^{α_k} + β Var(e^WC)`,
//!    `e_k^WC = (1 + d_k^H F^H R_k^WC (T_k R_k^WC + σ² I)^{-1} F d_k)^{-1} = 1/(1 + SINR_k(h̃_k))`
//!    (eq. (32); the equality is the matrix-inversion lemma for the rank-1 `R_k^WC`), so its gradient
//!    is the chain rule `∂L/∂R_k · ∂R_k/∂·` on linalg-ops' analytic rate gradients
//!    ([`crate::Objective::WorstCaseMmse`]).

use beamlab_core::{Beamformer, CoreError, ErrorStats, Problem, Solution};
use beamlab_linalg_ops::{c64, self_adjoint_eigen};
use ndarray::Array2;
use rand::RngCore;
use rand_distr::{Distribution, StandardNormal};
use serde::Deserialize;

use crate::ggml::{GgmlParams, HybridSetup, Objective, method_error, run_ggml, to_solution};
use crate::{KanError, invalid};

/// Parameters of [`GgmlImcsi`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImcsiParams {
    /// The GGML part (network, steps, learning rates, `β`, ...).
    pub ggml: GgmlParams,
    /// Monte-Carlo draws for `ε_k` (default 20 000; the paper uses 1e5).
    pub n_mc_draws: usize,
    /// Outage probability of the error bound (default 0.05).
    pub outage: f64,
    /// Floor of the worst-case channel gain `λ_k` as a fraction of `‖ĥ_k‖²` (default 0.01).
    pub min_gain_fraction: f64,
}

impl Default for ImcsiParams {
    fn default() -> Self {
        Self { ggml: GgmlParams::default(), n_mc_draws: 20_000, outage: 0.05, min_gain_fraction: 0.01 }
    }
}

impl ImcsiParams {
    /// Checks the values.
    ///
    /// # Errors
    /// [`KanError::InvalidParameter`] naming the field.
    pub fn check(&self) -> Result<(), KanError> {
        self.ggml.check()?;
        if self.n_mc_draws < 20 {
            return Err(invalid("n_mc_draws", format!("must be >= 20, got {}", self.n_mc_draws)));
        }
        if !(self.outage > 0.0 && self.outage < 1.0) {
            return Err(invalid("outage", format!("must be in (0, 1), got {}", self.outage)));
        }
        if !(self.min_gain_fraction >= 0.0 && self.min_gain_fraction < 1.0) {
            return Err(invalid("min_gain_fraction", format!("must be in [0, 1), got {}", self.min_gain_fraction)));
        }
        Ok(())
    }
}

/// The `(1 − outage)` quantile `q` of `‖z‖`, `z ~ CN(0, I_n)`, from `n_draws` Monte-Carlo draws
/// (so that `Pr{‖e‖ ≥ s q} ≈ outage` for `e ~ CN(0, s² I_n)`).
///
/// # Errors
/// [`KanError::InvalidParameter`] for `n = 0`, fewer than 20 draws or an outage outside `(0, 1)`.
pub fn norm_quantile(n: usize, n_draws: usize, outage: f64, rng: &mut dyn RngCore) -> Result<f64, KanError> {
    if n == 0 {
        return Err(invalid("n", "must be >= 1"));
    }
    if n_draws < 20 {
        return Err(invalid("n_mc_draws", format!("must be >= 20, got {n_draws}")));
    }
    if !(outage > 0.0 && outage < 1.0) {
        return Err(invalid("outage", format!("must be in (0, 1), got {outage}")));
    }
    let mut norms: Vec<f64> = (0..n_draws)
        .map(|_| {
            let s: f64 = (0..2 * n)
                .map(|_| {
                    let g: f64 = StandardNormal.sample(rng);
                    g * g
                })
                .sum();
            (s / 2.0).sqrt()
        })
        .collect();
    let idx = (((1.0 - outage) * n_draws as f64).ceil() as usize).clamp(1, n_draws) - 1;
    let (_, q, _) = norms.select_nth_unstable_by(idx, f64::total_cmp);
    Ok(*q)
}

/// Error bounds `ε_k = q √(δ ‖ĥ_k‖² / ((1 + δ) N))` for every user (see the [module docs](self)).
///
/// # Errors
/// [`KanError::InvalidParameter`] for a negative or non-finite `δ`; as [`norm_quantile`].
pub fn error_bounds(
    h_hat: &[Array2<c64>],
    delta: f64,
    n_draws: usize,
    outage: f64,
    rng: &mut dyn RngCore,
) -> Result<Vec<f64>, KanError> {
    if !(delta.is_finite() && delta >= 0.0) {
        return Err(invalid("delta", format!("must be finite and >= 0, got {delta}")));
    }
    let n = h_hat.first().map_or(0, |h| h.len());
    let q = norm_quantile(n, n_draws, outage, rng)?;
    Ok(h_hat
        .iter()
        .map(|h| {
            let e2: f64 = h.iter().map(|z| z.norm_sqr()).sum();
            q * (delta * e2 / ((1.0 + delta) * n as f64)).sqrt()
        })
        .collect())
}

/// The worst-case channel of one user (eqs. (30)–(31)): `h̃ = √λ m̃^H` with `m̃` the principal
/// eigenvector of `R̂ = ĥ^H ĥ` and `λ = max(λ_max(R̂) − 2 ε σ_max(ĥ), floor · ‖ĥ‖²)`. Returns
/// `(h̃: [1 × N], λ, floored)`.
///
/// # Errors
/// [`KanError::Shape`] for a non-row `ĥ`, [`KanError::DegenerateChannel`] for an all-zero or non-finite one; eigensolver errors.
pub fn worst_case_channel(h_hat: &Array2<c64>, eps: f64, floor: f64) -> Result<(Array2<c64>, f64, bool), KanError> {
    if h_hat.nrows() != 1 || h_hat.is_empty() {
        return Err(KanError::Shape(format!("worst-case conversion needs a row, got {:?}", h_hat.dim())));
    }
    let norm2: f64 = h_hat.iter().map(|z| z.norm_sqr()).sum();
    if !(norm2.is_finite() && norm2 > 0.0) {
        return Err(KanError::DegenerateChannel);
    }
    let r = h_hat.t().mapv(|z| z.conj()).dot(h_hat);
    let (vals, vecs) = self_adjoint_eigen(r.view())?;
    let n = vals.len();
    let lam_max = vals[n - 1];
    let sigma_max = norm2.sqrt();
    let raw = lam_max - 2.0 * eps * sigma_max;
    let min = floor * norm2;
    let (lam, floored) = if raw < min { (min, true) } else { (raw, false) };
    let m = vecs.column(n - 1);
    let h = Array2::from_shape_fn((1, n), |(_, j)| m[j].conj() * lam.sqrt());
    Ok((h, lam, floored))
}

/// GGML-ImCSI as a [`Beamformer`]: needs `problem.error_stats = ErrorStats::Relative { delta }`.
///
/// Returns the hybrid precoder designed on the worst-case channels (final iterate by default);
/// `objective_trace` is the per-user SE on the worst-case channels (the method cannot see the true
/// channel; the harness scores the returned precoder on it).
#[derive(Clone, Debug)]
pub struct GgmlImcsi {
    params: ImcsiParams,
    name: String,
}

impl GgmlImcsi {
    /// A GGML-ImCSI beamformer named `GGML-ImCSI`.
    ///
    /// # Errors
    /// [`KanError::InvalidParameter`] for bad parameters.
    pub fn new(params: ImcsiParams) -> Result<Self, KanError> {
        params.check()?;
        Ok(Self { params, name: "GGML-ImCSI".into() })
    }

    /// Replaces the display name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// The design setup of GGML-ImCSI: `problem`'s hybrid setup with the channel replaced by the
/// worst-case channels. Returns the setup and the number of users whose gain was floored.
///
/// # Errors
/// [`KanError::MissingErrorStats`] unless the problem carries `ErrorStats::Relative`; problem and
/// parameter errors as [`HybridSetup::from_problem`] and [`ImcsiParams::check`].
pub fn worst_case_setup(
    problem: &Problem,
    params: &ImcsiParams,
    rng: &mut dyn RngCore,
) -> Result<(HybridSetup, usize), KanError> {
    params.check()?;
    let mut setup = HybridSetup::from_problem(problem, params.ggml.n_rf)?;
    let delta = match problem.error_stats {
        ErrorStats::Relative { delta } => delta,
        ref other => {
            return Err(KanError::MissingErrorStats(format!(
                "GGML-ImCSI needs ErrorStats::Relative {{ delta }}, got {other:?}"
            )));
        }
    };
    let eps = error_bounds(&setup.h, delta, params.n_mc_draws, params.outage, rng)?;
    let mut n_floored = 0;
    let mut converted = Vec::with_capacity(setup.h.len());
    for (h, e) in setup.h.iter().zip(&eps) {
        let (ht, _, floored) = worst_case_channel(h, *e, params.min_gain_fraction)?;
        n_floored += usize::from(floored);
        converted.push(ht);
    }
    setup.h = converted;
    Ok((setup, n_floored))
}

impl Beamformer for GgmlImcsi {
    fn name(&self) -> &str {
        &self.name
    }

    fn solve(&mut self, problem: &Problem, rng: &mut dyn RngCore) -> Result<Solution, CoreError> {
        let started = std::time::Instant::now();
        let (setup, n_floored) =
            worst_case_setup(problem, &self.params, rng).map_err(|e| method_error(&self.name, e))?;
        let objective = Objective::WorstCaseMmse { var_weight: self.params.ggml.var_weight };
        let out = run_ggml(&setup, objective, &self.params.ggml, rng).map_err(|e| method_error(&self.name, e))?;
        let mut sol = to_solution(out, self.params.ggml.output, started);
        if n_floored > 0 {
            sol.diagnostics.notes.push(format!("{n_floored} users' worst-case gain floored"));
        }
        Ok(sol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::NetKind;
    use beamlab_channel::{SvParams, saleh_valenzuela};
    use beamlab_core::Precoder;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn quantile_matches_the_chi_square_law() {
        // ‖z‖² ~ Gamma(n, 1): mean n, sd √n, so the 95 % quantile of ‖z‖ ≈ √(n + 1.645 √n).
        let q = norm_quantile(64, 20_000, 0.05, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let approx = (64.0 + 1.645 * 8.0f64).sqrt();
        assert!((q / approx - 1.0).abs() < 0.02, "q {q} vs {approx}");
        assert!(norm_quantile(0, 100, 0.05, &mut ChaCha8Rng::seed_from_u64(1)).is_err());
        assert!(norm_quantile(4, 100, 1.5, &mut ChaCha8Rng::seed_from_u64(1)).is_err());
    }

    #[test]
    fn bounds_grow_with_delta() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let h = saleh_valenzuela(&SvParams::default(), 3, 16, &mut rng).unwrap();
        let mut last = vec![-1.0; 3];
        for delta in [0.0, 0.05, 0.1, 0.2, 0.4] {
            let e = error_bounds(h.blocks(), delta, 2_000, 0.05, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
            for (a, b) in e.iter().zip(&last) {
                assert!(a > b || (delta == 0.0 && *a == 0.0), "not monotone at delta {delta}: {a} <= {b}");
            }
            last = e;
        }
        assert!(error_bounds(h.blocks(), -0.1, 2_000, 0.05, &mut rng).is_err());
    }

    #[test]
    fn worst_case_conversion_properties() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let h = saleh_valenzuela(&SvParams::default(), 1, 12, &mut rng).unwrap();
        let hh = &h.blocks()[0];
        let norm2: f64 = hh.iter().map(|z| z.norm_sqr()).sum();
        let eps = 0.2 * norm2.sqrt();
        let (ht, lam, floored) = worst_case_channel(hh, eps, 0.01).unwrap();
        assert!(!floored);
        // The eigen relation: λ = λ_max(R̂) − 2 ε σ_max(ĥ) with λ_max(R̂) = ‖ĥ‖².
        assert!((lam - (norm2 - 2.0 * eps * norm2.sqrt())).abs() < 1e-9 * norm2);
        // h̃ is λ times a unit principal eigenvector: R̂ h̃^H = ‖ĥ‖² h̃^H and ‖h̃‖² = λ.
        let r = hh.t().mapv(|z| z.conj()).dot(hh);
        let v = ht.t().mapv(|z| z.conj());
        let rv = r.dot(&v);
        let resid: f64 = (&rv - &v.mapv(|z| z * norm2)).iter().map(|z| z.norm_sqr()).sum::<f64>().sqrt();
        assert!(resid < 1e-9 * norm2 * lam.sqrt(), "eigen residual {resid}");
        let ht2: f64 = ht.iter().map(|z| z.norm_sqr()).sum();
        assert!((ht2 - lam).abs() < 1e-9 * lam);
        // R^WC = h̃^H h̃ has rank one and R̂ − R^WC is positive semi-definite.
        let rwc = v.dot(&ht);
        let (ev, _) = self_adjoint_eigen(rwc.view()).unwrap();
        assert!((ev[ev.len() - 1] - lam).abs() < 1e-9 * lam);
        assert!(ev.iter().take(ev.len() - 1).all(|e| e.abs() < 1e-9 * lam), "R^WC not rank one: {ev}");
        let (dv, _) = self_adjoint_eigen((&r - &rwc).view()).unwrap();
        assert!(dv[0] > -1e-9 * norm2, "R̂ − R^WC not PSD: {dv}");
        // A large ε floors the gain.
        let (_, lam2, floored2) = worst_case_channel(hh, norm2.sqrt(), 0.01).unwrap();
        assert!(floored2 && (lam2 - 0.01 * norm2).abs() < 1e-12 * norm2);
        assert!(worst_case_channel(&Array2::zeros((1, 4)), 0.1, 0.01).is_err());
    }

    #[test]
    fn imcsi_solves_and_rejects_missing_stats() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let h = saleh_valenzuela(&SvParams::default(), 2, 16, &mut rng).unwrap();
        let p = Problem::new(h, 0.1, 1.0).unwrap();
        let params = ImcsiParams {
            ggml: GgmlParams { net: NetKind::Mlp, n_steps: 30, hidden: 32, ..GgmlParams::default() },
            n_mc_draws: 500,
            ..ImcsiParams::default()
        };
        let mut m = GgmlImcsi::new(params).unwrap();
        let e = m.solve(&p, &mut rng).unwrap_err();
        assert!(e.to_string().contains("missing CSI error statistics"), "{e}");
        let p = p.with_error_stats(ErrorStats::Relative { delta: 0.1 }).unwrap();
        let a = m.solve(&p, &mut ChaCha8Rng::seed_from_u64(6)).unwrap();
        let b = m.solve(&p, &mut ChaCha8Rng::seed_from_u64(6)).unwrap();
        assert_eq!(a.precoder, b.precoder);
        let Precoder::Hybrid { f, .. } = &a.precoder else { panic!("not hybrid") };
        assert!(f.iter().all(|z| (z.norm() - 1.0).abs() < 1e-12));
        assert!((a.precoder.total_power().unwrap() - 1.0).abs() < 1e-10);
        let tr = &a.diagnostics.objective_trace;
        assert!(tr[tr.len() - 1] > tr[0], "no improvement on the worst-case channel");
        let mut neg = p.clone();
        neg.error_stats = ErrorStats::Relative { delta: -0.2 };
        assert!(m.solve(&neg, &mut rng).is_err());
    }
}
