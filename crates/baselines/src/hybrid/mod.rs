//! Hybrid analog–digital precoding baselines for the MU-MISO downlink (GGML spec §1 and §4).
//!
//! # System model
//! `N` base-station antennas (`n_tx_antennas`), `M` RF chains (`n_rf`, `K ≤ M ≤ N`) and `K` users.
//! The transmitted signal is `x = F D s` with
//!
//! - `F: [N × M]` the analog precoder, every entry unit modulus, `|F_ij| = 1`;
//! - `D: [M × K]` the digital precoder;
//! - full power, `‖F D‖_F² = P` (every method here scales `D` to meet it exactly).
//!
//! User `k` receives `y_k = h_k F D s + n_k` with `h_k: [1 × N]`; rates are those of the digital
//! precoder `W = F D` ([`beamlab_linalg_ops::hybrid_user_rates`]).
//!
//! # Methods
//! | function (module with the algorithm) | [`beamlab_core::Beamformer`] | name | paper |
//! |---|---|---|---|
//! | [`mo_altmin()`] ([`mo`]) | [`MoAltMin`] | `MO-AltMin` | Yu, Shen, Zhang, Letaief 2016 |
//! | [`hybrid_wmmse_mo()`] ([`wmmse_mo`]) | [`HybridWmmseMo`] | `WMMSE-MO` | WMMSE + manifold CG (GGML author) |
//! | [`element_altmax()`] ([`element`]) | [`ElementAltMax`] | `Element-AltMax` | Sohrabi & Yu 2016, MU-MISO |
//! | [`mm_altmin()`] ([`mm`]) | [`MmAltMin`] | `MM-AltMin` | majorisation–minimisation alternating minimisation |
//!
//! `MO-AltMin` and `MM-AltMin` approximate a fully digital target `F_opt` (WMMSE by default) and
//! accept users with several receive antennas; `WMMSE-MO` and `Element-AltMax` need single-antenna
//! users. Every method validates `1 ≤ K ≤ M ≤ N` ([`BaselineError::RfChains`]). Decisions are
//! documented in `docs/hybrid-baselines.md`.

pub mod element;
mod manifold;
pub mod mm;
pub mod mo;
pub mod wmmse_mo;

use std::f64::consts::TAU;

use beamlab_core::{Beamformer, CoreError, Diagnostics, Precoder, Problem, Solution};
use beamlab_linalg_ops::{c64, cholesky_solve, inverse, total_power};
use ndarray::{Array1, Array2};
use rand::{Rng, RngCore};

use crate::{BaselineError, WmmseParams};

pub use element::{ElementAltMaxParams, element_altmax};
pub use mm::{MmAltMinParams, mm_altmin};
pub use mo::{MoAltMinParams, mo_altmin};
pub use wmmse_mo::{HybridWmmseMoParams, hybrid_wmmse_mo};

/// A hybrid precoder `(F: [N × M], D: [M × K])` with its diagnostics.
pub type HybridOutput = (Array2<c64>, Array2<c64>, Diagnostics);

/// The fully digital precoder `F_opt: [N × K]` that `MO-AltMin` and `MM-AltMin` approximate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DigitalTarget {
    /// Fully digital WMMSE ([`crate::wmmse()`]) with these parameters (the default, RZF start).
    Wmmse(WmmseParams),
    /// Fully digital zero-forcing ([`crate::zf`]).
    Zf,
}

impl Default for DigitalTarget {
    fn default() -> Self {
        Self::Wmmse(WmmseParams::default())
    }
}

impl DigitalTarget {
    /// Computes `F_opt` with `‖F_opt‖_F² = P`.
    pub(crate) fn compute(&self, problem: &Problem, rng: &mut dyn RngCore) -> Result<Array2<c64>, BaselineError> {
        match self {
            Self::Wmmse(p) => Ok(crate::wmmse(problem, p, rng)?.0),
            Self::Zf => crate::zf(problem),
        }
    }
}

/// Power allocation of the zero-forcing digital stage of [`element_altmax()`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PowerAllocation {
    /// Weighted water-filling over the ZF streams (Sohrabi & Yu).
    #[default]
    WaterFilling,
    /// The same stream power `p_k` for every user.
    Equal,
}

/// Sizes of a validated hybrid problem.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    /// Antennas `N`.
    pub n_tx: usize,
    /// RF chains `M`.
    pub n_rf: usize,
    /// Users `K`.
    pub n_users: usize,
}

/// Validates the problem and the RF-chain count: `1 ≤ K ≤ n_rf ≤ N`, non-zero user channels and,
/// when `miso_only`, single-antenna users. `n_rf = None` means `K`.
pub(crate) fn check_hybrid(
    problem: &Problem,
    n_rf: Option<usize>,
    miso_only: bool,
    method: &str,
) -> Result<Dims, BaselineError> {
    problem.validate()?;
    let (n_tx, n_users) = (problem.n_tx(), problem.n_users());
    let n_rf = n_rf.unwrap_or(n_users);
    if n_rf == 0 || n_rf < n_users || n_rf > n_tx {
        return Err(BaselineError::RfChains { n_rf, n_users, n_tx_antennas: n_tx });
    }
    for (k, b) in problem.channel.blocks().iter().enumerate() {
        if miso_only && b.nrows() != 1 {
            return Err(BaselineError::Infeasible(format!(
                "{method} needs single-antenna users, user {k} has {} receive antennas",
                b.nrows()
            )));
        }
        if b.iter().map(|z| z.norm_sqr()).sum::<f64>() <= f64::MIN_POSITIVE {
            return Err(BaselineError::ZeroChannel { user: k });
        }
    }
    Ok(Dims { n_tx, n_rf, n_users })
}

/// `F` with i.i.d. phases `U[0, 2π)`, drawn row by row.
pub(crate) fn random_phase(n_tx: usize, n_rf: usize, rng: &mut dyn RngCore) -> Array2<c64> {
    Array2::from_shape_fn((n_tx, n_rf), |_| c64::from_polar(1.0, rng.random::<f64>() * TAU))
}

/// Scales `D` so that `‖F D‖_F² = power`.
pub(crate) fn full_power(f: &Array2<c64>, d: &Array2<c64>, power: f64) -> Result<Array2<c64>, BaselineError> {
    let p = total_power(f.dot(d).view());
    if !(p.is_finite() && p > f64::MIN_POSITIVE) {
        return Err(BaselineError::Numerical(format!("hybrid precoder has power {p}, cannot scale to {power}")));
    }
    Ok(d.mapv(|z| z * (power / p).sqrt()))
}

/// Least-squares digital precoder `D = argmin ‖F_opt − F D‖_F = (F^H F)^{-1} F^H F_opt`
/// (Cholesky; the pseudo-inverse when `F^H F` is numerically singular).
pub(crate) fn least_squares_digital(f: &Array2<c64>, f_opt: &Array2<c64>) -> Result<Array2<c64>, BaselineError> {
    let fh = f.t().mapv(|z| z.conj());
    match cholesky_solve(fh.dot(f).view(), fh.dot(f_opt).view()) {
        Ok(d) => Ok(d),
        Err(_) => Ok(beamlab_linalg_ops::pinv(f.view(), 1e-12)?.dot(f_opt)),
    }
}

/// `‖A − B‖_F²`.
pub(crate) fn dist2(a: &Array2<c64>, b: &Array2<c64>) -> f64 {
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).norm_sqr()).sum()
}

/// Zero-forcing digital precoder for a fixed analog `F` with the least radiated power, single-antenna
/// users:
///
/// `D = Q^{-1} G^H A Λ^{1/2}`, `G = H F: [K × M]`, `Q = F^H F`, `A = (G Q^{-1} G^H)^{-1}`,
///
/// so that `H F D = Λ^{1/2}` (no interference) and `‖F D‖² = Σ_k A_kk p_k`. The powers `p_k` are
/// water-filled (`max(α_k/(λ A_kk) − σ_k², 0)`) or equal, with `Σ_k A_kk p_k = P`.
pub(crate) fn zf_digital(
    problem: &Problem,
    f: &Array2<c64>,
    allocation: PowerAllocation,
) -> Result<Array2<c64>, BaselineError> {
    let h = problem.channel.stacked();
    let g = h.dot(f);
    let q = f.t().mapv(|z| z.conj()).dot(f);
    let gh = g.t().mapv(|z| z.conj());
    let x = cholesky_solve(q.view(), gh.view())?; // Q^{-1} G^H: [M × K]
    let a = inverse(g.dot(&x).view())?;
    let cost: Array1<f64> = a.diag().mapv(|z| z.re.max(f64::MIN_POSITIVE));
    let powers = match allocation {
        PowerAllocation::Equal => {
            let s = problem.power_budget / cost.sum();
            Array1::from_elem(cost.len(), s)
        }
        PowerAllocation::WaterFilling => {
            water_filling(&cost, &problem.noise_power, &problem.weights, problem.power_budget)
        }
    };
    let mut d = x.dot(&a);
    for (mut col, p) in d.columns_mut().into_iter().zip(powers.iter()) {
        col.mapv_inplace(|z| z * p.sqrt());
    }
    Ok(d)
}

/// Weighted water-filling: maximise `Σ α_k log(1 + p_k/σ_k²)` subject to `Σ c_k p_k = P`,
/// `p_k ≥ 0`; `p_k = max(α_k/(λ c_k) − σ_k², 0)` with `λ` found by bisection. Falls back to equal
/// SNR when every weight is zero.
pub(crate) fn water_filling(cost: &Array1<f64>, noise: &[f64], weights: &[f64], power: f64) -> Array1<f64> {
    let n = cost.len();
    let alloc = |lambda: f64| -> Array1<f64> {
        Array1::from_shape_fn(n, |k| (weights[k] / (lambda * cost[k]) - noise[k]).max(0.0))
    };
    let used = |p: &Array1<f64>| p.iter().zip(cost.iter()).map(|(a, b)| a * b).sum::<f64>();
    if weights.iter().all(|a| *a <= 0.0) {
        return Array1::from_elem(n, power / cost.sum());
    }
    // Bracket λ: at λ_hi the power is below the budget, at λ_lo above.
    let mut hi = 1.0;
    while used(&alloc(hi)) > power && hi < 1e300 {
        hi *= 2.0;
    }
    let mut lo = hi;
    while used(&alloc(lo)) <= power && lo > 1e-300 {
        lo *= 0.5;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if used(&alloc(mid)) > power {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-15 * hi {
            break;
        }
    }
    let p = alloc(hi);
    // Remove the bisection residue so the budget is met exactly.
    let u = used(&p);
    if u > 0.0 { p.mapv(|x| x * power / u) } else { Array1::from_elem(n, power / cost.sum()) }
}

fn hybrid_solution(start: std::time::Instant, out: Result<HybridOutput, BaselineError>) -> Result<Solution, CoreError> {
    let (f, d, mut diagnostics) = out?;
    diagnostics.elapsed = start.elapsed();
    Ok(Solution { precoder: Precoder::Hybrid { f, d }, diagnostics })
}

/// [`mo_altmin()`] as a [`Beamformer`] (name `MO-AltMin`).
#[derive(Clone, Debug, Default)]
pub struct MoAltMin {
    /// Hyper-parameters.
    pub params: MoAltMinParams,
}

impl MoAltMin {
    /// An MO-AltMin beamformer with the given hyper-parameters.
    #[must_use]
    pub fn new(params: MoAltMinParams) -> Self {
        Self { params }
    }
}

impl Beamformer for MoAltMin {
    fn name(&self) -> &str {
        "MO-AltMin"
    }
    fn solve(&mut self, problem: &Problem, rng: &mut dyn RngCore) -> Result<Solution, CoreError> {
        hybrid_solution(std::time::Instant::now(), mo_altmin(problem, &self.params, rng))
    }
}

/// [`hybrid_wmmse_mo()`] as a [`Beamformer`] (name `WMMSE-MO`).
#[derive(Clone, Debug, Default)]
pub struct HybridWmmseMo {
    /// Hyper-parameters.
    pub params: HybridWmmseMoParams,
}

impl HybridWmmseMo {
    /// A hybrid WMMSE-MO beamformer with the given hyper-parameters.
    #[must_use]
    pub fn new(params: HybridWmmseMoParams) -> Self {
        Self { params }
    }
}

impl Beamformer for HybridWmmseMo {
    fn name(&self) -> &str {
        "WMMSE-MO"
    }
    fn solve(&mut self, problem: &Problem, rng: &mut dyn RngCore) -> Result<Solution, CoreError> {
        hybrid_solution(std::time::Instant::now(), hybrid_wmmse_mo(problem, &self.params, rng))
    }
}

/// [`element_altmax()`] as a [`Beamformer`] (name `Element-AltMax`).
#[derive(Clone, Debug, Default)]
pub struct ElementAltMax {
    /// Hyper-parameters.
    pub params: ElementAltMaxParams,
}

impl ElementAltMax {
    /// An Element-AltMax beamformer with the given hyper-parameters.
    #[must_use]
    pub fn new(params: ElementAltMaxParams) -> Self {
        Self { params }
    }
}

impl Beamformer for ElementAltMax {
    fn name(&self) -> &str {
        "Element-AltMax"
    }
    fn solve(&mut self, problem: &Problem, rng: &mut dyn RngCore) -> Result<Solution, CoreError> {
        hybrid_solution(std::time::Instant::now(), element_altmax(problem, &self.params, rng))
    }
}

/// [`mm_altmin()`] as a [`Beamformer`] (name `MM-AltMin`).
#[derive(Clone, Debug, Default)]
pub struct MmAltMin {
    /// Hyper-parameters.
    pub params: MmAltMinParams,
}

impl MmAltMin {
    /// An MM-AltMin beamformer with the given hyper-parameters.
    #[must_use]
    pub fn new(params: MmAltMinParams) -> Self {
        Self { params }
    }
}

impl Beamformer for MmAltMin {
    fn name(&self) -> &str {
        "MM-AltMin"
    }
    fn solve(&mut self, problem: &Problem, rng: &mut dyn RngCore) -> Result<Solution, CoreError> {
        hybrid_solution(std::time::Instant::now(), mm_altmin(problem, &self.params, rng))
    }
}

/// Checks an iteration cap and a non-negative finite tolerance.
pub(crate) fn check_iter_tol(what: &str, max_n_iterations: usize, tolerance: f64) -> Result<(), BaselineError> {
    if max_n_iterations == 0 {
        return Err(BaselineError::InvalidParameter(format!("{what}: iteration cap must be >= 1")));
    }
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        return Err(BaselineError::InvalidParameter(format!(
            "{what}: tolerance must be finite and >= 0, got {tolerance}"
        )));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod testutil {
    use beamlab_core::{Channel, Problem};
    use beamlab_linalg_ops::c64;
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    /// A Rayleigh MISO problem `[K × N]` with unit noise and power `snr`.
    pub fn miso(n: usize, k: usize, snr: f64, seed: u64) -> Problem {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let blocks = (0..k)
            .map(|_| {
                Array2::from_shape_fn((1, n), |_| {
                    let re: f64 = StandardNormal.sample(&mut rng);
                    let im: f64 = StandardNormal.sample(&mut rng);
                    c64::new(re, im) * std::f64::consts::FRAC_1_SQRT_2
                })
            })
            .collect();
        Problem::new(Channel::new(blocks).expect("valid"), 1.0, snr).expect("valid")
    }

    pub fn max_modulus_error(f: &Array2<c64>) -> f64 {
        f.iter().map(|z| (z.norm() - 1.0).abs()).fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn zf_digital_nulls_interference_and_meets_power() {
        for (n, m, k) in [(16usize, 4usize, 4usize), (16, 6, 4), (8, 3, 2)] {
            let p = testutil::miso(n, k, 10.0, 3);
            let f = random_phase(n, m, &mut ChaCha8Rng::seed_from_u64(1));
            for alloc in [PowerAllocation::WaterFilling, PowerAllocation::Equal] {
                let d = zf_digital(&p, &f, alloc).unwrap();
                let w = f.dot(&d);
                assert!((total_power(w.view()) - 10.0).abs() < 1e-9, "power {}", total_power(w.view()));
                let hw = p.channel.stacked().dot(&w);
                for i in 0..k {
                    for j in 0..k {
                        if i != j {
                            assert!(hw[[i, j]].norm() < 1e-9 * hw[[i, i]].norm().max(1e-12), "interference {i} {j}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn zf_digital_has_least_power_among_zf_solutions() {
        // Any D' = D + N_0 with H F N_0 = 0 also zero-forces; it cannot radiate less.
        let (n, m, k) = (12usize, 6usize, 3usize);
        let p = testutil::miso(n, k, 1.0, 9);
        let f = random_phase(n, m, &mut ChaCha8Rng::seed_from_u64(2));
        let d = zf_digital(&p, &f, PowerAllocation::Equal).unwrap();
        let g = p.channel.stacked().dot(&f);
        // A null-space direction of G via (I − G^+ G) applied to a fixed vector.
        let gp = beamlab_linalg_ops::pinv(g.view(), 1e-12).unwrap();
        let proj = Array2::<c64>::eye(m) - gp.dot(&g);
        let z = proj.dot(&Array2::from_shape_fn((m, k), |(i, j)| c64::new((i + 2 * j) as f64, 1.0)));
        let base = total_power(f.dot(&d).view());
        for t in [-0.1, 0.05, 0.3] {
            let alt = &d + &z.mapv(|x| x * t);
            assert!(total_power(f.dot(&alt).view()) >= base - 1e-9);
        }
    }

    #[test]
    fn water_filling_kkt() {
        let cost = Array1::from(vec![1.0, 2.0, 0.5, 4.0]);
        let noise = [1.0, 0.5, 2.0, 1.0];
        let weights = [1.0, 1.0, 2.0, 0.5];
        let p = water_filling(&cost, &noise, &weights, 3.0);
        let used: f64 = p.iter().zip(cost.iter()).map(|(a, b)| a * b).sum();
        assert!((used - 3.0).abs() < 1e-12);
        // Active users share the same marginal utility per unit power α/((σ² + p) c).
        let marg: Vec<f64> = (0..4).map(|k| weights[k] / ((noise[k] + p[k]) * cost[k])).collect();
        let active: Vec<usize> = (0..4).filter(|&k| p[k] > 1e-12).collect();
        for &k in &active {
            assert!((marg[k] - marg[active[0]]).abs() < 1e-9 * marg[k], "{marg:?}");
        }
        for k in (0..4).filter(|k| p[*k] <= 1e-12) {
            assert!(marg[k] <= marg[active[0]] + 1e-12);
        }
    }

    #[test]
    fn rejects_bad_rf_chains() {
        let p = testutil::miso(8, 4, 1.0, 0);
        for n_rf in [Some(0), Some(3), Some(9)] {
            assert!(matches!(check_hybrid(&p, n_rf, true, "x"), Err(BaselineError::RfChains { .. })));
        }
        assert!(check_hybrid(&p, None, true, "x").is_ok());
        assert!(check_hybrid(&p, Some(8), true, "x").is_ok());
    }
}
