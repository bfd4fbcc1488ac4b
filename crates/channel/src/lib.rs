//! # beamlab-channel
//!
//! Seeded channel models, CSI error models and `.npy` channel IO for beamlab.
//!
//! ## The big picture
//!
//! Every model produces a validated [`beamlab_core::Channel`], i.e. per-user blocks
//! `H_k: [N_k × M]` (receive antennas × transmit antennas), and draws all of its randomness from
//! an `rng` passed in by the caller, so a seeded `ChaCha8Rng` (for instance one seeded with
//! [`beamlab_core::derive_seed`]) makes every draw reproducible.
//!
//! - [`rayleigh()`]: i.i.d. Rayleigh MU-MIMO, entries `CN(0, 1)`;
//! - [`saleh_valenzuela()`]: the clustered mmWave ULA MISO channel of GGML
//!   (`N_c` clusters × `N_ray` Laplacian rays, `E‖h_k‖² = M`);
//! - [`StreetCanyon`]: users moving in a street canyon (image-method LoS, wall, wall–wall and
//!   ground reflections with ITU-R P.2040 concrete Fresnel coefficients, fixed point scatterers),
//!   recomputed every slot over a speed schedule — the DeepMIMO O1 substitute for GLNN's dynamic
//!   scenario;
//! - [`uma38901()`]: 3GPP TR 38.901 (v16.1) UMa NLOS narrowband links to a ULA, path loss
//!   removed (`E‖H_k‖² = M N_k`) — the QuaDRiGa substitute for MB-MAML (`docs/channel-38901.md`);
//! - [`random_walk_trajectory`]: a single-antenna user on a random walk in an urban microcell
//!   (6 GHz, 4-antenna BS, geometric paths recomputed every sample) — the channel-prediction
//!   series of the LNN survey (`docs/prediction.md`);
//! - [`awgn_estimate`], [`relative_estimate`] and [`CsiModel`]: imperfect CSI, `Ĥ = H + E`;
//! - [`sample_error_block`]: MB-MAML's unknown-statistics error `R_e = Q Λ Qᴴ` with `N` samples
//!   per block, their mean and sample covariance;
//! - [`write_channels_npy`], [`read_channels_npy`] and their precoder twins: `complex128`
//!   `.npy` IO, so that DeepMIMO / QuaDRiGa / Sionna exports can be used in place of the synthetic
//!   models.
//!
//! ## Current state
//!
//! The synthetic models are honest substitutes for data sets that cannot be downloaded here; they
//! are documented as such and reproduce the statistics stated in their docs, not the data sets.
//! The spatially correlated UPA model, noisy-MMSE estimates and DFT feedback quantisation of the
//! outage paper live in `beamlab-gnn-unroll` (its `data` module); pilot-based LS/LMMSE estimates
//! are not implemented yet.
//!
//! ## Example
//!
//! ```
//! use beamlab_channel::{CsiModel, rayleigh, saleh_valenzuela, SvParams};
//! use rand::SeedableRng;
//! use rand_chacha::ChaCha8Rng;
//!
//! let mut rng = ChaCha8Rng::seed_from_u64(7);
//! // 4 users with 2 receive antennas each, 8 transmit antennas.
//! let h = rayleigh(4, 2, 8, &mut rng)?;
//! assert_eq!((h.n_users(), h.n_tx(), h.n_rx()), (4, 8, vec![2; 4]));
//!
//! // What the transmitter sees at a channel estimation error of -10 dB.
//! let csi = CsiModel::Awgn { cee_db: -10.0 };
//! let h_est = csi.estimate(&h, &mut rng)?;
//! assert_ne!(h_est, h);
//!
//! // A mmWave MISO channel: 3 users with single-antenna receivers, 16 transmit antennas.
//! let g = saleh_valenzuela(&SvParams::default(), 3, 16, &mut rng)?;
//! assert_eq!(g.n_rx(), vec![1; 3]);
//! # Ok::<(), beamlab_channel::ChannelError>(())
//! ```

use std::path::PathBuf;

pub mod csi;
pub mod npy;
pub mod random_walk;
pub mod rayleigh;
pub mod street_canyon;
pub mod sv;
pub mod uma38901;
pub mod unknown_error;

pub use csi::{CsiModel, awgn_estimate, cee_to_variance, relative_estimate};
pub use npy::{read_channels_npy, read_precoders_npy, write_channels_npy, write_precoders_npy};
pub use random_walk::{
    PointScatterer, RandomWalkParams, RandomWalkPath, RandomWalkPathKind, RandomWalkScene, RandomWalkTrajectory,
    random_walk_trajectory,
};
pub use rayleigh::rayleigh;
pub use street_canyon::{
    Normalisation, PathKind, Polarisation, PropagationPath, Scatterer, StreetCanyon, StreetCanyonParams, UserState,
    Wall, concrete_permittivity, fresnel_reflection,
};
pub use sv::{SvParams, saleh_valenzuela, ula_response};
pub use uma38901::{ElementPattern, Uma38901Params, UmaCluster, UmaLsp, UmaUser, uma38901, uma38901_drop};
pub use unknown_error::{
    EigenProfile, UnknownErrorParams, UserErrorBlock, haar_unitary, sample_error_block, sample_mean_covariance,
};

/// Errors of the channel crate: bad parameters, file-system failures, malformed files, or a
/// channel that the core types reject.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// A model or CSI-error parameter is out of range (zero sizes, negative or non-finite
    /// variances, ...).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The file could not be opened, read, written or renamed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file was read but its content is not what was expected (not `.npy`, wrong dtype,
    /// wrong number of dimensions, empty dimensions, non-finite entries, ...).
    #[error("malformed file {}: {message}", path.display())]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A channel rejected by [`beamlab_core::Channel::new`].
    #[error(transparent)]
    Core(#[from] beamlab_core::CoreError),
}

/// One `CN(0, 1)` sample: real and imaginary parts independent `N(0, 1/2)`.
pub(crate) fn standard_complex_normal<R: rand::Rng + ?Sized>(rng: &mut R) -> num_complex::Complex64 {
    use rand_distr::{Distribution, StandardNormal};
    let re: f64 = StandardNormal.sample(rng);
    let im: f64 = StandardNormal.sample(rng);
    num_complex::Complex64::new(re, im) * std::f64::consts::FRAC_1_SQRT_2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_display_their_context() {
        let e = ChannelError::Format { path: PathBuf::from("/x/h.npy"), message: "bad dtype".into() };
        let s = e.to_string();
        assert!(s.contains("/x/h.npy") && s.contains("bad dtype"), "{s}");
        let e = ChannelError::from(beamlab_core::CoreError::InvalidProblem("no users".into()));
        assert!(e.to_string().contains("no users"));
    }
}

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
