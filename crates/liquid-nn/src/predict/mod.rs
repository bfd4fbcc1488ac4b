//! Channel prediction with liquid networks (LNN telecom survey §7.1, Fig. 4; Yin et al., VTC 2021).
//!
//! # System
//! A single-antenna user on a random walk around an `M`-antenna BS (the random-walk model of
//! `beamlab_channel::random_walk`: 6 GHz, `M = 4`, 2 m/s). The transmitter sees the fed-back CSI
//! `ĥ_t: [M]` once per sample period; from the last `W = 20` samples (`history: [W, M]`) a
//! predictor outputs the next `H` channels (`[H, M]`, `H = 5` in the survey, up to 10 for the
//! horizon figure), directly (one read-out for all `H` steps, no feedback of predictions).
//!
//! # Predictors ([`PredictorKind`])
//! - trivial: [`LastValue`] (`ĥ_{t+k} = ĥ_t`, the outdated-CSI baseline) and
//!   [`LinearExtrapolation`] (`ĥ_{t+k} = ĥ_t + k (ĥ_t − ĥ_{t−1})`);
//! - learned ([`LearnedPredictor`]): LTC ([`WiredLtc`](crate::WiredLtc)), CfC
//!   ([`WiredCfc`](crate::WiredCfc)), LSTM ([`Lstm`](crate::Lstm)), GRU ([`Gru`]) — each fed the
//!   `W` normalised samples as `2M` real features per step, its final output read out by a linear
//!   head to `H × 2M` values — and an MLP on the flattened window.
//!
//! Learned models work on normalised windows ([`WindowTransform`]): the window is divided by its
//! RMS and rotated so that the last sample's first entry is real and positive; predictions are
//! mapped back. The head predicts the change relative to the last sample (a residual connection),
//! so an untrained model starts near the last-value predictor.
//!
//! # Pieces
//! - [`data`]: windows, normalisation, data sets from random-walk trajectories;
//! - [`predictors`]: the [`ChannelPredictor`] trait, the trivial predictors and the learned models;
//! - [`gru`]: the GRU cell;
//! - [`train`]: offline training (Adam, minibatches, fixed epochs, seeded);
//! - [`metrics`]: NMSE per prediction step and the MRT spectral-efficiency loss;
//! - [`experiment`]: [`PredictionParams`] and the [`PredictionExperiment`] for the harness.
//!
//! Decisions and measured results: `docs/prediction.md`.
//!
//! ```
//! use beamlab_liquid_nn::predict::{ChannelPredictor, LinearExtrapolation};
//! use beamlab_linalg_ops::c64;
//! use ndarray::Array2;
//! // h_t = 1 + 0.1 t j on every antenna: linear extrapolation is exact.
//! let history = Array2::from_shape_fn((20, 4), |(t, _)| c64::new(1.0, 0.1 * t as f64));
//! let p = LinearExtrapolation::new(20, 3)?;
//! let future = p.predict(history.view())?;
//! assert!((future[[2, 0]] - c64::new(1.0, 2.2)).norm() < 1e-12);
//! # Ok::<(), beamlab_liquid_nn::predict::PredictError>(())
//! ```

pub mod data;
pub mod experiment;
pub mod gru;
pub mod metrics;
pub mod predictors;
pub mod train;

pub use data::{PredictionData, WindowTransform, generate_data, windows_from_trajectory};
pub use experiment::{PredictionExperiment, PredictionParams, prediction_experiment};
pub use gru::Gru;
pub use metrics::{PredictionMetrics, evaluate, mrt_rate, nmse_per_step};
pub use predictors::{ChannelPredictor, LastValue, LearnedPredictor, LinearExtrapolation, ModelConfig, PredictorKind};
pub use train::{TrainConfig, TrainReport, train_predictor};

/// Errors of channel prediction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PredictError {
    /// A parameter is out of range (zero window or horizon, zero batch, bad learning rate, ...).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// An input has the wrong shape (history shorter than the window, wrong antenna count, ...).
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An input holds NaN or infinite values.
    #[error("non-finite input: {0}")]
    NonFinite(String),
    /// Training diverged (non-finite loss or parameters).
    #[error("training diverged: {0}")]
    Diverged(String),
    /// An error of the channel model.
    #[error(transparent)]
    Channel(#[from] beamlab_channel::ChannelError),
    /// An error of a cell or wiring.
    #[error(transparent)]
    Liquid(#[from] crate::LiquidError),
    /// An error of the candle bridge.
    #[error(transparent)]
    Bridge(#[from] beamlab_candle_bridge::BridgeError),
    /// An error from candle.
    #[error("candle: {0}")]
    Candle(#[from] beamlab_candle_bridge::candle_core::Error),
}
