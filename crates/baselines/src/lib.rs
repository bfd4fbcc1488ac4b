//! # beamlab-baselines
//!
//! Classical precoders that every paper in beamlab compares against, for downlink MU-MIMO with
//! `K` users, `M` transmit antennas and `N_k ≥ 1` receive antennas per user (one stream each):
//!
//! - [`mrt`]: maximum-ratio transmission (dominant eigenmode per user, equal power);
//! - [`zf`]: zero-forcing by block diagonalisation (no interference at any receive antenna);
//! - [`rzf`]: regularised zero-forcing on the eigenmode-combined channel;
//! - [`wmmse()`]: weighted MMSE (Shi et al. 2011) with bisection on the power multiplier;
//! - [`BestOf`]: the best of several methods over many random starts (the GLNN paper's upper bound);
//! - [`lagd()`]: LAGD, a fresh gradient-fed linear network trained per problem (the learned
//!   baseline of the GLNN and MB-MAML papers; [`LagdSpace`] picks the precoder or base-matrix form).
//!
//! Each is a plain function on a [`Problem`] and also a [`Beamformer`] ([`Mrt`], [`Zf`], [`Rzf`],
//! [`Wmmse`], [`Lagd`]) for the runner. All outputs use the full power budget, `‖W‖_F² = P`.
//!
//! The [`hybrid`] module adds hybrid analog–digital baselines for MU-MISO (`W = F D`, unit-modulus
//! analog `F: [N × M]`, `M` RF chains, `K ≤ M ≤ N`): [`mo_altmin()`] (Yu et al. 2016),
//! [`hybrid_wmmse_mo()`] (WMMSE with manifold CG), [`element_altmax()`] (Sohrabi & Yu 2016) and
//! [`mm_altmin()`] (majorisation–minimisation), with [`Beamformer`]s [`MoAltMin`], [`HybridWmmseMo`],
//! [`ElementAltMax`] and [`MmAltMin`] returning [`Precoder::Hybrid`] at full power.
//!
//! ```
//! use beamlab_baselines::{Wmmse, WmmseParams, zf};
//! use beamlab_core::{Beamformer, Channel, Problem};
//! use beamlab_linalg_ops::c64;
//! use ndarray::Array2;
//! use rand::SeedableRng;
//! let h = Channel::new(vec![
//!     Array2::from_shape_fn((1, 4), |(_, j)| c64::new(1.0, j as f64)),
//!     Array2::from_shape_fn((1, 4), |(_, j)| c64::new((j * j) as f64, 1.0)),
//! ]).unwrap();
//! let problem = Problem::new(h, 1.0, 10.0).unwrap();
//! let w_zf = zf(&problem).unwrap();
//! let mut wmmse = Wmmse::new(WmmseParams::default());
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
//! let sol = wmmse.solve(&problem, &mut rng).unwrap();
//! let rates_zf = beamlab_linalg_ops::user_rates(problem.channel.blocks(), w_zf.view(), &problem.noise_power).unwrap();
//! let rates_wmmse = sol.precoder.rates(&problem.channel, &problem.noise_power).unwrap();
//! assert!(rates_wmmse.sum() >= rates_zf.sum() - 1e-6);
//! ```

use std::time::Instant;

use beamlab_core::{Beamformer, CoreError, Diagnostics, Precoder, Problem, Solution};
use beamlab_linalg_ops::LinalgError;
use ndarray::Array2;

mod best_of;
pub mod hybrid;
mod lagd;
mod linear;
mod wmmse;

pub use best_of::BestOf;
pub use hybrid::{
    DigitalTarget, ElementAltMax, ElementAltMaxParams, HybridOutput, HybridWmmseMo, HybridWmmseMoParams, MmAltMin,
    MmAltMinParams, MoAltMin, MoAltMinParams, PowerAllocation, element_altmax, hybrid_wmmse_mo, mm_altmin, mo_altmin,
};
pub use lagd::{Lagd, LagdOutput, LagdParams, LagdSpace, lagd};
pub use linear::{matched_filter, mrt, rzf, zf};
pub use wmmse::{WmmseInit, WmmseParams, wmmse};

/// Errors of the classical precoders.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    /// The problem is malformed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// A linear-algebra failure.
    #[error(transparent)]
    Linalg(#[from] LinalgError),
    /// A user's channel is identically zero, so no beam direction exists.
    #[error("user {user} has an all-zero channel")]
    ZeroChannel {
        /// The user.
        user: usize,
    },
    /// The method cannot serve this configuration (e.g. ZF with more streams than antennas).
    #[error("infeasible: {0}")]
    Infeasible(String),
    /// A hyper-parameter is out of range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The iteration broke down numerically.
    #[error("numerical breakdown: {0}")]
    Numerical(String),
    /// A hybrid precoder needs `1 ≤ K ≤ n_rf ≤ N` RF chains.
    #[error(
        "hybrid precoding needs n_users <= n_rf <= n_tx_antennas, got n_rf = {n_rf}, n_users = {n_users}, \
         n_tx_antennas = {n_tx_antennas}"
    )]
    RfChains {
        /// Requested RF chains `M`.
        n_rf: usize,
        /// Users `K`.
        n_users: usize,
        /// Transmit antennas `N`.
        n_tx_antennas: usize,
    },
}

impl From<BaselineError> for CoreError {
    fn from(e: BaselineError) -> Self {
        match e {
            BaselineError::Core(c) => c,
            BaselineError::Linalg(l) => CoreError::Linalg(l),
            BaselineError::Infeasible(s) => CoreError::Infeasible(s),
            BaselineError::ZeroChannel { user } => {
                CoreError::InvalidProblem(format!("user {user} has an all-zero channel"))
            }
            other => CoreError::Method { method: "baseline".into(), source: Box::new(other) },
        }
    }
}

fn closed_form(
    problem: &Problem,
    f: impl FnOnce(&Problem) -> Result<Array2<beamlab_linalg_ops::c64>, BaselineError>,
) -> Result<Solution, CoreError> {
    let start = Instant::now();
    let w = f(problem)?;
    Ok(Solution {
        precoder: Precoder::Digital { w },
        diagnostics: Diagnostics { n_iterations: 1, converged: true, elapsed: start.elapsed(), ..Default::default() },
    })
}

/// [`mrt`] as a [`Beamformer`].
#[derive(Clone, Debug, Default)]
pub struct Mrt;

impl Beamformer for Mrt {
    fn name(&self) -> &str {
        "MRT"
    }
    fn solve(&mut self, problem: &Problem, _rng: &mut dyn rand::RngCore) -> Result<Solution, CoreError> {
        closed_form(problem, mrt)
    }
}

/// [`zf`] as a [`Beamformer`].
#[derive(Clone, Debug, Default)]
pub struct Zf;

impl Beamformer for Zf {
    fn name(&self) -> &str {
        "ZF"
    }
    fn solve(&mut self, problem: &Problem, _rng: &mut dyn rand::RngCore) -> Result<Solution, CoreError> {
        closed_form(problem, zf)
    }
}

/// [`rzf`] as a [`Beamformer`]; `alpha = None` uses `K σ̄²/P`.
#[derive(Clone, Debug, Default)]
pub struct Rzf {
    /// Regularisation `α`.
    pub alpha: Option<f64>,
}

impl Beamformer for Rzf {
    fn name(&self) -> &str {
        "RZF"
    }
    fn solve(&mut self, problem: &Problem, _rng: &mut dyn rand::RngCore) -> Result<Solution, CoreError> {
        closed_form(problem, |p| rzf(p, self.alpha))
    }
}

/// [`wmmse()`] as a [`Beamformer`].
#[derive(Clone, Debug, Default)]
pub struct Wmmse {
    /// Hyper-parameters.
    pub params: WmmseParams,
}

impl Wmmse {
    /// A WMMSE beamformer with the given hyper-parameters.
    #[must_use]
    pub fn new(params: WmmseParams) -> Self {
        Self { params }
    }
}

impl Beamformer for Wmmse {
    fn name(&self) -> &str {
        "WMMSE"
    }
    fn solve(&mut self, problem: &Problem, rng: &mut dyn rand::RngCore) -> Result<Solution, CoreError> {
        let (w, diagnostics) = wmmse(problem, &self.params, rng)?;
        Ok(Solution { precoder: Precoder::Digital { w }, diagnostics })
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    use beamlab_core::{Channel, Problem};
    use beamlab_linalg_ops::c64;
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    /// A Rayleigh problem with unit noise and power `p` (so the SNR is `p`).
    pub fn problem(m: usize, k: usize, nk: usize, p: f64, seed: u64) -> Problem {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let blocks = (0..k)
            .map(|_| {
                Array2::from_shape_fn((nk, m), |_| {
                    let re: f64 = StandardNormal.sample(&mut rng);
                    let im: f64 = StandardNormal.sample(&mut rng);
                    c64::new(re, im) * std::f64::consts::FRAC_1_SQRT_2
                })
            })
            .collect();
        Problem::new(Channel::new(blocks).expect("valid"), 1.0, p).expect("valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn wmmse_beats_zf_and_mrt_on_average_at_mid_snr() {
        let (mut s_w, mut s_z, mut s_m) = (0.0, 0.0, 0.0);
        for seed in 0..20 {
            let p = testutil::problem(16, 4, 2, 10.0, 100 + seed);
            let rate = |w: &Array2<beamlab_linalg_ops::c64>| {
                beamlab_linalg_ops::user_rates(p.channel.blocks(), w.view(), &p.noise_power).unwrap().sum()
            };
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            s_w += rate(&wmmse(&p, &WmmseParams::default(), &mut rng).unwrap().0);
            s_z += rate(&zf(&p).unwrap());
            s_m += rate(&mrt(&p).unwrap());
        }
        assert!(s_w > s_z && s_w > s_m, "WMMSE {s_w} ZF {s_z} MRT {s_m}");
    }

    #[test]
    fn beamformers_are_object_safe_and_map_errors() {
        let mut methods: Vec<Box<dyn Beamformer>> =
            vec![Box::new(Mrt), Box::new(Zf), Box::new(Rzf::default()), Box::new(Wmmse::default())];
        let p = testutil::problem(3, 4, 1, 1.0, 0);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for m in &mut methods {
            let r = m.solve(&p, &mut rng);
            if m.name() == "ZF" {
                assert!(matches!(r, Err(CoreError::Infeasible(_))));
            } else {
                let s = r.unwrap();
                assert!((s.precoder.total_power().unwrap() - 1.0).abs() < 1e-9);
            }
        }
    }
}

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
