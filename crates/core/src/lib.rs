//! # beamlab-core
//!
//! The small set of types every beamlab method shares:
//!
//! - [`Channel`]: validated per-user channel blocks `H_k: [N_k × M]`;
//! - [`Problem`]: what a transmitter may know (estimated channel, noise powers, power budget, user
//!   weights, optional error statistics and SINR targets). **The true channel is not in it**, so no
//!   [`Beamformer::solve`] can look at it;
//! - [`Sample`]: a problem paired with the true channel, for evaluation and training;
//! - [`Precoder`] and [`Solution`]: a digital `W`, a hybrid `(F, D)`, or unit beams with per-user
//!   powers, plus [`Diagnostics`] (iterations, convergence, objective trace, time);
//! - [`Beamformer`]: the one object-safe trait that classical, online-learning and offline-trained
//!   methods implement.
//!
//! Non-convergence is a diagnostic, not an error; [`CoreError`] is for bad input and numerical
//! breakdown.
//!
//! ```
//! use beamlab_core::{Channel, Problem, Precoder};
//! use beamlab_linalg_ops::c64;
//! use ndarray::array;
//! let h = Channel::new(vec![array![[c64::new(1.0, 0.0), c64::new(0.0, 0.0)]]]).unwrap();
//! let problem = Problem::new(h.clone(), 1.0, 4.0).unwrap();
//! let w = Precoder::Digital { w: array![[c64::new(2.0, 0.0)], [c64::new(0.0, 0.0)]] };
//! let rates = w.rates(&h, &problem.noise_power).unwrap();
//! assert!((rates[0] - 5f64.log2()).abs() < 1e-12); // log2(1 + P|h|²/σ²)
//! assert!(Problem::new(h, 1.0, -1.0).is_err());
//! ```

use std::time::Duration;

pub mod experiment;

use beamlab_linalg_ops::{LinalgError, c64};
use ndarray::{Array1, Array2, Array3, Axis};

/// Errors shared by every method: bad input, numerical breakdown, or a method's own failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The problem or channel is malformed (shapes, NaN, non-positive power, ...).
    #[error("invalid problem: {0}")]
    InvalidProblem(String),
    /// The problem is well-formed but has no solution (e.g. an unreachable SINR target, or
    /// zero-forcing with more streams than antennas).
    #[error("infeasible: {0}")]
    Infeasible(String),
    /// A linear-algebra failure.
    #[error(transparent)]
    Linalg(#[from] LinalgError),
    /// A method-specific error, boxed so that the trait stays object-safe.
    #[error("{method}: {source}")]
    Method {
        /// The method's name.
        method: String,
        /// Its error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Per-user channel blocks `H_k: [N_k × M]` (receive antennas × transmit antennas).
///
/// Invariants (checked by [`Channel::new`]): at least one user, every block non-empty, all blocks
/// with the same `M`, every entry finite.
#[derive(Clone, Debug, PartialEq)]
pub struct Channel {
    blocks: Vec<Array2<c64>>,
}

impl Channel {
    /// Validates and wraps per-user blocks.
    ///
    /// # Errors
    /// [`CoreError::InvalidProblem`] naming the offending user.
    pub fn new(blocks: Vec<Array2<c64>>) -> Result<Self, CoreError> {
        if blocks.is_empty() {
            return Err(CoreError::InvalidProblem("channel has no users".into()));
        }
        let n_tx = blocks[0].ncols();
        for (k, b) in blocks.iter().enumerate() {
            if b.nrows() == 0 || b.ncols() == 0 {
                return Err(CoreError::InvalidProblem(format!("user {k}: empty channel block {:?}", b.dim())));
            }
            if b.ncols() != n_tx {
                return Err(CoreError::InvalidProblem(format!(
                    "user {k}: {} transmit antennas, user 0 has {n_tx}",
                    b.ncols()
                )));
            }
            if let Some(((i, j), _)) = b.indexed_iter().find(|(_, z)| !(z.re.is_finite() && z.im.is_finite())) {
                return Err(CoreError::InvalidProblem(format!("user {k}: non-finite channel entry at ({i}, {j})")));
            }
            let energy: f64 = b.iter().map(|z| z.norm_sqr()).sum();
            if !energy.is_finite() {
                return Err(CoreError::InvalidProblem(format!(
                    "user {k}: channel energy overflows f64 (entries larger than ~1e150); rescale the channel"
                )));
            }
        }
        Ok(Self { blocks })
    }

    /// From a `[K × N_rx × M]` tensor (equal `N_k`).
    ///
    /// # Errors
    /// As [`Channel::new`].
    pub fn from_array3(h: &Array3<c64>) -> Result<Self, CoreError> {
        Self::new(h.outer_iter().map(|b| b.to_owned()).collect())
    }

    /// To a `[K × N_rx × M]` tensor.
    ///
    /// # Errors
    /// [`CoreError::InvalidProblem`] when users have different `N_k`.
    pub fn to_array3(&self) -> Result<Array3<c64>, CoreError> {
        let views: Vec<_> = self.blocks.iter().map(|b| b.view().insert_axis(Axis(0))).collect();
        ndarray::concatenate(Axis(0), &views)
            .map_err(|_| CoreError::InvalidProblem("users have different receive-antenna counts".into()))
    }

    /// The blocks `H_k`.
    #[must_use]
    pub fn blocks(&self) -> &[Array2<c64>] {
        &self.blocks
    }

    /// Number of users `K`.
    #[must_use]
    pub fn n_users(&self) -> usize {
        self.blocks.len()
    }

    /// Number of transmit antennas `M`.
    #[must_use]
    pub fn n_tx(&self) -> usize {
        self.blocks[0].ncols()
    }

    /// Receive antennas of each user.
    #[must_use]
    pub fn n_rx(&self) -> Vec<usize> {
        self.blocks.iter().map(|b| b.nrows()).collect()
    }

    /// Stacked `H = [H_1; …; H_K]`, `[Σ N_k × M]`.
    #[must_use]
    pub fn stacked(&self) -> Array2<c64> {
        let views: Vec<_> = self.blocks.iter().map(|b| b.view()).collect();
        // Blocks share M by construction, so concatenation cannot fail.
        ndarray::concatenate(Axis(0), &views).unwrap_or_else(|_| Array2::zeros((0, 0)))
    }

    /// `Σ_k ‖H_k‖_F²`.
    #[must_use]
    pub fn energy(&self) -> f64 {
        self.blocks.iter().flat_map(|b| b.iter()).map(|z| z.norm_sqr()).sum()
    }
}

/// What the transmitter knows about its CSI error, when anything.
#[derive(Clone, Debug, PartialEq, Default)]
#[non_exhaustive]
pub enum ErrorStats {
    /// Perfect CSI is assumed.
    #[default]
    None,
    /// `Ĥ = H + E`, i.i.d. `CN(0, variance)` entries.
    WhiteGaussian {
        /// Per-entry error variance.
        variance: f64,
    },
    /// Relative error `e ~ CN(0, δ ‖h_k‖²/M I)` per user (GGML-ImCSI).
    Relative {
        /// `δ`.
        delta: f64,
    },
    /// Per-user error covariance `R_e,k: [M × M]` (MB-MAML, outage models).
    Covariance(Vec<Array2<c64>>),
}

impl ErrorStats {
    /// Per-user error covariances `R_e,k: [M × M]` of the column channels `h_k` (`M = len(h_k)`):
    /// the given ones, `v I` for white errors, `δ ‖h_k‖²/M I` for relative ones; `None` when
    /// nothing is known.
    #[must_use]
    pub fn covariances(&self, h: &[Array1<c64>]) -> Option<Vec<Array2<c64>>> {
        let eye = |m: usize, v: f64| Array2::eye(m) * c64::new(v, 0.0);
        match self {
            Self::Covariance(c) => Some(c.clone()),
            Self::WhiteGaussian { variance } => Some(h.iter().map(|c| eye(c.len(), *variance)).collect()),
            Self::Relative { delta } => Some(
                h.iter()
                    .map(|c| eye(c.len(), delta * c.iter().map(|z| z.norm_sqr()).sum::<f64>() / c.len().max(1) as f64))
                    .collect(),
            ),
            Self::None => None,
        }
    }
}

/// One beamforming problem as the transmitter sees it.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Estimated channel `Ĥ` (the only channel a method may use).
    pub channel: Channel,
    /// Noise power `σ_k²` of each user (linear).
    pub noise_power: Vec<f64>,
    /// Total transmit power budget `P` (linear), `‖W‖_F² ≤ P`.
    pub power_budget: f64,
    /// Weights `α_k` of the weighted sum rate.
    pub weights: Vec<f64>,
    /// Side information about the CSI error.
    pub error_stats: ErrorStats,
    /// Per-user SINR targets (linear) for QoS power-minimisation problems.
    pub sinr_targets: Option<Vec<f64>>,
}

impl Problem {
    /// A sum-rate problem: equal noise power on every user, unit weights, no error statistics.
    ///
    /// # Errors
    /// [`CoreError::InvalidProblem`] for non-positive or non-finite noise or power.
    pub fn new(channel: Channel, noise_power: f64, power_budget: f64) -> Result<Self, CoreError> {
        let k = channel.n_users();
        let p = Self {
            channel,
            noise_power: vec![noise_power; k],
            power_budget,
            weights: vec![1.0; k],
            error_stats: ErrorStats::None,
            sinr_targets: None,
        };
        p.validate()?;
        Ok(p)
    }

    /// Replaces the user weights.
    ///
    /// # Errors
    /// As [`Problem::validate`].
    pub fn with_weights(mut self, weights: Vec<f64>) -> Result<Self, CoreError> {
        self.weights = weights;
        self.validate()?;
        Ok(self)
    }

    /// Attaches CSI error statistics.
    ///
    /// # Errors
    /// As [`Problem::validate`].
    pub fn with_error_stats(mut self, stats: ErrorStats) -> Result<Self, CoreError> {
        self.error_stats = stats;
        self.validate()?;
        Ok(self)
    }

    /// Attaches per-user SINR targets (linear).
    ///
    /// # Errors
    /// As [`Problem::validate`].
    pub fn with_sinr_targets(mut self, targets: Vec<f64>) -> Result<Self, CoreError> {
        self.sinr_targets = Some(targets);
        self.validate()?;
        Ok(self)
    }

    /// Checks every field (lengths, finiteness, positivity).
    ///
    /// # Errors
    /// [`CoreError::InvalidProblem`] naming the field.
    pub fn validate(&self) -> Result<(), CoreError> {
        let k = self.channel.n_users();
        let bad = |m: String| Err(CoreError::InvalidProblem(m));
        if !(self.power_budget.is_finite() && self.power_budget > 0.0) {
            return bad(format!("power budget must be finite and > 0, got {}", self.power_budget));
        }
        if self.noise_power.len() != k {
            return bad(format!("{} noise powers for {k} users", self.noise_power.len()));
        }
        if let Some(s) = self.noise_power.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return bad(format!("noise power must be finite and > 0, got {s}"));
        }
        if self.weights.len() != k {
            return bad(format!("{} weights for {k} users", self.weights.len()));
        }
        if self.weights.iter().any(|a| !(a.is_finite() && *a >= 0.0)) {
            return bad("user weights must be finite and >= 0".into());
        }
        if let Some(t) = &self.sinr_targets {
            if t.len() != k || t.iter().any(|g| !(g.is_finite() && *g > 0.0)) {
                return bad(format!("SINR targets must be {k} finite positive values"));
            }
        }
        match &self.error_stats {
            ErrorStats::None => {}
            ErrorStats::WhiteGaussian { variance: v } | ErrorStats::Relative { delta: v } => {
                if !(v.is_finite() && *v >= 0.0) {
                    return bad(format!("error statistic must be finite and >= 0, got {v}"));
                }
            }
            ErrorStats::Covariance(c) => {
                let m = self.channel.n_tx();
                if c.len() != k || c.iter().any(|r| r.dim() != (m, m)) {
                    return bad(format!("error covariances must be {k} matrices of size {m}x{m}"));
                }
                if c.iter().flat_map(|r| r.iter()).any(|z| !(z.re.is_finite() && z.im.is_finite())) {
                    return bad("error covariances must be finite".into());
                }
            }
        }
        Ok(())
    }

    /// Number of users.
    #[must_use]
    pub fn n_users(&self) -> usize {
        self.channel.n_users()
    }

    /// Number of transmit antennas.
    #[must_use]
    pub fn n_tx(&self) -> usize {
        self.channel.n_tx()
    }
}

/// A problem paired with the true channel it was estimated from.
#[derive(Clone, Debug)]
pub struct Sample {
    /// What the transmitter sees.
    pub problem: Problem,
    /// The channel the precoder is scored on.
    pub truth: Channel,
}

/// A precoder in one of the forms the methods produce.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Precoder {
    /// Fully digital `W: [M × K]`.
    Digital {
        /// Precoder.
        w: Array2<c64>,
    },
    /// Hybrid `W = F D`, `F: [M × M_RF]` (analog, unit modulus), `D: [M_RF × K]`.
    Hybrid {
        /// Analog precoder.
        f: Array2<c64>,
        /// Digital precoder.
        d: Array2<c64>,
    },
    /// Unit-norm beams `b_k` (columns, `[M × K]`) with powers `p_k`: `w_k = √p_k b_k`.
    BeamsPowers {
        /// Beams.
        beams: Array2<c64>,
        /// Powers.
        powers: Array1<f64>,
    },
}

impl Precoder {
    /// The equivalent digital precoder `W: [M × K]`.
    ///
    /// # Errors
    /// Shape or finiteness errors of the parts.
    pub fn effective(&self) -> Result<Array2<c64>, CoreError> {
        match self {
            Precoder::Digital { w } => Ok(w.clone()),
            Precoder::Hybrid { f, d } => Ok(beamlab_linalg_ops::hybrid_product(f.view(), d.view())?),
            Precoder::BeamsPowers { beams, powers } => {
                if beams.ncols() != powers.len() {
                    return Err(CoreError::InvalidProblem(format!(
                        "{} beams but {} powers",
                        beams.ncols(),
                        powers.len()
                    )));
                }
                if powers.iter().any(|p| !(p.is_finite() && *p >= 0.0)) {
                    return Err(CoreError::InvalidProblem("powers must be finite and >= 0".into()));
                }
                let mut w = beams.clone();
                for (mut col, p) in w.columns_mut().into_iter().zip(powers.iter()) {
                    col.mapv_inplace(|z| z * p.sqrt());
                }
                Ok(w)
            }
        }
    }

    /// Radiated power `‖W‖_F²`.
    ///
    /// # Errors
    /// As [`Precoder::effective`].
    pub fn total_power(&self) -> Result<f64, CoreError> {
        Ok(beamlab_linalg_ops::total_power(self.effective()?.view()))
    }

    /// Per-user rates (bit/s/Hz) of this precoder on channel `h` with MMSE receivers.
    ///
    /// # Errors
    /// Shape errors when the precoder does not match the channel.
    pub fn rates(&self, h: &Channel, noise: &[f64]) -> Result<Array1<f64>, CoreError> {
        Ok(beamlab_linalg_ops::user_rates(h.blocks(), self.effective()?.view(), noise)?)
    }
}

/// How a solve went. Non-convergence is reported here, not as an error.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Diagnostics {
    /// Iterations (or training steps) performed.
    pub n_iterations: usize,
    /// Whether the stopping criterion was met before the iteration cap.
    pub converged: bool,
    /// Objective after each iteration (method-defined, e.g. WSR in bit/s/Hz).
    pub objective_trace: Vec<f64>,
    /// Wall-clock time of the solve.
    pub elapsed: Duration,
    /// Free-form remarks (e.g. a diverged online step that was rolled back).
    pub notes: Vec<String>,
}

/// A precoder with its diagnostics.
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct Solution {
    /// The precoder.
    pub precoder: Precoder,
    /// Diagnostics.
    pub diagnostics: Diagnostics,
}

/// How a method relates to data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MethodKind {
    /// Solves each problem independently (samples may run in parallel).
    Classical,
    /// Learns online across consecutive problems; samples must be fed in order.
    Online,
    /// Trained offline, then applied per problem.
    Offline,
}

/// The interface every beamforming method implements. Object-safe: a registry holds
/// `Box<dyn Beamformer>`. Randomness is always passed in.
pub trait Beamformer: Send {
    /// Short display name (used in results and figures).
    fn name(&self) -> &str;

    /// Classical, online or offline.
    fn kind(&self) -> MethodKind {
        MethodKind::Classical
    }

    /// Designs a precoder from what the transmitter knows.
    ///
    /// # Errors
    /// [`CoreError`] for bad input or numerical breakdown; never for non-convergence.
    fn solve(&mut self, problem: &Problem, rng: &mut dyn rand::RngCore) -> Result<Solution, CoreError>;

    /// Forgets any state learned online (no-op for classical methods).
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn c(re: f64) -> c64 {
        c64::new(re, 0.0)
    }

    #[test]
    fn error_covariances_follow_the_error_model() {
        let h = vec![array![c(1.0), c(0.0)], array![c(2.0), c(2.0)]];
        assert_eq!(ErrorStats::None.covariances(&h), None);
        let w = ErrorStats::WhiteGaussian { variance: 0.5 }.covariances(&h).unwrap();
        assert!(w.iter().all(|r| *r == Array2::eye(2) * c(0.5)));
        // δ ‖h_k‖² / M: 0.1 · 1 / 2 and 0.1 · 8 / 2.
        let r = ErrorStats::Relative { delta: 0.1 }.covariances(&h).unwrap();
        assert!((r[0][[0, 0]].re - 0.05).abs() < 1e-15 && (r[1][[1, 1]].re - 0.4).abs() < 1e-15);
        assert_eq!((r[0][[0, 1]], r[1][[1, 0]]), (c(0.0), c(0.0)));
        let given = vec![Array2::eye(2) * c(3.0), Array2::eye(2) * c(4.0)];
        assert_eq!(ErrorStats::Covariance(given.clone()).covariances(&h), Some(given));
    }

    #[test]
    fn channel_validation() {
        assert!(Channel::new(vec![]).is_err());
        assert!(Channel::new(vec![Array2::zeros((0, 3))]).is_err());
        assert!(Channel::new(vec![Array2::zeros((1, 3)), Array2::zeros((1, 2))]).is_err());
        let e = Channel::new(vec![array![[c(1.0), c64::new(f64::NAN, 0.0)]]]).unwrap_err();
        assert!(e.to_string().contains("non-finite"), "{e}");
        let h =
            Channel::new(vec![array![[c(1.0), c(2.0)], [c(0.0), c(1.0)]], array![[c(3.0), c(4.0)], [c(1.0), c(1.0)]]])
                .unwrap();
        assert_eq!(h.n_rx(), vec![2, 2]);
        assert_eq!(h.stacked().dim(), (4, 2));
        assert_eq!(Channel::from_array3(&h.to_array3().unwrap()).unwrap(), h);
        assert!((h.energy() - 33.0).abs() < 1e-12);
    }

    #[test]
    fn problem_validation() {
        let h = Channel::new(vec![array![[c(1.0)]], array![[c(1.0)]]]).unwrap();
        assert!(Problem::new(h.clone(), 0.0, 1.0).is_err());
        assert!(Problem::new(h.clone(), 1.0, f64::INFINITY).is_err());
        let p = Problem::new(h, 1.0, 1.0).unwrap();
        assert!(p.clone().with_weights(vec![1.0]).is_err());
        assert!(p.clone().with_sinr_targets(vec![1.0, -1.0]).is_err());
        assert!(p.clone().with_error_stats(ErrorStats::Relative { delta: f64::NAN }).is_err());
        assert!(p.with_error_stats(ErrorStats::Covariance(vec![Array2::zeros((1, 1))])).is_err());
    }

    #[test]
    fn precoder_forms_agree() {
        let f = array![[c(1.0), c(0.0)], [c(0.0), c(1.0)]];
        let d = array![[c(2.0)], [c(0.0)]];
        let hyb = Precoder::Hybrid { f, d };
        let bp = Precoder::BeamsPowers { beams: array![[c(1.0)], [c(0.0)]], powers: array![4.0] };
        assert_eq!(hyb.effective().unwrap(), bp.effective().unwrap());
        assert!((bp.total_power().unwrap() - 4.0).abs() < 1e-12);
        let bad = Precoder::BeamsPowers { beams: array![[c(1.0)]], powers: array![-1.0] };
        assert!(bad.effective().is_err());
    }
}

/// Derives an independent 64-bit seed from a base seed and a path of indices (e.g. `[point,
/// sample]`), by SplitMix64 mixing. The result depends only on its arguments, never on thread
/// count or evaluation order, which is what makes parallel Monte-Carlo runs reproducible.
#[must_use]
pub fn derive_seed(base: u64, path: &[u64]) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    path.iter().fold(mix(base), |acc, &p| mix(acc ^ mix(p.wrapping_add(0x632B_E59B_D9B4_E019))))
}

#[cfg(test)]
mod seed_tests {
    #[test]
    fn derived_seeds_differ_and_repeat() {
        let a = super::derive_seed(1, &[0, 0]);
        assert_eq!(a, super::derive_seed(1, &[0, 0]));
        assert_ne!(a, super::derive_seed(1, &[0, 1]));
        assert_ne!(a, super::derive_seed(1, &[1, 0]));
        assert_ne!(a, super::derive_seed(2, &[0, 0]));
        assert_ne!(super::derive_seed(1, &[0]), super::derive_seed(1, &[0, 0]));
    }
}

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
