//! # beamlab-kan
//!
//! Kolmogorov–Arnold networks (KAN) in candle, and the GGML / GGML-ImCSI hybrid precoders that
//! embed them (spec `ggml-kan.md`; docs/kan.md and docs/ggml.md).
//!
//! ## The big picture
//! - `bspline` (internal): B-spline bases on any knot vector (Cox–de Boor) and a candle op that evaluates
//!   every input's bases in one pass, with a hand-written backward.
//! - [`layer`]: [`KanLayer`], `φ(x) = w_b silu(x) + s · Σ_j c_j B_j(x)` on every edge, batched as
//!   two matrix products; grid update with a least-squares re-fit.
//! - [`net`]: the [`GradientNet`] trait with [`KanNet`] (multi-layer KAN) and [`Mlp`], trained with
//!   `beamlab_candle_bridge::VarAdam`; checkpoints through `beamlab-candle-bridge`.
//! - [`ggml`]: [`Ggml`], the gradient-guided meta-learning hybrid precoder (`F: [N × M]` unit
//!   modulus, `D: [M × K]`, `‖FD‖_F² = P`), solved per problem with fresh networks.
//! - [`imcsi`]: [`GgmlImcsi`], the worst-case robust variant for relative CSI error `δ`.
//! - [`cnn`]: [`CnnHybrid`], an offline-trained CNN hybrid precoder (stand-in for the paper's
//!   CNN baseline).
//! - [`experiment`]: [`convergence_experiment`], SE-vs-step traces (paper Figs. 4 and 7) as a
//!   `FamilyExperiment`.
//!
//! Gradients: the rate-loss gradients (the networks' inputs, and `∂L/∂W*` at the iterate) are
//! linalg-ops' analytic Wirtinger gradients; candle differentiates only through the networks,
//! the unit-modulus projection and the power normalisation (the analytic gradient is injected
//! with `beamlab_candle_bridge::wirtinger_surrogate`).
//!
//! ```
//! use beamlab_channel::{SvParams, saleh_valenzuela};
//! use beamlab_core::{Beamformer, Precoder, Problem};
//! use beamlab_kan::{Ggml, GgmlParams, NetKind};
//! use rand::SeedableRng;
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
//! let h = saleh_valenzuela(&SvParams::default(), 2, 16, &mut rng)?;
//! let problem = Problem::new(h, 0.1, 1.0)?; // SNR 10 dB, P = 1
//! let params = GgmlParams { net: NetKind::Mlp, n_steps: 60, hidden: 32, ..GgmlParams::default() };
//! let sol = Ggml::new(params)?.solve(&problem, &mut rng)?;
//! let Precoder::Hybrid { f, d } = &sol.precoder else { unreachable!() };
//! assert_eq!((f.dim(), d.dim()), ((16, 2), (2, 2))); // M = K RF chains by default
//! assert!(f.iter().all(|z| (z.norm() - 1.0).abs() < 1e-12));
//! assert!((sol.precoder.total_power()? - 1.0).abs() < 1e-10);
//! let trace = &sol.diagnostics.objective_trace; // per-user SE, entry 0 = ZF init
//! assert!(trace[60] > trace[0]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bspline;
pub mod cnn;
pub mod experiment;
pub mod ggml;
pub mod imcsi;
pub mod layer;
pub mod net;

pub use cnn::{CnnDigital, CnnHybrid, CnnParams};
pub use experiment::{ConvergenceExperiment, ConvergenceParams, ReferenceFactory, convergence_experiment};
pub use ggml::{
    Ggml, GgmlOutput, GgmlParams, GradientInput, HybridSetup, InputScaling, Objective, OutputChoice, Precision,
    StepBase, random_phase_analog, run_ggml, zf_digital,
};
pub use imcsi::{GgmlImcsi, ImcsiParams, error_bounds, norm_quantile, worst_case_channel, worst_case_setup};
pub use layer::{KanConfig, KanLayer};
pub use net::{GradientNet, KanNet, Mlp, NetKind};

use beamlab_candle_bridge::BridgeError;
use beamlab_core::CoreError;
use beamlab_linalg_ops::LinalgError;

/// An [`KanError::InvalidParameter`] for `name`.
pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> KanError {
    KanError::InvalidParameter { name, reason: reason.into() }
}

/// Errors of the KAN / GGML crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KanError {
    /// A hyper-parameter is out of range.
    #[error("invalid parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter (field) concerned.
        name: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A network input of the wrong width.
    #[error("{what} expects {expected} inputs, got {found}")]
    InputWidth {
        /// The network or layer.
        what: &'static str,
        /// Its input width.
        expected: usize,
        /// The width given.
        found: usize,
    },
    /// Shapes do not agree (a model used on a problem of another size, a variable missing from
    /// its map).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A user with several receive antennas: GGML, GGML-ImCSI and the CNN are MISO methods.
    #[error("user {user} has {n_rx} receive antennas; this method handles single-antenna users only")]
    MultiAntennaUser {
        /// The user.
        user: usize,
        /// Its receive antennas.
        n_rx: usize,
    },
    /// A channel entry is not finite, or (for the worst-case conversion) a channel is zero.
    #[error("a channel is zero or has a non-finite entry")]
    DegenerateChannel,
    /// The user weights sum to zero.
    #[error("user weights sum to zero")]
    ZeroUserWeights,
    /// The channel generator failed (CNN training data).
    #[error(transparent)]
    Channel(#[from] beamlab_channel::ChannelError),
    /// Fewer RF chains than users: a hybrid precoder cannot serve every user.
    #[error("{n_rf} RF chains cannot serve {n_users} users (need n_rf >= n_users)")]
    TooFewRfChains {
        /// `M`.
        n_rf: usize,
        /// `K`.
        n_users: usize,
    },
    /// More RF chains than antennas.
    #[error("{n_rf} RF chains exceed the {n_tx} antennas (need n_rf <= n_tx)")]
    TooManyRfChains {
        /// `M`.
        n_rf: usize,
        /// `N`.
        n_tx: usize,
    },
    /// The method needs CSI error statistics that the problem does not carry.
    #[error("missing CSI error statistics: {0}")]
    MissingErrorStats(String),
    /// The zero-forcing initialisation has zero or non-finite power (`H F_0` rank deficient).
    #[error("zero-forcing initialisation has zero or non-finite power")]
    DegenerateZfInit,
    /// A KAN grid update got fewer than two samples or a non-finite one.
    #[error("grid update needs at least 2 finite samples ({found} given, finite: {finite})")]
    GridSamples {
        /// Samples given.
        found: usize,
        /// Whether all of them were finite.
        finite: bool,
    },
    /// The least-squares re-fit of a grid update is singular.
    #[error("grid update: singular least-squares system")]
    SingularGridRefit,
    /// candle failure.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// Bridge failure (checkpoints, complex tensors).
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    /// Linear-algebra failure.
    #[error(transparent)]
    Linalg(#[from] LinalgError),
    /// Core failure.
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
