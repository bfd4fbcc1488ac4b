//! WMMSE for MU-MIMO with multi-antenna users (Shi, Razaviyayn, Luo, He, IEEE TSP 2011).
//!
//! # Algorithm (one stream per user)
//! Repeat until the weighted sum rate changes by less than `tolerance` (relative) or
//! `max_n_iterations` is reached:
//! 1. MMSE receivers `u_k = (Σ_l H_k v_l v_l^H H_k^H + σ_k² I)^{-1} H_k v_k`;
//! 2. MSE weights `w_k = 1 / (1 − u_k^H H_k v_k)` (the inverse MMSE, ≥ 1);
//! 3. precoders `v_k = (J + μ I)^{-1} α_k w_k H_k^H u_k` with `J = Σ_k α_k w_k H_k^H u_k u_k^H H_k`
//!    and `μ ≥ 0` the smallest value meeting `Σ‖v_k‖² ≤ P` (bisection; `μ = 0` is tried first and
//!    the bracket is doubled until feasible).
//!
//! `J = A A^H` with `A = [√(α_k w_k) H_k^H u_k]` (`[M × K]`), and every right-hand side lies in the
//! range of `A`; so the eigendecomposition of `J` comes from the thin SVD of `A`
//! (`O(M K²)` instead of `O(M³)`) and each bisection step costs `O(K²)`.
//!
//! **Decision (documented in `docs/baselines.md`)**: after step 3 the iterate is scaled to use the
//! full budget, `‖V‖_F² = P`. Scaling all beams up by `c ≥ 1` raises every SINR
//! (`c² S / (c² I + σ²)`), so the WSR stays monotone and the output meets the budget exactly.

use std::time::Instant;

use beamlab_core::{Diagnostics, Problem};
use beamlab_linalg_ops::{c64, normalize_total_power, small_hpd_solve, svd, weighted_sum_rate};
use ndarray::{Array1, Array2};
use rand::RngCore;
use rand_distr::{Distribution, StandardNormal};

use crate::BaselineError;

/// How WMMSE is initialised.
///
/// The start matters: WMMSE converges slowly at high SNR, and from a random start it can stop
/// well below zero-forcing under the relative-change criterion (measured in
/// `results/REPORT.md`). Started at RZF, monotonicity guarantees it never ends below RZF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WmmseInit {
    /// Regularised zero-forcing ([`crate::rzf`] with its default `α`); deterministic.
    #[default]
    Rzf,
    /// Complex Gaussian beams with power `P/K` per user (the GLNN paper's set-up).
    Random,
    /// Maximum-ratio transmission (deterministic).
    Mrt,
}

/// WMMSE hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WmmseParams {
    /// Iteration cap (default 100).
    pub max_n_iterations: usize,
    /// Stop when `|WSR_t − WSR_{t−1}| ≤ tolerance · |WSR_{t−1}|` (default 1e-3).
    pub tolerance: f64,
    /// Initialisation (default RZF).
    pub init: WmmseInit,
}

impl Default for WmmseParams {
    fn default() -> Self {
        Self { max_n_iterations: 100, tolerance: 1e-3, init: WmmseInit::Rzf }
    }
}

impl WmmseParams {
    /// Checks the hyper-parameters.
    ///
    /// # Errors
    /// [`BaselineError::InvalidParameter`].
    pub fn check(&self) -> Result<(), BaselineError> {
        if self.max_n_iterations == 0 {
            return Err(BaselineError::InvalidParameter("max_n_iterations must be >= 1".into()));
        }
        if !(self.tolerance.is_finite() && self.tolerance >= 0.0) {
            return Err(BaselineError::InvalidParameter(format!(
                "tolerance must be finite and >= 0, got {}",
                self.tolerance
            )));
        }
        Ok(())
    }
}

/// Runs WMMSE on `problem`; returns the precoder `V: [M × K]` (with `‖V‖_F² = P`) and diagnostics
/// whose objective trace is the WSR (bit/s/Hz) after each iteration, starting with the initial point.
///
/// # Errors
/// Invalid parameters or problem, an all-zero channel, or a numerical breakdown.
pub fn wmmse(
    problem: &Problem,
    params: &WmmseParams,
    rng: &mut dyn RngCore,
) -> Result<(Array2<c64>, Diagnostics), BaselineError> {
    params.check()?;
    problem.validate()?;
    if problem.channel.energy() <= f64::MIN_POSITIVE {
        return Err(BaselineError::ZeroChannel { user: 0 });
    }
    let start = Instant::now();
    let _span = tracing::debug_span!("wmmse", m = problem.n_tx(), k = problem.n_users()).entered();
    let (m, k) = (problem.n_tx(), problem.n_users());
    let p = problem.power_budget;
    let h = problem.channel.blocks();
    let noise = &problem.noise_power;
    let alpha = &problem.weights;

    let mut v = match params.init {
        WmmseInit::Random => {
            let mut v = Array2::<c64>::zeros((m, k));
            for mut col in v.columns_mut() {
                col.mapv_inplace(|_| {
                    let re: f64 = StandardNormal.sample(rng);
                    let im: f64 = StandardNormal.sample(rng);
                    c64::new(re, im)
                });
                let n2: f64 = col.iter().map(|z| z.norm_sqr()).sum();
                col.mapv_inplace(|z| z * (p / k as f64 / n2).sqrt());
            }
            v
        }
        WmmseInit::Mrt => crate::mrt(problem)?,
        WmmseInit::Rzf => crate::rzf(problem, None)?,
    };
    let mut wsr = weighted_sum_rate(h, v.view(), noise, alpha)?;
    let mut trace = vec![wsr];
    let mut converged = false;
    let mut n_iterations = 0;
    let mut a = Array2::<c64>::zeros((m, k));
    let mut sqrt_weight = Array1::<f64>::zeros(k);
    while n_iterations < params.max_n_iterations {
        n_iterations += 1;
        // Steps 1-2: receivers and MSE weights; build A = [√(α_k w_k) H_k^H u_k].
        for (j, hk) in h.iter().enumerate() {
            let hv = hk.dot(&v);
            let n_rx = hk.nrows();
            let mut c = Array2::<c64>::eye(n_rx) * c64::from(noise[j]);
            for col in hv.columns() {
                for x in 0..n_rx {
                    for y in 0..n_rx {
                        c[[x, y]] += col[x] * col[y].conj();
                    }
                }
            }
            let g = hv.column(j);
            let u = small_hpd_solve(c.view(), g)?;
            let e = 1.0 - u.iter().zip(g.iter()).map(|(ui, gi)| (ui.conj() * gi).re).sum::<f64>();
            // e is the MMSE, in (0, 1]; guard round-off.
            let weight = 1.0 / e.max(1e-300);
            let sw = (alpha[j] * weight).sqrt();
            sqrt_weight[j] = sw;
            let col = hk.t().mapv(|z| z.conj()).dot(&u);
            a.column_mut(j).assign(&col.mapv(|z| z * sw));
        }
        // Step 3: V(μ) = (A A^H + μ I)^{-1} A diag(√(α w)).
        let v_new = solve_precoder(&a, &sqrt_weight, p)?;
        let v_full = match normalize_total_power(v_new.view(), p) {
            Ok(x) => x,
            // All users have zero weight: nothing to optimise.
            Err(_) => break,
        };
        let wsr_new = weighted_sum_rate(h, v_full.view(), noise, alpha)?;
        v = v_full;
        let change = (wsr_new - wsr).abs();
        trace.push(wsr_new);
        let old = wsr;
        wsr = wsr_new;
        if change <= params.tolerance * old.abs() {
            converged = true;
            break;
        }
    }
    let diagnostics =
        Diagnostics { n_iterations, converged, objective_trace: trace, elapsed: start.elapsed(), notes: Vec::new() };
    Ok((v, diagnostics))
}

/// `(A A^H + μ I)^{-1} A D` with `D = diag(d)` and the least `μ ≥ 0` such that the power is ≤ `p`.
fn solve_precoder(a: &Array2<c64>, d: &Array1<f64>, p: f64) -> Result<Array2<c64>, BaselineError> {
    let (u, s, vt) = svd(a.view())?;
    // A D = U S V^H D; (A A^H + μI)^{-1} A D = U diag(s/(s²+μ)) V^H D.
    let mut coeff = vt.clone();
    for (mut col, di) in coeff.columns_mut().into_iter().zip(d.iter()) {
        col.mapv_inplace(|z| z * *di);
    }
    // Power(μ) = Σ_i s_i² ‖row_i(V^H D)‖² / (s_i² + μ)².
    let row_energy: Vec<f64> = coeff.rows().into_iter().map(|r| r.iter().map(|z| z.norm_sqr()).sum()).collect();
    let smax = s.iter().cloned().fold(0.0, f64::max);
    let power = |mu: f64| -> f64 {
        s.iter()
            .zip(&row_energy)
            .filter(|(si, _)| **si > 1e-12 * smax)
            .map(|(si, e)| si * si * e / (si * si + mu).powi(2))
            .sum()
    };
    let mu = if power(0.0) <= p {
        0.0
    } else {
        let mut hi = smax * smax * 1e-6 + 1e-300;
        let mut n_grow = 0;
        while power(hi) > p {
            hi *= 2.0;
            n_grow += 1;
            if n_grow > 2000 {
                return Err(BaselineError::Numerical("WMMSE: could not bracket the power multiplier".into()));
            }
        }
        let mut lo = 0.0;
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if power(mid) > p {
                lo = mid;
            } else {
                hi = mid;
            }
            if hi - lo <= 1e-13 * hi {
                break;
            }
        }
        hi
    };
    let scale: Array1<f64> = s.mapv(|si| if si > 1e-12 * smax { si / (si * si + mu) } else { 0.0 });
    for (mut row, sc) in coeff.rows_mut().into_iter().zip(scale.iter()) {
        row.mapv_inplace(|z| z * *sc);
    }
    Ok(u.dot(&coeff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::problem;
    use beamlab_linalg_ops::total_power;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn monotone_and_meets_budget_exactly() {
        for &(m, k, nk, snr) in &[(8usize, 4usize, 2usize, 10.0), (16, 4, 1, 1.0), (6, 3, 3, 100.0), (4, 1, 2, 10.0)] {
            for seed in 0..5 {
                let p = problem(m, k, nk, snr, seed);
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let init = if seed % 2 == 0 { WmmseInit::Random } else { WmmseInit::Rzf };
                let params = WmmseParams { tolerance: 0.0, max_n_iterations: 60, init };
                let (v, d) = wmmse(&p, &params, &mut rng).unwrap();
                assert!((total_power(v.view()) - snr).abs() <= 1e-9 * snr, "power {}", total_power(v.view()));
                for t in d.objective_trace.windows(2) {
                    assert!(t[1] >= t[0] - 1e-9 * t[0].abs(), "WSR decreased: {} -> {}", t[0], t[1]);
                }
                let wsr = weighted_sum_rate(p.channel.blocks(), v.view(), &p.noise_power, &p.weights).unwrap();
                assert!((wsr - d.objective_trace.last().copied().unwrap_or(f64::NAN)).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn precoder_solve_is_the_stationary_point() {
        // With μ from bisection, V = (J + μI)^{-1} B must satisfy (J + μI) V = B and ‖V‖² ≤ P.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let a = Array2::from_shape_fn((6, 3), |_| {
            let re: f64 = StandardNormal.sample(&mut rng);
            let im: f64 = StandardNormal.sample(&mut rng);
            c64::new(re, im)
        });
        let d = Array1::from(vec![1.0, 2.0, 0.5]);
        for &p in &[1e-3, 0.1, 10.0, 1e6] {
            let v = solve_precoder(&a, &d, p).unwrap();
            let pw = total_power(v.view());
            assert!(pw <= p * (1.0 + 1e-9), "power {pw} > {p}");
            let j = a.dot(&a.t().mapv(|z| z.conj()));
            let b = &a * &d.mapv(c64::from).insert_axis(ndarray::Axis(0));
            // Recover μ from the residual: (J V − B) = −μ V.
            let r = &j.dot(&v) - &b;
            let mu = -(r.iter().zip(v.iter()).map(|(ri, vi)| (ri * vi.conj()).re).sum::<f64>()) / pw;
            assert!(mu >= -1e-9, "mu {mu}");
            let resid = (&r + &v.mapv(|z| z * mu)).iter().map(|z| z.norm()).fold(0.0, f64::max);
            assert!(resid < 1e-8 * (1.0 + mu), "residual {resid}");
            if mu > 1e-9 {
                assert!((pw - p).abs() < 1e-9 * p, "active constraint must hold with equality");
            }
        }
    }

    #[test]
    fn same_seed_same_result() {
        let p = problem(8, 4, 2, 10.0, 1);
        let params = WmmseParams { init: WmmseInit::Random, ..Default::default() };
        let a = wmmse(&p, &params, &mut ChaCha8Rng::seed_from_u64(5)).unwrap().0;
        let b = wmmse(&p, &params, &mut ChaCha8Rng::seed_from_u64(5)).unwrap().0;
        assert_eq!(a, b);
    }

    #[test]
    fn rzf_start_never_ends_below_rzf() {
        for seed in 0..6 {
            let p = problem(16, 4, 2, 100.0, 40 + seed);
            let w0 = crate::rzf(&p, None).unwrap();
            let r0 = weighted_sum_rate(p.channel.blocks(), w0.view(), &p.noise_power, &p.weights).unwrap();
            let (v, d) = wmmse(&p, &WmmseParams::default(), &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
            let r = weighted_sum_rate(p.channel.blocks(), v.view(), &p.noise_power, &p.weights).unwrap();
            assert!((d.objective_trace[0] - r0).abs() < 1e-9);
            assert!(r >= r0 - 1e-9, "WMMSE {r} < its RZF start {r0}");
        }
    }

    #[test]
    fn rejects_bad_params_and_zero_channels() {
        let p = problem(4, 2, 1, 1.0, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let bad = WmmseParams { max_n_iterations: 0, ..Default::default() };
        assert!(wmmse(&p, &bad, &mut rng).is_err());
        let bad = WmmseParams { tolerance: f64::NAN, ..Default::default() };
        assert!(wmmse(&p, &bad, &mut rng).is_err());
        let zero = beamlab_core::Channel::new(vec![Array2::zeros((1, 4)); 2]).unwrap();
        let pz = Problem::new(zero, 1.0, 1.0).unwrap();
        assert!(matches!(wmmse(&pz, &WmmseParams::default(), &mut rng), Err(BaselineError::ZeroChannel { .. })));
    }
}
