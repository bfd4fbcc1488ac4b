//! # beamlab-liquid-nn
//!
//! Liquid neural networks (Hasani et al.; §3 of the LNN telecom survey) for beamlab's learned
//! beamformers, on candle through [`beamlab_candle_bridge`] (the one shared place for candle
//! plumbing: variables, optimisers, checkpoints).
//!
//! ## The big picture
//!
//! - [`wiring`]: who talks to whom. A [`Wiring`] maps `n_inputs` sensory inputs through layers of
//!   neurons; [`ncp`] / [`auto_ncp`] build the sparse four-stage neural circuit policy
//!   (sensory → inter → command → motor, seeded), [`fully_connected`] the dense alternative.
//! - [`cfc`]: the closed-form continuous-time cell [`WiredCfc`] (ncps' `WiredCfCCell`, modes
//!   default / no-gate / pure), one masked CfC layer per wiring layer.
//! - [`ltc`]: the liquid time-constant cell [`WiredLtc`] with the fused semi-implicit ODE solver.
//! - [`sequence`]: the [`RecurrentCell`] trait and a [`SequenceRunner`] that feeds a `[T, n_inputs]`
//!   sequence one row per step and carries the (detached) state across calls.
//! - [`checkpoint`]: [`save`] / [`load`] of a model's variables (strict safetensors through the
//!   bridge).
//! - [`predict`]: channel prediction (survey §7.1, Fig. 4) on the random-walk channel — LTC, CfC,
//!   LSTM, GRU and MLP predictors against last-value and linear extrapolation, offline training,
//!   NMSE / MRT-rate metrics and the [`PredictionExperiment`] built from [`PredictionParams`]
//!   (see `docs/prediction.md`).
//! - [`glnn`]: the online GLNN beamformer [`Glnn`] ([`GlnnParams`]; [`Variant`] selects the
//!   paper's GLNN or beamlab's GLNN+, [`CellKind`] the wired CfC or the LSTM baseline). Its
//!   learned baseline LAGD is `beamlab_baselines::Lagd`.
//!
//! Wirings, both cells, the runner and checkpoints are gradient-checked against finite
//! differences.
//!
//! Everything is `f64` on the CPU; every random choice takes a seed.
//!
//! ## State layout
//!
//! Neurons are numbered layer by layer (NCP: inter, command, motor); a state tensor is
//! `[batch, units]` in that order, and the outputs are the first `n_outputs` neurons of the last
//! layer (NCP: the motor layer).
//!
//! ## Example
//!
//! The GLNN network (AutoNCP with 8 inputs, 30 units, 8 outputs, sparsity 0.5) on a 3-step
//! sequence:
//!
//! ```
//! use beamlab_candle_bridge::candle_core::{DType, Device, Tensor};
//! use beamlab_candle_bridge::candle_nn::VarMap;
//! use beamlab_candle_bridge::seeded_var_builder;
//! use beamlab_liquid_nn::{CfcMode, SequenceRunner, WiredCfc, auto_ncp};
//!
//! # fn main() -> Result<(), beamlab_liquid_nn::LiquidError> {
//! let wiring = auto_ncp(8, 30, 8, 0.5, 7)?;
//! let vars = VarMap::new();
//! let vb = seeded_var_builder(&vars, 7, DType::F64, &Device::Cpu);
//! let cell = WiredCfc::new(&wiring, CfcMode::Default, vb.pp("cfc"))?;
//! assert_eq!(cell.n_parameters(), 2568);
//! let mut runner = SequenceRunner::new(cell)?;
//! let seq = Tensor::ones((3, 8), DType::F64, &Device::Cpu)?;
//! let out = runner.run(&seq, 1.0)?;
//! assert_eq!(out.dims(), &[3, 8]);
//! assert_eq!(runner.state().dims(), &[1, 30]);
//! # Ok(())
//! # }
//! ```

pub mod cfc;
pub mod checkpoint;
pub mod lstm;
pub mod ltc;
pub mod predict;
pub mod sequence;
pub mod wiring;

#[cfg(test)]
mod test_util;

pub mod glnn;

pub use cfc::{CfcMode, WiredCfc};
pub use checkpoint::{load, save};
pub use glnn::{CellKind, Glnn, GlnnParams, Variant};
pub use lstm::Lstm;
pub use ltc::{LtcConfig, WiredLtc};
pub use predict::{PredictError, PredictionExperiment, PredictionParams, PredictorKind, prediction_experiment};
pub use sequence::{RecurrentCell, SequenceRunner};
pub use wiring::{Layer, NcpParams, Wiring, auto_ncp, fully_connected, ncp};

/// Errors of the liquid-network crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiquidError {
    /// A hyper-parameter or argument is out of range (wiring sizes, fan-outs, sparsity, ...).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The (estimated) channel is zero everywhere, so no gradient input exists.
    #[error("the channel is zero everywhere")]
    ZeroChannel,
    /// An online method's network was built for another problem size; `reset` it (or build a
    /// new method) before solving problems of the new size.
    #[error(
        "the network was built for N = {built_rows} receive antennas and K = {built_users} users; the problem has N = {rows}, K = {users}"
    )]
    ProblemSizeChanged {
        /// Stacked receive antennas `N` the network was built for.
        built_rows: usize,
        /// Users `K` the network was built for.
        built_users: usize,
        /// `N` of the problem.
        rows: usize,
        /// `K` of the problem.
        users: usize,
    },
    /// A tensor has the wrong shape for the cell.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An error of the candle bridge (checkpoint mismatch, ...).
    #[error(transparent)]
    Bridge(#[from] beamlab_candle_bridge::BridgeError),
    /// An error from candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// An error of the problem / beamformer layer.
    #[error(transparent)]
    Core(#[from] beamlab_core::CoreError),
    /// A linear-algebra failure.
    #[error(transparent)]
    Linalg(#[from] beamlab_linalg_ops::LinalgError),
}

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
