//! MM-AltMin: majorisation–minimisation alternating minimisation of the Frobenius approximation
//! error, in the form of Arora, Tsinos, Rao, Chatzinotas, Ottersten ("Hybrid transceivers design for
//! large-scale antenna arrays using majorization-minimization algorithms", IEEE TSP 2020), used as
//! the stand-in for the "MM" baseline of GGML (Huang, Ye, Xiao; no public code — see
//! `docs/hybrid-baselines.md`).
//!
//! # Algorithm
//! Same problem as [`super::mo_altmin()`]: `min ‖F_opt − F D‖_F²` with `|F_ij| = 1`, `F_opt` the fully
//! digital target (WMMSE by default), random-phase start. Alternate:
//!
//! 1. `D = (F^H F)^{-1} F^H F_opt` (exact least squares);
//! 2. `n_mm_steps` majorisation–minimisation steps on `F`. With `R = D D^H` and `λ = λ_max(R)`,
//!    `tr(F R F^H) ≤ λ ‖F‖² + 2 Re tr(F^H F_t (R − λ I)) + const` with equality at `F_t`, and
//!    `‖F‖² = N M` is constant on the feasible set, so the majoriser of `‖F_opt − F D‖²` is, up to
//!    constants, `−2 Re⟨F, F_opt D^H + F_t (λ I − R)⟩`, minimised in closed form by
//!
//!    `F_{t+1} = exp(j arg(F_opt D^H + F_t (λ I − R)))` (an entry that is exactly 0 keeps its phase).
//!
//! Each step is an exact minimiser of a tight upper bound, so **`‖F_opt − F D‖²` is
//! non-increasing** (the objective trace, tested). Stop when it changes by at most `tolerance`
//! relative between outer iterations, or after `max_n_iterations`; finally `D ← √P D/‖F D‖_F`.

use std::time::Instant;

use beamlab_core::{Diagnostics, Problem};
use beamlab_linalg_ops::{c64, self_adjoint_eigen};
use ndarray::{Array2, Zip};
use rand::RngCore;

use super::{DigitalTarget, HybridOutput, check_hybrid, check_iter_tol, dist2, full_power, least_squares_digital};
use crate::BaselineError;

/// MM-AltMin hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MmAltMinParams {
    /// RF chains `M` (`None` = `K`).
    pub n_rf: Option<usize>,
    /// The fully digital precoder to approximate (default: WMMSE).
    pub target: DigitalTarget,
    /// Outer iteration cap (default 200).
    pub max_n_iterations: usize,
    /// Stop when `|e_t − e_{t−1}| ≤ tolerance · e_{t−1}`, `e = ‖F_opt − F D‖²` (default 1e-3).
    pub tolerance: f64,
    /// MM steps on `F` per outer iteration (default 5).
    pub n_mm_steps: usize,
}

impl Default for MmAltMinParams {
    fn default() -> Self {
        Self { n_rf: None, target: DigitalTarget::default(), max_n_iterations: 200, tolerance: 1e-3, n_mm_steps: 5 }
    }
}

impl MmAltMinParams {
    /// Checks the hyper-parameters.
    ///
    /// # Errors
    /// [`BaselineError::InvalidParameter`].
    pub fn check(&self) -> Result<(), BaselineError> {
        check_iter_tol("MM-AltMin", self.max_n_iterations, self.tolerance)?;
        check_iter_tol("MM-AltMin inner", self.n_mm_steps, 0.0)?;
        if let DigitalTarget::Wmmse(p) = &self.target {
            p.check()?;
        }
        Ok(())
    }
}

/// One MM step: `F ← exp(j arg(E + F (λ I − R)))` with `E = F_opt D^H`.
pub(crate) fn mm_step(f: &mut Array2<c64>, e: &Array2<c64>, r: &Array2<c64>, lambda: f64) {
    let mut z = f.dot(r);
    Zip::from(&mut z).and(&*f).and(e).for_each(|zi, fi, ei| *zi = ei + fi * lambda - *zi);
    Zip::from(f).and(&z).for_each(|fi, zi| {
        let n = zi.norm_sqr().sqrt();
        if n > 0.0 && n.is_finite() {
            *fi = zi / n;
        }
    });
}

/// Runs MM-AltMin on `problem` (see the [module docs](self)).
///
/// Returns `(F: [N × M], D: [M × K], diagnostics)` with `|F_ij| = 1` and `‖F D‖_F² = P`; the
/// objective trace is `‖F_opt − F D‖_F²` (before normalisation) at the start and after each outer
/// iteration (non-increasing).
///
/// # Errors
/// As [`super::mo_altmin()`].
///
/// # Example
/// ```
/// use beamlab_baselines::{MmAltMinParams, mm_altmin};
/// use beamlab_core::Problem;
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
/// let h = beamlab_channel::rayleigh(2, 1, 16, &mut rng).unwrap();
/// let problem = Problem::new(h, 0.1, 1.0).unwrap();
/// let (f, _d, diag) = mm_altmin(&problem, &MmAltMinParams::default(), &mut rng).unwrap();
/// assert_eq!(f.dim(), (16, 2));
/// assert!(diag.objective_trace.windows(2).all(|w| w[1] <= w[0] * (1.0 + 1e-12)));
/// ```
pub fn mm_altmin(
    problem: &Problem,
    params: &MmAltMinParams,
    rng: &mut dyn RngCore,
) -> Result<HybridOutput, BaselineError> {
    params.check()?;
    let dims = check_hybrid(problem, params.n_rf, false, "MM-AltMin")?;
    let start = Instant::now();
    let _span = tracing::debug_span!("mm_altmin", n = dims.n_tx, m = dims.n_rf, k = dims.n_users).entered();
    let f_opt = params.target.compute(problem, rng)?;
    let mut f = super::random_phase(dims.n_tx, dims.n_rf, rng);
    let mut d = least_squares_digital(&f, &f_opt)?;
    let mut err = dist2(&f_opt, &f.dot(&d));
    let mut trace = vec![err];
    let mut converged = false;
    let mut n_iterations = 0;
    while n_iterations < params.max_n_iterations {
        n_iterations += 1;
        let dh = d.t().mapv(|z| z.conj());
        let r = d.dot(&dh);
        let e = f_opt.dot(&dh);
        let lambda = self_adjoint_eigen(r.view())?.0.iter().copied().fold(0.0, f64::max);
        for _ in 0..params.n_mm_steps {
            mm_step(&mut f, &e, &r, lambda);
        }
        d = least_squares_digital(&f, &f_opt)?;
        let new = dist2(&f_opt, &f.dot(&d));
        trace.push(new);
        let change = (err - new).abs();
        let old = err;
        err = new;
        if change <= params.tolerance * old || new <= f64::MIN_POSITIVE {
            converged = true;
            break;
        }
    }
    let d = full_power(&f, &d, problem.power_budget)?;
    let diagnostics =
        Diagnostics { n_iterations, converged, objective_trace: trace, elapsed: start.elapsed(), notes: Vec::new() };
    Ok((f, d, diagnostics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hybrid::random_phase;
    use crate::hybrid::testutil::{max_modulus_error, miso};
    use beamlab_linalg_ops::total_power;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn each_mm_step_decreases_the_fixed_d_objective() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let f_opt = random_phase(20, 4, &mut rng).mapv(|z| z * 0.2);
        let d = random_phase(4, 4, &mut rng).mapv(|z| z * 0.05);
        let dh = d.t().mapv(|z| z.conj());
        let (r, e) = (d.dot(&dh), f_opt.dot(&dh));
        let lambda = self_adjoint_eigen(r.view()).unwrap().0.iter().copied().fold(0.0, f64::max);
        let mut f = random_phase(20, 4, &mut rng);
        let mut prev = dist2(&f_opt, &f.dot(&d));
        let first = prev;
        for _ in 0..30 {
            mm_step(&mut f, &e, &r, lambda);
            let v = dist2(&f_opt, &f.dot(&d));
            assert!(v <= prev * (1.0 + 1e-12), "{prev} -> {v}");
            prev = v;
        }
        assert!(prev < first);
        assert!(max_modulus_error(&f) < 1e-12);
    }

    #[test]
    fn monotone_unit_modulus_full_power() {
        for (seed, (n, m, k)) in [(32usize, 4usize, 4usize), (16, 6, 3)].into_iter().enumerate() {
            let p = miso(n, k, 10.0, 40 + seed as u64);
            let params =
                MmAltMinParams { n_rf: Some(m), target: DigitalTarget::Zf, tolerance: 1e-6, ..Default::default() };
            let (f, d, diag) = mm_altmin(&p, &params, &mut ChaCha8Rng::seed_from_u64(seed as u64)).unwrap();
            assert!(max_modulus_error(&f) < 1e-12);
            assert!((total_power(f.dot(&d).view()) - 10.0).abs() < 1e-9);
            for w in diag.objective_trace.windows(2) {
                assert!(w[1] <= w[0] * (1.0 + 1e-10), "objective increased {} -> {}", w[0], w[1]);
            }
            assert!(diag.objective_trace.last().unwrap() < &diag.objective_trace[0]);
        }
    }
}
