//! # beamlab-meta-learn
//!
//! MB-MAML offline-online robust beamforming (spec `mbmaml-offline-online.md`): a covariance
//! network shared across users predicts each user's CSI-error covariance from the sample mean of
//! `N` noisy channel samples; the prediction, fused with the sample covariance, drives an
//! unrolled, differentiable robust WMMSE; the network is meta-learned offline over several bases
//! (MB-MAML) and adapted online per coherence block.
//!
//! ## The big picture
//!
//! - [`wmmse`]: classical baselines as plain functions — robust WMMSE with a known covariance,
//!   WMMSE on `h̄`, SAA stochastic WMMSE — and [`beamlab_core::Beamformer`] impls;
//! - [`lagd`]: the LAGD baseline (a fresh gradient-fed linear network per problem);
//! - [`solve`]: the real-block linear solve as a candle op with a hand-written adjoint;
//! - [`unrolled`]: the `T`-iteration robust WMMSE and the sum-rate losses as composed candle
//!   graphs (the reference);
//! - [`fused`]: the same `T` iterations as one candle op with a hand-written reverse pass (the
//!   fast path, equal to the reference in values and gradients);
//! - [`fast`]: the whole loss (network → head → fusion → unrolled WMMSE → sum rate) and its
//!   parameter gradient in plain `f64` with a hand-written reverse pass, equal to candle's
//!   autograd to round-off and ~3× faster; used by [`maml`] when `CovNetConfig::fast_grad`;
//! - [`covnet`]: the covariance network with its Hermitian-PSD heads (full rank, SALR), the
//!   fusion with the sample covariance, and the support / query losses;
//! - [`maml`]: MB-MAML meta-training, plain MAML, and the online adaptation;
//! - [`experiment`]: the paper's Figs 4–8 as a [`beamlab_core::experiment::FamilyExperiment`].
//!
//! ## Current state
//!
//! Everything above is implemented and tested (finite-difference checks of every hand-written
//! gradient, PSD of every predicted covariance, MB-MAML with one basis equal to MAML), including
//! the optional second-order meta-gradient (`MbMamlConfig::second_order`), validation-based SALR
//! mask selection (`mask_candidates`) and the ID / OOD-spatial / OOD-strength experiments. The
//! online adaptation (5 steps, Table I network, Mt = 32, K = 4) takes 3.4–4.5 ms per block with
//! one basis on the 2-core test machines, 5.6–7.4 ms with the selection over 8 bases (see
//! `docs/mbmaml.md`, Performance).
//!
//! ## Example
//!
//! ```
//! use beamlab_channel::unknown_error::{haar_unitary, miso_columns, sample_error_block};
//! use beamlab_channel::{rayleigh, UnknownErrorParams};
//! use beamlab_meta_learn::wmmse::{robust_wmmse, wsr, SystemParams, WmmseConfig};
//! use rand::SeedableRng;
//!
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
//! let h = rayleigh(4, 1, 8, &mut rng)?;
//! let q = haar_unitary(8, &mut rng)?;
//! let block = sample_error_block(&h, &q, &UnknownErrorParams::default(), &mut rng)?;
//! let h_bar: Vec<_> = block.iter().map(|u| u.sample_mean.clone()).collect();
//! let r_s: Vec<_> = block.iter().map(|u| u.sample_covariance.clone()).collect();
//! let sys = SystemParams::uniform(4, 0.01, 1.0);
//! let out = robust_wmmse(&h_bar, Some(&r_s), &sys, &WmmseConfig::default())?;
//! let rate = wsr(&miso_columns(&h)?, &out.v, &sys)?;
//! assert!(rate > 0.0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod covnet;
pub mod experiment;
pub mod fast;
pub mod fused;
pub mod lagd;
pub mod maml;
pub mod solve;
pub mod unrolled;
pub mod wmmse;

/// Errors of the meta-learning crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaLearnError {
    /// A configuration parameter is out of range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// Input data with bad shapes or non-finite entries.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A user-supplied covariance has a negative eigenvalue.
    #[error("covariance of user {user} is not PSD (min eigenvalue {min_eigenvalue:e})")]
    NotPsd {
        /// The user.
        user: usize,
        /// Its most negative eigenvalue.
        min_eigenvalue: f64,
    },
    /// A singular system in the differentiable solve.
    #[error("singular system in the differentiable solve (pivot {pivot})")]
    Singular {
        /// Index of the zero pivot.
        pivot: usize,
    },
    /// Training or adaptation produced non-finite values.
    #[error("non-finite values: {0}")]
    NonFinite(String),
    /// Linear algebra.
    #[error(transparent)]
    Linalg(#[from] beamlab_linalg_ops::LinalgError),
    /// Channel / error model.
    #[error(transparent)]
    Channel(#[from] beamlab_channel::ChannelError),
    /// candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The candle bridge.
    #[error(transparent)]
    Bridge(#[from] beamlab_candle_bridge::BridgeError),
}
