//! # beamlab-meta-learn
//!
//! MB-MAML offline-online robust beamforming (spec `mbmaml-offline-online.md`): a covariance
//! network shared across users predicts each user's CSI-error covariance from the sample mean of
//! `N` noisy channel samples; the prediction, combined with the sample covariance, drives an
//! unrolled, differentiable robust WMMSE; the network is meta-learned offline over several bases
//! (MB-MAML) and adapted online per coherence block.
//!
//! ## Layers (each module uses only the ones above it in this list)
//!
//! - [`error`]: the error type [`MetaLearnError`];
//! - `iteration`: one robust WMMSE update in split layout, the one implementation the classical
//!   loop and the learned method's unrolled loop share;
//! - [`wmmse`]: the system parameters and the classical baselines as plain functions — robust
//!   WMMSE with a known covariance, WMMSE on `h̄`, SAA stochastic WMMSE — and
//!   [`RobustWmmseBeamformer`] (the LAGD baseline is `beamlab_baselines::lagd`, precoder form);
//! - [`covnet`]: the covariance network's configuration, heads, parameter layout and the block
//!   type [`Task`];
//! - [`fast`]: the production path — network → head → fusion → `T` unrolled robust WMMSE
//!   iterations → sum-rate loss, forward and reverse by hand in plain `f64`;
//! - [`maml`]: MB-MAML meta-training ([`MbMaml`]), plain MAML and the online adaptation;
//! - [`experiment`]: the paper's Figs 4–8 as a [`beamlab_core::experiment::FamilyExperiment`].
//!
//! The tests hold a second implementation of the learned model, the composed candle graph with
//! candle's autograd (module `oracle`, compiled for tests only); every value and gradient entry
//! of the fast path is checked against it to 1e-9, and the graph against finite differences.
//! `docs/mbmaml.md` has the decisions and the results.
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
pub mod error;
pub mod experiment;
pub mod fast;
mod iteration;
pub mod maml;
#[cfg(test)]
mod oracle;
pub mod wmmse;

pub use covnet::{CovHead, CovNet, CovNetConfig, Params, Task};
pub use error::MetaLearnError;
pub use maml::{Adapted, BasisSelection, MbMaml, MbMamlConfig, MetaGradient, QuerySchedule};
pub use wmmse::{RobustWmmseBeamformer, SystemParams};

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
