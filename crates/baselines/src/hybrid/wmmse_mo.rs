//! Hybrid WMMSE-MO: WMMSE with a manifold conjugate-gradient analog update (GGML spec §4, the GGML
//! author's public baseline `mistybeep/WMMSE-Manifold-Optimization-for-MultiUser-MISO`), for
//! single-antenna users.
//!
//! # Algorithm
//! The power constraint is removed by scaling the noise with the radiated power: the SINR
//!
//! `SINR_k = |h_k F d_k|² / (Σ_{l≠k} |h_k F d_l|² + σ_k² ‖F D‖_F² / P)`
//!
//! is invariant to `D ↦ c D`, and equals the true SINR when `‖F D‖_F² = P`. With MSE
//! `e_k = 1 − 2 Re(u_k^* h_k F d_k) + |u_k|² (Σ_l |h_k F d_l|² + σ_k² ‖F D‖²/P)`, each outer
//! iteration minimises `Σ_k α_k (w_k e_k − ln w_k)` block by block:
//!
//! 1. receivers `u_k = h_k F d_k / (Σ_l |h_k F d_l|² + σ_k² ‖F D‖²/P)` (closed form);
//! 2. weights `w_k = 1/e_k` (closed form);
//! 3. `F` by Riemannian conjugate gradient on the complex circle manifold (Hestenes–Stiefel+, as
//!    the reference's Manopt-derived solver; 60 iterations by default) from the current `F`, cost
//!    `Σ_k α_k w_k e_k(F)` with Euclidean gradient
//!    `2 Σ_k α_k w_k [|u_k|² h_k^H h_k F D D^H + (σ_k²/P) |u_k|² F D D^H − u_k h_k^H d_k^H]`;
//! 4. `D = J^{-1} G^H diag(α_k w_k u_k)` with `G = H F` and
//!    `J = Σ_k α_k w_k |u_k|² (g_k^H g_k + (σ_k²/P) F^H F)` (the exact minimiser; the reference code
//!    uses `I` in place of `F^H F`, which is not the minimiser), then `D ← √P D/‖F D‖_F`.
//!
//! Steps 1–2 are exact minimisers, step 3 never increases the cost (the line search rejects any
//! increase) and step 4 is exact, and the final rescaling leaves the scale-invariant SINRs
//! unchanged; hence **the weighted sum rate is non-decreasing over outer iterations** (tested).
//! Initialisation: random phases for `F` (from the solver's RNG) and the least-power zero-forcing
//! `D` for it at full power (the reference starts from a random `D`).

use std::time::Instant;

use beamlab_core::{Diagnostics, Problem};
use beamlab_linalg_ops::{c64, cholesky_solve, weighted_sum_rate};
use ndarray::{Array1, Array2, Zip};
use rand::RngCore;

use super::manifold::{CgOptions, CgRule, CircleCost, minimize};
use super::{HybridOutput, PowerAllocation, check_hybrid, check_iter_tol, full_power, zf_digital};
use crate::BaselineError;

/// Hybrid WMMSE-MO hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HybridWmmseMoParams {
    /// RF chains `M` (`None` = `K`).
    pub n_rf: Option<usize>,
    /// Outer iteration cap (default 100, as the reference).
    pub max_n_iterations: usize,
    /// Stop when the WSR changes by at most `tolerance` relative (default 1e-3, as the reference).
    pub tolerance: f64,
    /// Conjugate-gradient iterations per `F` update (default 60, as the reference).
    pub max_n_cg_iterations: usize,
}

impl Default for HybridWmmseMoParams {
    fn default() -> Self {
        Self { n_rf: None, max_n_iterations: 100, tolerance: 1e-3, max_n_cg_iterations: 60 }
    }
}

impl HybridWmmseMoParams {
    /// Checks the hyper-parameters.
    ///
    /// # Errors
    /// [`BaselineError::InvalidParameter`].
    pub fn check(&self) -> Result<(), BaselineError> {
        check_iter_tol("WMMSE-MO", self.max_n_iterations, self.tolerance)?;
        check_iter_tol("WMMSE-MO CG", self.max_n_cg_iterations, 0.0)
    }
}

/// The `F`-dependent part of `Σ_k α_k w_k e_k`:
/// `Σ_k c_k ‖g_k D‖² + ν ‖F D‖² − 2 Re⟨F, E⟩` with `g_k = h_k F`, `c_k = α_k w_k |u_k|²`,
/// `ν = Σ_k c_k σ_k²/P`, `E = H^H diag(α_k w_k u_k) D^H`.
struct AnalogCost<'a> {
    h: &'a Array2<c64>,
    hh: &'a Array2<c64>,
    r: Array2<c64>,
    c: Array1<f64>,
    nu: f64,
    e: Array2<c64>,
}

impl AnalogCost<'_> {
    fn parts(&self, x: &Array2<c64>) -> (f64, Array2<c64>, Array2<c64>) {
        let g = self.h.dot(x);
        let gr = g.dot(&self.r);
        let xr = x.dot(&self.r);
        let mut v = 0.0;
        for ((row_gr, row_g), ck) in gr.rows().into_iter().zip(g.rows()).zip(self.c.iter()) {
            v += ck * row_gr.iter().zip(row_g.iter()).map(|(a, b)| (b.conj() * a).re).sum::<f64>();
        }
        Zip::from(&xr).and(x).and(&self.e).for_each(|a, xi, ei| {
            v += (xi.conj() * (a * self.nu - ei * 2.0)).re;
        });
        (v, gr, xr)
    }
}

impl CircleCost for AnalogCost<'_> {
    fn cost(&mut self, x: &Array2<c64>) -> f64 {
        self.parts(x).0
    }
    fn cost_grad(&mut self, x: &Array2<c64>) -> (f64, Array2<c64>) {
        let (v, mut gr, xr) = self.parts(x);
        for (mut row, ck) in gr.rows_mut().into_iter().zip(self.c.iter()) {
            row.mapv_inplace(|z| z * *ck);
        }
        let mut g = self.hh.dot(&gr);
        Zip::from(&mut g).and(&xr).and(&self.e).for_each(|gi, a, ei| *gi = (*gi + a * self.nu - ei) * 2.0);
        (v, g)
    }
}

/// Runs hybrid WMMSE-MO on `problem` (see the [module docs](self)).
///
/// Returns `(F: [N × M], D: [M × K], diagnostics)` with `|F_ij| = 1` and `‖F D‖_F² = P`; the
/// objective trace is the weighted sum rate (bit/s/Hz) at the start and after each outer iteration
/// (non-decreasing).
///
/// # Errors
/// Invalid parameters, [`BaselineError::RfChains`] unless `K ≤ M ≤ N`,
/// [`BaselineError::Infeasible`] for multi-antenna users, an all-zero user channel, or a numerical
/// breakdown.
///
/// # Example
/// ```
/// use beamlab_baselines::{HybridWmmseMoParams, hybrid_wmmse_mo};
/// use beamlab_core::Problem;
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
/// let h = beamlab_channel::rayleigh(2, 1, 16, &mut rng).unwrap();
/// let problem = Problem::new(h, 0.1, 1.0).unwrap();
/// let (f, d, diag) = hybrid_wmmse_mo(&problem, &HybridWmmseMoParams::default(), &mut rng).unwrap();
/// assert!(beamlab_linalg_ops::check_unit_modulus(f.view(), 1e-12).is_ok());
/// assert!(diag.objective_trace.last().unwrap() >= &diag.objective_trace[0]);
/// ```
pub fn hybrid_wmmse_mo(
    problem: &Problem,
    params: &HybridWmmseMoParams,
    rng: &mut dyn RngCore,
) -> Result<HybridOutput, BaselineError> {
    params.check()?;
    let dims = check_hybrid(problem, params.n_rf, true, "WMMSE-MO")?;
    let start = Instant::now();
    let _span = tracing::debug_span!("hybrid_wmmse_mo", n = dims.n_tx, m = dims.n_rf, k = dims.n_users).entered();
    let p = problem.power_budget;
    let noise = &problem.noise_power;
    let alpha = &problem.weights;
    let blocks = problem.channel.blocks();
    let h = problem.channel.stacked();
    let hh = h.t().mapv(|z| z.conj());
    let k_users = dims.n_users;

    let mut f = super::random_phase(dims.n_tx, dims.n_rf, rng);
    let mut d = zf_digital(problem, &f, PowerAllocation::Equal)?;
    let mut wsr = weighted_sum_rate(blocks, f.dot(&d).view(), noise, alpha)?;
    let mut trace = vec![wsr];
    let opts = CgOptions {
        max_n_iterations: params.max_n_cg_iterations,
        grad_tol: 1e-12,
        min_step: 1e-10,
        rule: CgRule::HestenesStiefel,
    };
    let mut converged = false;
    let mut n_iterations = 0;
    let mut n_cg_steps = 0;
    while n_iterations < params.max_n_iterations {
        n_iterations += 1;
        // Steps 1-2: receivers and weights with the power-scaled noise.
        let g = h.dot(&f);
        let s = g.dot(&d);
        let radiated: f64 = f.dot(&d).iter().map(|z| z.norm_sqr()).sum();
        let mut c = Array1::<f64>::zeros(k_users);
        let mut lin = Array1::<c64>::zeros(k_users);
        for k in 0..k_users {
            let signal = s[[k, k]];
            let interference: f64 = (0..k_users).filter(|&l| l != k).map(|l| s[[k, l]].norm_sqr()).sum();
            let rest = interference + noise[k] * radiated / p;
            let total = rest + signal.norm_sqr();
            let u = signal / total;
            let w = total / rest.max(f64::MIN_POSITIVE); // 1/e_k, e_k = rest/total
            c[k] = alpha[k] * w * u.norm_sqr();
            lin[k] = u * (alpha[k] * w);
        }
        let nu: f64 = c.iter().zip(noise.iter()).map(|(ck, s2)| ck * s2 / p).sum();
        // Step 3: analog precoder by manifold CG.
        let dh = d.t().mapv(|z| z.conj());
        let mut e = hh.clone();
        for (mut col, l) in e.columns_mut().into_iter().zip(lin.iter()) {
            col.mapv_inplace(|z| z * *l);
        }
        let e = e.dot(&dh);
        let mut cost = AnalogCost { h: &h, hh: &hh, r: d.dot(&dh), c: c.clone(), nu, e };
        let out = minimize(&mut cost, f, &opts);
        n_cg_steps += out.cost_trace.len() - 1;
        f = out.x;
        // Step 4: digital precoder (exact minimiser), then full power.
        let g = h.dot(&f);
        let gh = g.t().mapv(|z| z.conj());
        let mut cg = g.clone();
        for (mut row, ck) in cg.rows_mut().into_iter().zip(c.iter()) {
            row.mapv_inplace(|z| z * *ck);
        }
        let j = gh.dot(&cg) + f.t().mapv(|z| z.conj()).dot(&f).mapv(|z| z * nu);
        let mut rhs = gh;
        for (mut col, l) in rhs.columns_mut().into_iter().zip(lin.iter()) {
            col.mapv_inplace(|z| z * *l);
        }
        let d_new = match cholesky_solve(j.view(), rhs.view()) {
            Ok(x) => x,
            Err(_) => break, // All weights zero or a degenerate F: keep the current iterate.
        };
        let d_new = match full_power(&f, &d_new, p) {
            Ok(x) => x,
            Err(_) => break,
        };
        d = d_new;
        let new = weighted_sum_rate(blocks, f.dot(&d).view(), noise, alpha)?;
        trace.push(new);
        let change = (new - wsr).abs();
        let old = wsr;
        wsr = new;
        if change <= params.tolerance * old.abs() {
            converged = true;
            break;
        }
    }
    let notes = vec![format!("{n_cg_steps} accepted conjugate-gradient steps in total")];
    let diagnostics = Diagnostics { n_iterations, converged, objective_trace: trace, elapsed: start.elapsed(), notes };
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
    fn analog_cost_and_gradient_match_direct_mse() {
        let (n, m, k) = (10usize, 3usize, 3usize);
        let prob = miso(n, k, 2.0, 4).with_weights(vec![1.0, 0.5, 2.0]).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let d = random_phase(m, k, &mut rng).mapv(|z| z * 0.3);
        let u = [c64::new(0.3, -0.1), c64::new(-0.2, 0.4), c64::new(0.1, 0.1)];
        let w = [1.5, 2.0, 1.2];
        let h = prob.channel.stacked();
        let (p, s2) = (prob.power_budget, &prob.noise_power);
        let direct = |x: &Array2<c64>| -> f64 {
            let s = h.dot(x).dot(&d);
            let rad: f64 = x.dot(&d).iter().map(|z| z.norm_sqr()).sum();
            (0..k)
                .map(|kk| {
                    let tot: f64 = (0..k).map(|l| s[[kk, l]].norm_sqr()).sum::<f64>() + s2[kk] * rad / p;
                    let e = 1.0 - 2.0 * (u[kk].conj() * s[[kk, kk]]).re + u[kk].norm_sqr() * tot;
                    prob.weights[kk] * w[kk] * (e - 1.0)
                })
                .sum()
        };
        let c = Array1::from_shape_fn(k, |kk| prob.weights[kk] * w[kk] * u[kk].norm_sqr());
        let lin = Array1::from_shape_fn(k, |kk| u[kk] * (prob.weights[kk] * w[kk]));
        let nu: f64 = (0..k).map(|kk| c[kk] * s2[kk] / p).sum();
        let hh = h.t().mapv(|z| z.conj());
        let mut e = hh.clone();
        for (mut col, l) in e.columns_mut().into_iter().zip(lin.iter()) {
            col.mapv_inplace(|z| z * *l);
        }
        let e = e.dot(&d.t().mapv(|z| z.conj()));
        let mut cost = AnalogCost { h: &h, hh: &hh, r: d.dot(&d.t().mapv(|z| z.conj())), c, nu, e };
        let x = random_phase(n, m, &mut rng);
        let (v, g) = cost.cost_grad(&x);
        assert!((v - direct(&x)).abs() < 1e-10, "{v} vs {}", direct(&x));
        let dir = random_phase(n, m, &mut rng);
        let t = 1e-6;
        let fd = (direct(&(&x + &dir.mapv(|z| z * t))) - direct(&(&x - &dir.mapv(|z| z * t)))) / (2.0 * t);
        let an: f64 = g.iter().zip(dir.iter()).map(|(a, b)| (a.conj() * b).re).sum();
        assert!((fd - an).abs() < 1e-6 * an.abs().max(1.0), "{fd} vs {an}");
    }

    #[test]
    fn wsr_non_decreasing_unit_modulus_full_power() {
        for (seed, (n, m, k, snr)) in
            [(32usize, 4usize, 4usize, 10.0), (16, 6, 3, 1.0), (24, 4, 2, 100.0)].into_iter().enumerate()
        {
            let p = miso(n, k, snr, 20 + seed as u64);
            let params =
                HybridWmmseMoParams { n_rf: Some(m), tolerance: 0.0, max_n_iterations: 15, ..Default::default() };
            let (f, d, diag) = hybrid_wmmse_mo(&p, &params, &mut ChaCha8Rng::seed_from_u64(seed as u64)).unwrap();
            assert!(max_modulus_error(&f) < 1e-12);
            assert!((total_power(f.dot(&d).view()) - snr).abs() < 1e-9 * snr);
            for w in diag.objective_trace.windows(2) {
                assert!(w[1] >= w[0] - 1e-9 * w[0].abs(), "WSR decreased {} -> {}", w[0], w[1]);
            }
            let last = *diag.objective_trace.last().unwrap();
            assert!(last > diag.objective_trace[0], "no progress");
            let wsr = weighted_sum_rate(p.channel.blocks(), f.dot(&d).view(), &p.noise_power, &p.weights).unwrap();
            assert!((wsr - last).abs() < 1e-9);
        }
    }
}
