//! MO-AltMin: manifold-optimisation alternating minimisation (Yu, Shen, Zhang, Letaief, "Alternating
//! minimization algorithms for hybrid precoding in millimeter wave MIMO systems", IEEE JSTSP 2016,
//! Algorithm 1), applied to MU-MISO as in GGML spec §4.
//!
//! # Algorithm
//! Approximate a fully digital precoder `F_opt: [N × K]` (WMMSE by default) by `F D`:
//!
//! `min_{F, D} ‖F_opt − F D‖_F²  s.t. |F_ij| = 1`.
//!
//! 1. `F` ← random phases (from the solver's RNG); `D = (F^H F)^{-1} F^H F_opt` (least squares).
//! 2. Repeat: minimise `‖F_opt − F D‖²` over `F` on the complex circle manifold by Riemannian
//!    conjugate gradient (Polak–Ribière+, Armijo back-tracking; see `manifold.rs`) from the current
//!    `F`; then `D = (F^H F)^{-1} F^H F_opt`. Stop when the objective changes by at most
//!    `tolerance` relative to its previous value, or after `max_n_iterations` outer iterations.
//! 3. `D ← √P D / ‖F D‖_F` (full power).
//!
//! Both steps never increase the objective (the `D` step is its exact minimiser, the CG line
//! search rejects any increase), so the objective trace is non-increasing.

use std::time::Instant;

use beamlab_core::{Diagnostics, Problem};
use beamlab_linalg_ops::c64;
use ndarray::{Array2, Zip};
use rand::RngCore;

use super::manifold::{CgOptions, CgRule, CircleCost, minimize};
use super::{DigitalTarget, HybridOutput, check_hybrid, check_iter_tol, dist2, full_power, least_squares_digital};
use crate::BaselineError;

/// MO-AltMin hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MoAltMinParams {
    /// RF chains `M` (`None` = `K`).
    pub n_rf: Option<usize>,
    /// The fully digital precoder to approximate (default: WMMSE).
    pub target: DigitalTarget,
    /// Outer iteration cap (default 100).
    pub max_n_iterations: usize,
    /// Stop when `|e_t − e_{t−1}| ≤ tolerance · e_{t−1}`, `e = ‖F_opt − F D‖²` (default 1e-3).
    pub tolerance: f64,
    /// Conjugate-gradient iterations per `F` update (default 100).
    pub max_n_cg_iterations: usize,
    /// CG stops when the Riemannian gradient norm is below this, relative to `‖F_opt‖_F` (default 1e-6).
    pub cg_grad_tol: f64,
}

impl Default for MoAltMinParams {
    fn default() -> Self {
        Self {
            n_rf: None,
            target: DigitalTarget::default(),
            max_n_iterations: 100,
            tolerance: 1e-3,
            max_n_cg_iterations: 100,
            cg_grad_tol: 1e-6,
        }
    }
}

impl MoAltMinParams {
    /// Checks the hyper-parameters.
    ///
    /// # Errors
    /// [`BaselineError::InvalidParameter`].
    pub fn check(&self) -> Result<(), BaselineError> {
        check_iter_tol("MO-AltMin", self.max_n_iterations, self.tolerance)?;
        check_iter_tol("MO-AltMin CG", self.max_n_cg_iterations, self.cg_grad_tol)?;
        if let DigitalTarget::Wmmse(p) = &self.target {
            p.check()?;
        }
        Ok(())
    }
}

/// `f(F) = ‖F_opt − F D‖² = Re tr(F R F^H) − 2 Re⟨F, E⟩ + c` with `R = D D^H`, `E = F_opt D^H`,
/// `c = ‖F_opt‖²`; `∇f = 2 (F R − E)`.
pub(crate) struct FrobeniusCost {
    r: Array2<c64>,
    e: Array2<c64>,
    c: f64,
}

impl FrobeniusCost {
    pub(crate) fn new(f_opt: &Array2<c64>, d: &Array2<c64>) -> Self {
        let dh = d.t().mapv(|z| z.conj());
        Self { r: d.dot(&dh), e: f_opt.dot(&dh), c: f_opt.iter().map(|z| z.norm_sqr()).sum() }
    }
}

impl CircleCost for FrobeniusCost {
    fn cost(&mut self, x: &Array2<c64>) -> f64 {
        let xr = x.dot(&self.r);
        let mut v = self.c;
        Zip::from(&xr).and(x).and(&self.e).for_each(|a, xi, ei| {
            v += (xi.conj() * (a - ei * 2.0)).re;
        });
        v
    }
    fn cost_grad(&mut self, x: &Array2<c64>) -> (f64, Array2<c64>) {
        let xr = x.dot(&self.r);
        let mut v = self.c;
        Zip::from(&xr).and(x).and(&self.e).for_each(|a, xi, ei| {
            v += (xi.conj() * (a - ei * 2.0)).re;
        });
        let g = (&xr - &self.e).mapv(|z| z * 2.0);
        (v, g)
    }
}

/// Runs MO-AltMin on `problem` (see the [module docs](self)).
///
/// Returns `(F: [N × M], D: [M × K], diagnostics)` with `|F_ij| = 1` and `‖F D‖_F² = P`. The
/// objective trace is `‖F_opt − F D‖_F²` before normalisation: at the start and after each outer
/// iteration (non-increasing). The RNG draws the random-phase start (and WMMSE's start if it is
/// random).
///
/// # Errors
/// Invalid parameters, [`BaselineError::RfChains`] unless `K ≤ M ≤ N`, an all-zero user channel,
/// errors of the digital target (e.g. ZF with `K > N`), or a numerical breakdown.
///
/// # Example
/// ```
/// use beamlab_baselines::{MoAltMinParams, mo_altmin};
/// use beamlab_core::{Channel, Problem};
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
/// let h = beamlab_channel::rayleigh(2, 1, 16, &mut rng).unwrap();
/// let problem = Problem::new(h, 0.1, 1.0).unwrap();
/// let (f, d, diag) = mo_altmin(&problem, &MoAltMinParams::default(), &mut rng).unwrap();
/// assert_eq!((f.dim(), d.dim()), ((16, 2), (2, 2)));
/// assert!(f.iter().all(|z| (z.norm() - 1.0).abs() < 1e-12));
/// assert!(diag.objective_trace.windows(2).all(|w| w[1] <= w[0] * (1.0 + 1e-12)));
/// ```
pub fn mo_altmin(
    problem: &Problem,
    params: &MoAltMinParams,
    rng: &mut dyn RngCore,
) -> Result<HybridOutput, BaselineError> {
    params.check()?;
    let dims = check_hybrid(problem, params.n_rf, false, "MO-AltMin")?;
    let start = Instant::now();
    let _span = tracing::debug_span!("mo_altmin", n = dims.n_tx, m = dims.n_rf, k = dims.n_users).entered();
    let f_opt = params.target.compute(problem, rng)?;
    let f0 = super::random_phase(dims.n_tx, dims.n_rf, rng);
    let (f, d, mut diagnostics) = altmin(&f_opt, f0, params)?;
    let d = full_power(&f, &d, problem.power_budget)?;
    diagnostics.elapsed = start.elapsed();
    Ok((f, d, diagnostics))
}

/// The alternating minimisation from a given start `F`, without the final power scaling.
pub(crate) fn altmin(
    f_opt: &Array2<c64>,
    f0: Array2<c64>,
    params: &MoAltMinParams,
) -> Result<HybridOutput, BaselineError> {
    let scale = f_opt.iter().map(|z| z.norm_sqr()).sum::<f64>().sqrt();
    let opts = CgOptions {
        max_n_iterations: params.max_n_cg_iterations,
        grad_tol: params.cg_grad_tol * scale,
        min_step: 1e-10,
        rule: CgRule::PolakRibiere,
    };
    let mut f = f0;
    let mut d = least_squares_digital(&f, f_opt)?;
    let mut err = dist2(f_opt, &f.dot(&d));
    let mut trace = vec![err];
    let mut converged = false;
    let mut n_iterations = 0;
    let mut n_cg_steps = 0;
    while n_iterations < params.max_n_iterations {
        n_iterations += 1;
        let mut cost = FrobeniusCost::new(f_opt, &d);
        let out = minimize(&mut cost, f, &opts);
        n_cg_steps += out.cost_trace.len() - 1;
        f = out.x;
        d = least_squares_digital(&f, f_opt)?;
        let new = dist2(f_opt, &f.dot(&d));
        trace.push(new);
        let change = (err - new).abs();
        let old = err;
        err = new;
        if change <= params.tolerance * old || new <= f64::MIN_POSITIVE {
            converged = true;
            break;
        }
    }
    let notes = vec![format!("{n_cg_steps} accepted conjugate-gradient steps in total")];
    let diagnostics = Diagnostics { n_iterations, converged, objective_trace: trace, notes, ..Default::default() };
    Ok((f, d, diagnostics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hybrid::testutil::{max_modulus_error, miso};
    use crate::hybrid::{manifold, random_phase};
    use beamlab_linalg_ops::total_power;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn frobenius_cost_matches_direct_and_gradient_is_right() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let f_opt = random_phase(10, 3, &mut rng).mapv(|z| z * 0.2);
        let d = random_phase(4, 3, &mut rng).mapv(|z| z * 0.1);
        let x = random_phase(10, 4, &mut rng);
        let mut c = FrobeniusCost::new(&f_opt, &d);
        let direct = dist2(&f_opt, &x.dot(&d));
        let (v, g) = c.cost_grad(&x);
        assert!((c.cost(&x) - direct).abs() < 1e-12 && (v - direct).abs() < 1e-12);
        // Euclidean directional derivative: df = Re⟨g, E⟩.
        let e = random_phase(10, 4, &mut rng);
        let t = 1e-6;
        let fd = (dist2(&f_opt, &(&x + &e.mapv(|z| z * t)).dot(&d))
            - dist2(&f_opt, &(&x - &e.mapv(|z| z * t)).dot(&d)))
            / (2.0 * t);
        let an: f64 = g.iter().zip(e.iter()).map(|(a, b)| (a.conj() * b).re).sum();
        assert!((fd - an).abs() < 1e-7 * an.abs().max(1.0), "{fd} vs {an}");
    }

    #[test]
    fn inner_cg_decreases_its_cost() {
        let p = miso(32, 4, 10.0, 5);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let f_opt = DigitalTarget::Zf.compute(&p, &mut rng).unwrap();
        let f = random_phase(32, 4, &mut rng);
        let d = least_squares_digital(&f, &f_opt).unwrap();
        let mut cost = FrobeniusCost::new(&f_opt, &d);
        let opts = manifold::CgOptions {
            max_n_iterations: 50,
            grad_tol: 0.0,
            min_step: 0.0,
            rule: manifold::CgRule::PolakRibiere,
        };
        let out = manifold::minimize(&mut cost, f, &opts);
        assert!(out.cost_trace.len() > 5);
        for w in out.cost_trace.windows(2) {
            assert!(w[1] <= w[0], "{} -> {}", w[0], w[1]);
        }
        assert!(out.cost_trace.last().unwrap() < &(0.9 * out.cost_trace[0]));
    }

    #[test]
    fn monotone_unit_modulus_full_power() {
        for (seed, (n, m, k)) in [(32usize, 4usize, 4usize), (16, 6, 3), (24, 4, 2)].into_iter().enumerate() {
            let p = miso(n, k, 10.0, 10 + seed as u64);
            for target in [DigitalTarget::default(), DigitalTarget::Zf] {
                let params = MoAltMinParams { n_rf: Some(m), target, tolerance: 1e-6, ..Default::default() };
                let (f, d, diag) = mo_altmin(&p, &params, &mut ChaCha8Rng::seed_from_u64(seed as u64)).unwrap();
                assert_eq!((f.dim(), d.dim()), ((n, m), (m, k)));
                assert!(max_modulus_error(&f) < 1e-12);
                assert!((total_power(f.dot(&d).view()) - 10.0).abs() < 1e-9);
                for w in diag.objective_trace.windows(2) {
                    assert!(w[1] <= w[0] * (1.0 + 1e-10) + 1e-15, "objective increased {} -> {}", w[0], w[1]);
                }
                assert!(diag.objective_trace.last().unwrap() < &diag.objective_trace[0]);
            }
        }
    }

    #[test]
    fn same_seed_same_result() {
        let p = miso(16, 3, 10.0, 1);
        let a = mo_altmin(&p, &MoAltMinParams::default(), &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        let b = mo_altmin(&p, &MoAltMinParams::default(), &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        assert_eq!((a.0, a.1), (b.0, b.1));
    }
}
