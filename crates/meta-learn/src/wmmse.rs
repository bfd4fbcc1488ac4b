//! Classical (non-learned) WMMSE variants of MB-MAML's baselines (spec §3 and §7): robust WMMSE
//! with an error covariance, WMMSE on the sample mean (`R = 0`), and the sample-average (SAA)
//! stochastic WMMSE over the `N` samples.
//!
//! System model (MISO downlink, `M` transmit antennas, `K` single-antenna users, column
//! convention: user `k` receives `h_kᴴ V s + n_k`): the transmitter knows the sample mean
//! `h̄_k: [M]` and, optionally, a covariance `R_k: [M × M]` (Hermitian PSD) modelling
//! `E[h_k h_kᴴ] = h̄_k h̄_kᴴ + R_k`. One robust WMMSE iteration (spec (13)–(17)):
//!
//! ```text
//! a_k = Σ_i (|h̄_kᴴ v_i|² + v_iᴴ R_k v_i) + σ_k²,    u_k = h̄_kᴴ v_k / a_k,
//! w_k = 1 / (1 − conj(u_k) h̄_kᴴ v_k),              λ_i = ω_i w_i |u_i|²,  μ = Σ_i λ_i σ_i² / P,
//! B = Σ_i λ_i (h̄_i h̄_iᴴ + R_i) + μ I,              v_k = ω_k w_k u_k B⁻¹ h̄_k,  V ← √P V / ‖V‖_F
//! ```
//!
//! from the MRT start `V⁰ = √P H̄ / ‖H̄‖_F` (`H̄ = [h̄_1 … h̄_K]: [M × K]`). The objective
//! reported per iteration is the robust rate `Σ_k ω_k log2 w_k` (the rate when the covariance
//! term is treated as extra interference). With `μ` in closed form the power normalisation is
//! exact: the update is the WMMSE minimiser for the Lagrange multiplier that makes the power
//! constraint tight up to the rescaling (the usual "normalised WMMSE").
//!
//! The update itself is `iteration::robust_iteration` (crate-internal; split real/imaginary layout,
//! split-complex Cholesky of `B`), the same function the learned method runs `T` times in
//! [`crate::fast`]; this module adds the checks, the stopping rule and the objective trace.

use beamlab_core::{Beamformer, CoreError, Diagnostics, Precoder, Problem, Solution};
use beamlab_linalg_ops::{c64, cholesky_solve, self_adjoint_eigen};
use ndarray::{Array1, Array2};

use crate::MetaLearnError;
use crate::iteration::{Block, Values, robust_iteration};

/// Stopping rule of the classical iterations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WmmseConfig {
    /// Maximum number of iterations (spec: 100).
    pub max_n_iterations: usize,
    /// Stop when the objective changes by less than this (bit/s/Hz, spec: 1e-4).
    pub tolerance: f64,
}

impl Default for WmmseConfig {
    fn default() -> Self {
        Self { max_n_iterations: 100, tolerance: 1e-4 }
    }
}

/// A precoder `V: [M × K]` with its iteration trace.
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct WmmseOutput {
    /// Precoder, `‖V‖_F² = P`.
    pub v: Array2<c64>,
    /// Iterations performed.
    pub n_iterations: usize,
    /// Whether the tolerance was met.
    pub converged: bool,
    /// Objective (robust or sample-average rate, bit/s/Hz) before each update.
    pub objective_trace: Vec<f64>,
}

/// The scalar system parameters: noise powers `σ_k²`, weights `ω_k`, power budget `P`.
#[derive(Clone, Debug, PartialEq)]
pub struct SystemParams {
    /// Noise power of each user (linear, > 0).
    pub noise: Vec<f64>,
    /// Rate weights (finite, ≥ 0).
    pub weights: Vec<f64>,
    /// Total power budget (> 0).
    pub power: f64,
}

impl SystemParams {
    /// `K` users with equal noise `σ²`, unit weights and budget `P`.
    #[must_use]
    pub fn uniform(n_users: usize, noise: f64, power: f64) -> Self {
        Self { noise: vec![noise; n_users], weights: vec![1.0; n_users], power }
    }

    /// Checks against `K` users.
    ///
    /// # Errors
    /// [`MetaLearnError::ShapeMismatch`] for wrong lengths, [`MetaLearnError::InvalidConfig`] for
    /// non-positive / non-finite values.
    pub fn check(&self, n_users: usize) -> Result<(), MetaLearnError> {
        if self.noise.len() != n_users || self.weights.len() != n_users {
            return Err(MetaLearnError::shape(
                "noise powers and weights",
                format!("{n_users} each"),
                format!("{} and {}", self.noise.len(), self.weights.len()),
            ));
        }
        if self.noise.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(MetaLearnError::config("noise", "noise powers must be finite and > 0"));
        }
        if self.weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(MetaLearnError::config("weights", "weights must be finite and >= 0"));
        }
        if !(self.power.is_finite() && self.power > 0.0) {
            return Err(MetaLearnError::config("power", format!("must be finite and > 0, got {}", self.power)));
        }
        Ok(())
    }
}

fn all_finite<'a>(it: impl IntoIterator<Item = &'a c64>) -> bool {
    it.into_iter().all(|z| z.re.is_finite() && z.im.is_finite())
}

/// Checks the channel columns: non-empty, equal length, finite; returns `M`.
pub(crate) fn check_columns(h: &[Array1<c64>]) -> Result<usize, MetaLearnError> {
    let m = h.first().map(Array1::len).unwrap_or(0);
    if m == 0 {
        return Err(MetaLearnError::Empty { what: "channel columns" });
    }
    if let Some(c) = h.iter().find(|c| c.len() != m) {
        return Err(MetaLearnError::shape("channel column length", m, c.len()));
    }
    if !h.iter().all(|c| all_finite(c.iter())) {
        return Err(MetaLearnError::NonFiniteInput { what: "channel" });
    }
    Ok(m)
}

/// Checks that each `R_k` is a finite Hermitian PSD `M × M` matrix (tolerance `1e-9 · tr R`).
///
/// # Errors
/// [`MetaLearnError::ShapeMismatch`], [`MetaLearnError::NonFiniteInput`],
/// [`MetaLearnError::NotHermitian`], [`MetaLearnError::NotPsd`] for a negative eigenvalue.
pub fn check_covariances(cov: &[Array2<c64>], n_users: usize, m: usize) -> Result<(), MetaLearnError> {
    if cov.len() != n_users {
        return Err(MetaLearnError::shape("covariances", n_users, cov.len()));
    }
    for (k, r) in cov.iter().enumerate() {
        if r.dim() != (m, m) {
            return Err(MetaLearnError::shape("covariance", format!("{m}x{m}"), format!("{:?}", r.dim())));
        }
        if !all_finite(r.iter()) {
            return Err(MetaLearnError::NonFiniteInput { what: "covariance" });
        }
        let scale = r.iter().map(|z| z.norm()).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
        let herm = (0..m).flat_map(|i| (0..m).map(move |j| (i, j))).map(|(i, j)| (r[[i, j]] - r[[j, i]].conj()).norm());
        if herm.fold(0.0, f64::max) > 1e-9 * scale {
            return Err(MetaLearnError::NotHermitian { user: k });
        }
        let (ev, _) = self_adjoint_eigen(r.view())?;
        let min = ev.iter().copied().fold(f64::INFINITY, f64::min);
        let tr: f64 = r.diag().iter().map(|z| z.re).sum();
        if min < -1e-9 * tr.abs().max(scale) {
            return Err(MetaLearnError::NotPsd { user: k, min_eigenvalue: min });
        }
    }
    Ok(())
}

/// Channel columns as the matrix `H̄ = [h̄_1 … h̄_K]: [M × K]`.
pub(crate) fn columns_matrix(h: &[Array1<c64>]) -> Array2<c64> {
    let m = h.first().map(Array1::len).unwrap_or(0);
    Array2::from_shape_fn((m, h.len()), |(i, k)| h[k][i])
}

/// The MRT start `V⁰ = √P H̄ / ‖H̄‖_F: [M × K]` (baselines' [`beamlab_baselines::matched_filter`]).
///
/// # Errors
/// An all-zero or non-finite channel, a bad budget.
pub(crate) fn mrt_start(h_bar: &[Array1<c64>], power: f64) -> Result<Array2<c64>, MetaLearnError> {
    Ok(beamlab_baselines::matched_filter(columns_matrix(h_bar).view(), power)?)
}

fn normalise(v: &mut Array2<c64>, power: f64) {
    let n = v.iter().map(|z| z.norm_sqr()).sum::<f64>().sqrt();
    if n > 0.0 {
        let s = power.sqrt() / n;
        v.mapv_inplace(|z| z * s);
    }
}

fn inner(a: &Array1<c64>, b: ndarray::ArrayView1<'_, c64>) -> c64 {
    a.iter().zip(b.iter()).map(|(x, y)| x.conj() * y).sum()
}

/// The classical loop's state in the split layout of [`crate::iteration`]: the block constants
/// (covariances made exactly Hermitian, `(R + Rᴴ)/2`, which leaves Hermitian input unchanged),
/// the current precoder and the buffers of one iteration.
struct RobustLoop {
    m: usize,
    k: usize,
    ht: (Vec<f64>, Vec<f64>),
    r: (Vec<f64>, Vec<f64>),
    c: (Vec<f64>, Vec<f64>),
    v: (Vec<f64>, Vec<f64>),
    v_next: (Vec<f64>, Vec<f64>),
    g: Vec<c64>,
    rv: (Vec<f64>, Vec<f64>),
    a: Vec<f64>,
    u: Vec<c64>,
    w: Vec<f64>,
    lam: Vec<f64>,
    l: (Vec<f64>, Vec<f64>),
    lt: (Vec<f64>, Vec<f64>),
    x: (Vec<f64>, Vec<f64>),
}

impl RobustLoop {
    /// From checked columns, optional covariances of matching shapes and the MRT start.
    fn new(h_bar: &[Array1<c64>], cov: Option<&[Array2<c64>]>, power: f64) -> Result<Self, MetaLearnError> {
        let (m, k) = (h_bar[0].len(), h_bar.len());
        if let Some(c) = cov {
            if c.len() != k {
                return Err(MetaLearnError::shape("covariances", k, c.len()));
            }
            if let Some(r) = c.iter().find(|r| r.dim() != (m, m)) {
                return Err(MetaLearnError::shape("covariance", format!("{m}x{m}"), format!("{:?}", r.dim())));
            }
        }
        let zeros = |n: usize| (vec![0.0; n], vec![0.0; n]);
        let (km, mm) = (k * m, m * m);
        let ht = (
            h_bar.iter().flat_map(|h| h.iter().map(|z| z.re)).collect(),
            h_bar.iter().flat_map(|h| h.iter().map(|z| z.im)).collect(),
        );
        let (mut r, mut c) = (zeros(k * mm), zeros(k * mm));
        for (kk, h) in h_bar.iter().enumerate() {
            for i in 0..m {
                for j in 0..m {
                    let q = kk * mm + i * m + j;
                    let rij = cov.map_or(c64::new(0.0, 0.0), |cv| (cv[kk][[i, j]] + cv[kk][[j, i]].conj()) * 0.5);
                    let hh = h[i] * h[j].conj();
                    (r.0[q], r.1[q]) = (rij.re, rij.im);
                    (c.0[q], c.1[q]) = (rij.re + hh.re, rij.im + hh.im);
                }
            }
        }
        let v0 = mrt_start(h_bar, power)?;
        let v = ((0..km).map(|q| v0[[q % m, q / m]].re).collect(), (0..km).map(|q| v0[[q % m, q / m]].im).collect());
        Ok(Self {
            m,
            k,
            ht,
            r,
            c,
            v,
            v_next: zeros(km),
            g: vec![c64::new(0.0, 0.0); k * k],
            rv: zeros(k * km),
            a: vec![0.0; k],
            u: vec![c64::new(0.0, 0.0); k],
            w: vec![0.0; k],
            lam: vec![0.0; k],
            l: zeros(mm),
            lt: zeros(mm),
            x: zeros(km),
        })
    }

    /// One update; returns the robust rate `Σ ω_k log2 w_k` at the precoder before it.
    fn step(&mut self, sys: &SystemParams) -> Result<f64, MetaLearnError> {
        let block = Block {
            m: self.m,
            k: self.k,
            ht_re: &self.ht.0,
            ht_im: &self.ht.1,
            r_re: &self.r.0,
            r_im: &self.r.1,
            c_re: &self.c.0,
            c_im: &self.c.1,
            noise: &sys.noise,
            weights: &sys.weights,
            power: sys.power,
        };
        let values = Values {
            g: &mut self.g,
            rv_re: &mut self.rv.0,
            rv_im: &mut self.rv.1,
            a: &mut self.a,
            u: &mut self.u,
            w: &mut self.w,
            lam: &mut self.lam,
            l_re: &mut self.l.0,
            l_im: &mut self.l.1,
            lt_re: &mut self.lt.0,
            lt_im: &mut self.lt.1,
            x_re: &mut self.x.0,
            x_im: &mut self.x.1,
        };
        robust_iteration(&block, &self.v.0, &self.v.1, values, &mut self.v_next.0, &mut self.v_next.1)?;
        std::mem::swap(&mut self.v, &mut self.v_next);
        Ok(self.w.iter().zip(&sys.weights).map(|(w, om)| om * w.log2()).sum())
    }

    /// The current precoder `V: [M × K]`.
    fn precoder(&self) -> Array2<c64> {
        let m = self.m;
        Array2::from_shape_fn((m, self.k), |(i, j)| c64::new(self.v.0[j * m + i], self.v.1[j * m + i]))
    }
}

/// Robust WMMSE (spec §3) with covariances `cov` (`None` = WMMSE on `h̄`), iterated from MRT
/// until the robust rate changes by less than the tolerance.
///
/// # Errors
/// Bad shapes, non-finite input, non-PSD covariances ([`MetaLearnError::NotPsd`]) or a failed
/// solve.
///
/// # Example
/// ```
/// use beamlab_meta_learn::wmmse::{robust_wmmse, SystemParams, WmmseConfig};
/// use beamlab_linalg_ops::c64;
/// use ndarray::{array, Array2};
/// let h = vec![array![c64::new(1.0, 0.0), c64::new(0.0, 0.0)], array![c64::new(0.0, 0.0), c64::new(1.0, 0.0)]];
/// let out = robust_wmmse(&h, None, &SystemParams::uniform(2, 0.1, 1.0), &WmmseConfig::default())?;
/// let p: f64 = out.v.iter().map(|z| z.norm_sqr()).sum();
/// assert!((p - 1.0).abs() < 1e-12);
/// # Ok::<(), beamlab_meta_learn::MetaLearnError>(())
/// ```
pub fn robust_wmmse(
    h_bar: &[Array1<c64>],
    cov: Option<&[Array2<c64>]>,
    sys: &SystemParams,
    config: &WmmseConfig,
) -> Result<WmmseOutput, MetaLearnError> {
    let m = check_columns(h_bar)?;
    sys.check(h_bar.len())?;
    if let Some(c) = cov {
        check_covariances(c, h_bar.len(), m)?;
    }
    let mut state = RobustLoop::new(h_bar, cov, sys.power)?;
    let mut trace = Vec::new();
    let mut converged = false;
    for _ in 0..config.max_n_iterations {
        let obj = state.step(sys)?;
        let done = trace.last().is_some_and(|&l: &f64| (obj - l).abs() < config.tolerance);
        trace.push(obj);
        if done {
            converged = true;
            break;
        }
    }
    Ok(WmmseOutput { v: state.precoder(), n_iterations: trace.len(), converged, objective_trace: trace })
}

/// Exactly `n_iterations` robust WMMSE updates from MRT, with no stopping rule and no
/// covariance checks beyond shapes (the classical twin of the unrolled version).
///
/// # Errors
/// As [`robust_wmmse`].
pub fn robust_wmmse_fixed(
    h_bar: &[Array1<c64>],
    cov: Option<&[Array2<c64>]>,
    sys: &SystemParams,
    n_iterations: usize,
) -> Result<Array2<c64>, MetaLearnError> {
    check_columns(h_bar)?;
    sys.check(h_bar.len())?;
    let mut state = RobustLoop::new(h_bar, cov, sys.power)?;
    for _ in 0..n_iterations {
        state.step(sys)?;
    }
    Ok(state.precoder())
}

/// Sample-average (SAA) stochastic WMMSE over the samples `samples[k][n]` (spec §7 "SWMMSE"):
/// every sample gets its own receiver and weight, and the precoder update averages them:
///
/// ```text
/// B = Σ_{k,n} ω_k w_kn |u_kn|² ĥ_kn ĥ_knᴴ + μ I,  v_k ∝ B⁻¹ Σ_n ω_k w_kn u_kn ĥ_kn,
/// ```
///
/// with `μ = Σ_{k,n} ω_k w_kn |u_kn|² σ_k² / P` and the power rescaling. The objective is the
/// sample-average rate `(1/N) Σ_n Σ_k ω_k log2 w_kn`.
///
/// # Errors
/// Bad shapes (unequal sample counts, lengths), non-finite samples, a failed solve.
pub fn swmmse(
    samples: &[Vec<Array1<c64>>],
    sys: &SystemParams,
    config: &WmmseConfig,
) -> Result<WmmseOutput, MetaLearnError> {
    let n_samples = samples.first().map(Vec::len).unwrap_or(0);
    if n_samples == 0 {
        return Err(MetaLearnError::Empty { what: "samples" });
    }
    if let Some(s) = samples.iter().find(|s| s.len() != n_samples) {
        return Err(MetaLearnError::shape("samples per user", n_samples, s.len()));
    }
    let flat: Vec<Array1<c64>> = samples.iter().flatten().cloned().collect();
    let m = check_columns(&flat)?;
    let k_users = samples.len();
    sys.check(k_users)?;
    let means: Vec<Array1<c64>> = samples
        .iter()
        .map(|s| s.iter().fold(Array1::zeros(m), |acc, x| acc + x) / c64::from(n_samples as f64))
        .collect();
    let mut v = mrt_start(&means, sys.power)?;
    let mut trace: Vec<f64> = Vec::new();
    let mut converged = false;
    for _ in 0..config.max_n_iterations {
        let mut b = Array2::<c64>::zeros((m, m));
        let mut rhs = Array2::<c64>::zeros((m, k_users));
        let mut mu = 0.0;
        let mut obj = 0.0;
        for k in 0..k_users {
            for h in &samples[k] {
                let g: Vec<c64> = (0..k_users).map(|i| inner(h, v.column(i))).collect();
                let a = g.iter().map(|x| x.norm_sqr()).sum::<f64>() + sys.noise[k];
                let u = g[k] / a;
                let w = 1.0 / (1.0 - g[k].norm_sqr() / a);
                obj += sys.weights[k] * w.log2() / n_samples as f64;
                let lambda = sys.weights[k] * w * u.norm_sqr();
                mu += lambda * sys.noise[k] / sys.power;
                for i in 0..m {
                    rhs[[i, k]] += h[i] * u * (sys.weights[k] * w);
                    for j in 0..m {
                        b[[i, j]] += h[i] * h[j].conj() * lambda;
                    }
                }
            }
        }
        for i in 0..m {
            b[[i, i]] += mu;
        }
        v = cholesky_solve(b.view(), rhs.view())?;
        normalise(&mut v, sys.power);
        let done = trace.last().is_some_and(|&l| (obj - l).abs() < config.tolerance);
        trace.push(obj);
        if done {
            converged = true;
            break;
        }
    }
    Ok(WmmseOutput { v, n_iterations: trace.len(), converged, objective_trace: trace })
}

/// Weighted sum rate `Σ ω_k log2(1 + SINR_k)` of precoder `v: [M × K]` on channel columns `h`.
///
/// # Errors
/// Shape or finiteness errors.
pub fn wsr(h: &[Array1<c64>], v: &Array2<c64>, sys: &SystemParams) -> Result<f64, MetaLearnError> {
    let blocks: Vec<Array2<c64>> =
        h.iter().map(|c| Array2::from_shape_fn((1, c.len()), |(_, j)| c[j].conj())).collect();
    Ok(beamlab_linalg_ops::weighted_sum_rate(&blocks, v.view(), &sys.noise, &sys.weights)?)
}

/// Which covariance a [`RobustWmmseBeamformer`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CovarianceSource {
    /// `R = 0`: plain WMMSE on the estimate.
    None,
    /// The covariance implied by [`Problem::error_stats`] (`Covariance` as given, `WhiteGaussian`
    /// as `σ_e² I`, `Relative` as `δ ‖ĥ_k‖²/M I`, `None` as 0).
    FromProblem,
}

/// Robust WMMSE as a [`Beamformer`] (classical): the problem's channel is the estimate `h̄`.
#[derive(Clone, Debug)]
pub struct RobustWmmseBeamformer {
    name: String,
    source: CovarianceSource,
    config: WmmseConfig,
}

impl RobustWmmseBeamformer {
    /// WMMSE on the estimate (`R = 0`), named "WMMSE (h̄)".
    #[must_use]
    pub fn nominal(config: WmmseConfig) -> Self {
        Self { name: "WMMSE (h̄)".into(), source: CovarianceSource::None, config }
    }
    /// Robust WMMSE with the problem's error statistics, named `name` (e.g. "robust WMMSE (R^S)"
    /// or "robust WMMSE (oracle)" depending on what the caller puts into the problem).
    #[must_use]
    pub fn robust(name: &str, config: WmmseConfig) -> Self {
        Self { name: name.into(), source: CovarianceSource::FromProblem, config }
    }
}

/// Column channels `h_k = Ĥ_k[0, :]ᴴ` of a MISO problem.
pub(crate) fn problem_columns(problem: &Problem) -> Result<Vec<Array1<c64>>, MetaLearnError> {
    Ok(beamlab_channel::unknown_error::miso_columns(&problem.channel)?)
}

impl Beamformer for RobustWmmseBeamformer {
    fn name(&self) -> &str {
        &self.name
    }

    fn solve(&mut self, problem: &Problem, _rng: &mut dyn rand::RngCore) -> Result<Solution, CoreError> {
        let start = std::time::Instant::now();
        let wrap = |e: MetaLearnError| CoreError::Method { method: self.name.clone(), source: Box::new(e) };
        let h = problem_columns(problem).map_err(wrap)?;
        let sys = SystemParams {
            noise: problem.noise_power.clone(),
            weights: problem.weights.clone(),
            power: problem.power_budget,
        };
        let cov = match self.source {
            CovarianceSource::None => None,
            CovarianceSource::FromProblem => problem.error_stats.covariances(&h),
        };
        let out = robust_wmmse(&h, cov.as_deref(), &sys, &self.config).map_err(wrap)?;
        Ok(Solution {
            precoder: Precoder::Digital { w: out.v },
            diagnostics: Diagnostics {
                n_iterations: out.n_iterations,
                converged: out.converged,
                objective_trace: out.objective_trace,
                elapsed: start.elapsed(),
                notes: Vec::new(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beamlab_channel::unknown_error::{haar_unitary, miso_columns, sample_error_block};
    use beamlab_channel::{UnknownErrorParams, rayleigh};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn setup(seed: u64, gamma_db: f64) -> (Vec<Array1<c64>>, Vec<beamlab_channel::UserErrorBlock>) {
        setup_m(seed, gamma_db, 16)
    }

    fn setup_m(seed: u64, gamma_db: f64, m: usize) -> (Vec<Array1<c64>>, Vec<beamlab_channel::UserErrorBlock>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = rayleigh(4, 1, m, &mut rng).unwrap();
        let q = haar_unitary(m, &mut rng).unwrap();
        let p = UnknownErrorParams { error_level_db: gamma_db, ..Default::default() };
        let b = sample_error_block(&h, &q, &p, &mut rng).unwrap();
        (miso_columns(&h).unwrap(), b)
    }

    #[test]
    fn robust_rate_is_monotone_and_power_is_met() {
        let (_, b) = setup(1, 0.0);
        let h_bar: Vec<_> = b.iter().map(|u| u.sample_mean.clone()).collect();
        let cov: Vec<_> = b.iter().map(|u| u.error_covariance.clone()).collect();
        let sys = SystemParams::uniform(4, 0.01, 1.0);
        let out =
            robust_wmmse(&h_bar, Some(&cov), &sys, &WmmseConfig { max_n_iterations: 60, tolerance: 0.0 }).unwrap();
        for w in out.objective_trace.windows(2) {
            assert!(w[1] >= w[0] - 1e-9, "{:?}", out.objective_trace);
        }
        let p: f64 = out.v.iter().map(|z| z.norm_sqr()).sum();
        assert!((p - 1.0).abs() < 1e-10);
    }

    #[test]
    fn zero_covariance_equals_nominal_and_single_user_is_mrt() {
        let (_, b) = setup(2, 10.0);
        let h_bar: Vec<_> = b.iter().map(|u| u.sample_mean.clone()).collect();
        let sys = SystemParams::uniform(4, 0.1, 1.0);
        let zero: Vec<_> = (0..4).map(|_| Array2::<c64>::zeros((16, 16))).collect();
        let a = robust_wmmse_fixed(&h_bar, None, &sys, 7).unwrap();
        let c = robust_wmmse_fixed(&h_bar, Some(&zero), &sys, 7).unwrap();
        assert!(a.iter().zip(c.iter()).all(|(x, y)| (x - y).norm() < 1e-12));
        // K = 1: the optimum is MRT, v ∝ h̄.
        let one = vec![h_bar[0].clone()];
        let v = robust_wmmse_fixed(&one, None, &SystemParams::uniform(1, 0.1, 1.0), 3).unwrap();
        let mrt = mrt_start(&one, 1.0).unwrap();
        let overlap = inner(&v.column(0).to_owned(), mrt.column(0)).norm();
        assert!((overlap - 1.0).abs() < 1e-10);
    }

    /// Spec sanity ordering on the true channel (γ = 0 dB, SNR 20 dB, averaged over 10 draws):
    /// the oracle-covariance robust WMMSE beats WMMSE on h̄, which beats SAA.
    #[test]
    fn baseline_ordering_matches_the_spec() {
        let sys = SystemParams::uniform(4, 0.01, 1.0);
        let cfg = WmmseConfig::default();
        let (mut nominal, mut oracle, mut saa) = (0.0, 0.0, 0.0);
        for seed in 0..10 {
            let (h, b) = setup_m(100 + seed, 0.0, 32);
            let h_bar: Vec<_> = b.iter().map(|u| u.sample_mean.clone()).collect();
            let cov: Vec<_> = b.iter().map(|u| u.error_covariance.clone()).collect();
            let samples: Vec<_> = b.iter().map(|u| u.samples.clone()).collect();
            nominal += wsr(&h, &robust_wmmse(&h_bar, None, &sys, &cfg).unwrap().v, &sys).unwrap();
            oracle += wsr(&h, &robust_wmmse(&h_bar, Some(&cov), &sys, &cfg).unwrap().v, &sys).unwrap();
            saa += wsr(&h, &swmmse(&samples, &sys, &cfg).unwrap().v, &sys).unwrap();
        }
        assert!(oracle > nominal && nominal > saa, "oracle {oracle}, nominal {nominal}, saa {saa}");
    }

    #[test]
    fn swmmse_objective_is_monotone() {
        let (_, b) = setup(3, 5.0);
        let samples: Vec<_> = b.iter().map(|u| u.samples.clone()).collect();
        let sys = SystemParams::uniform(4, 0.01, 1.0);
        let out = swmmse(&samples, &sys, &WmmseConfig { max_n_iterations: 40, tolerance: 0.0 }).unwrap();
        for w in out.objective_trace.windows(2) {
            assert!(w[1] >= w[0] - 1e-9);
        }
    }

    #[test]
    fn bad_input_is_rejected() {
        let (_, b) = setup(4, 0.0);
        let h_bar: Vec<_> = b.iter().map(|u| u.sample_mean.clone()).collect();
        let sys = SystemParams::uniform(4, 0.01, 1.0);
        let cfg = WmmseConfig::default();
        let mut neg: Vec<_> = b.iter().map(|u| u.error_covariance.clone()).collect();
        neg[2] = -neg[2].clone();
        assert!(matches!(robust_wmmse(&h_bar, Some(&neg), &sys, &cfg), Err(MetaLearnError::NotPsd { user: 2, .. })));
        let mut nan = h_bar.clone();
        nan[0][0] = c64::new(f64::NAN, 0.0);
        assert!(matches!(robust_wmmse(&nan, None, &sys, &cfg), Err(MetaLearnError::NonFiniteInput { .. })));
        assert!(robust_wmmse(&h_bar, None, &SystemParams::uniform(3, 0.01, 1.0), &cfg).is_err());
        assert!(swmmse(&[], &sys, &cfg).is_err());
    }

    #[test]
    fn beamformer_uses_problem_statistics() {
        let (h, b) = setup(5, 0.0);
        let h_bar: Vec<_> = b.iter().map(|u| u.sample_mean.clone()).collect();
        let cov: Vec<_> = b.iter().map(|u| u.error_covariance.clone()).collect();
        let ch = beamlab_channel::unknown_error::channel_from_columns(&h_bar).unwrap();
        let problem = Problem::new(ch, 0.01, 1.0)
            .unwrap()
            .with_error_stats(beamlab_core::ErrorStats::Covariance(cov.clone()))
            .unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let sol = RobustWmmseBeamformer::robust("robust", WmmseConfig::default()).solve(&problem, &mut rng).unwrap();
        let direct =
            robust_wmmse(&h_bar, Some(&cov), &SystemParams::uniform(4, 0.01, 1.0), &WmmseConfig::default()).unwrap();
        let Precoder::Digital { w } = sol.precoder else { panic!("digital expected") };
        assert!(w.iter().zip(direct.v.iter()).all(|(x, y)| (x - y).norm() < 1e-12));
        let _ = h;
    }
}
