//! Channel predictors: the [`ChannelPredictor`] trait, the trivial predictors and the learned
//! models.
//!
//! Every predictor maps the last `W` rows of a history `[≥ W, M]` to `H` predicted rows `[H, M]`.
//!
//! # Learned models ([`LearnedPredictor`])
//! The window is normalised ([`WindowTransform`]) to features `x_t: [2M]`, `t = 0 … W−1`.
//! - Recurrent (LTC, CfC, LSTM, GRU): the cell runs over `x_0 … x_{W−1}` from a zero state with
//!   elapsed time 1 per step; its final output `o: [n_out]` is read out by a linear head.
//!   LTC and CfC use a fully connected wiring of `hidden` neurons, all of them outputs
//!   ([`fully_connected`]`(2M, hidden, hidden)`), CfC in its default
//!   (gated) mode, LTC with `ode_unfolds` semi-implicit sub-steps; LSTM and GRU have `hidden`
//!   units.
//! - MLP: `[x_0, …, x_{W−1}]: [2MW]` → `tanh` layer of `hidden` → `tanh` layer of `hidden` → head.
//!
//! Head: `y = o A^T + b: [H · 2M]` (step-major: entries `k·2M … (k+1)·2M − 1` are step `k+1`), and
//! the prediction is `x_{W−1} + y_k` for every step `k` (residual on the last sample), mapped back
//! through the window transform.

use beamlab_candle_bridge::candle_core::{DType, Device, Tensor};
use beamlab_candle_bridge::candle_nn::{self, Module, VarMap};
use beamlab_candle_bridge::seeded_var_builder;
use beamlab_linalg_ops::c64;
use ndarray::{Array2, ArrayView2};

use super::PredictError;
use super::data::{WindowTransform, last_window};
use super::gru::Gru;
use crate::cfc::{CfcMode, WiredCfc};
use crate::lstm::Lstm;
use crate::ltc::{LtcConfig, WiredLtc};
use crate::sequence::RecurrentCell;
use crate::wiring::fully_connected;

/// The predictors of the study.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictorKind {
    /// Outdated CSI: `ĥ_{t+k} = ĥ_t`.
    LastValue,
    /// Two-point linear extrapolation.
    Linear,
    /// MLP on the flattened window.
    Mlp,
    /// LSTM.
    Lstm,
    /// GRU.
    Gru,
    /// Closed-form continuous-time network.
    Cfc,
    /// Liquid time-constant network.
    Ltc,
}

impl PredictorKind {
    /// Every kind, trivial ones first.
    pub const ALL: [Self; 7] = [Self::LastValue, Self::Linear, Self::Mlp, Self::Lstm, Self::Gru, Self::Cfc, Self::Ltc];

    /// The series name in results and figures (`LTC`, `last value`, ...).
    #[must_use]
    pub fn display_name(self) -> &'static str {
        match self {
            Self::LastValue => "last value",
            Self::Linear => "linear extrapolation",
            Self::Mlp => "MLP",
            Self::Lstm => "LSTM",
            Self::Gru => "GRU",
            Self::Cfc => "CfC",
            Self::Ltc => "LTC",
        }
    }

    /// Configuration name (`ltc`, `last_value`, ...).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::LastValue => "last_value",
            Self::Linear => "linear",
            Self::Mlp => "mlp",
            Self::Lstm => "lstm",
            Self::Gru => "gru",
            Self::Cfc => "cfc",
            Self::Ltc => "ltc",
        }
    }

    /// Whether the predictor has trainable parameters.
    #[must_use]
    pub fn is_learned(self) -> bool {
        !matches!(self, Self::LastValue | Self::Linear)
    }
}

/// A channel predictor: the last `window` rows of a history `[≥ window, M]` → `[horizon, M]`.
pub trait ChannelPredictor: Send + Sync {
    /// The history length `W` it needs.
    fn window(&self) -> usize;

    /// The number of predicted steps `H`.
    fn horizon(&self) -> usize;

    /// Predicts the next `H` rows from the last `W` rows of `history`.
    ///
    /// # Errors
    /// [`PredictError::Shape`] when `history` has fewer than `W` rows (or the wrong number of
    /// antennas for a learned model), [`PredictError::NonFinite`] for NaN / infinite CSI in the
    /// window; candle errors.
    fn predict(&self, history: ArrayView2<c64>) -> Result<Array2<c64>, PredictError>;

    /// [`predict`](Self::predict) for many histories (a learned model runs them as one batch).
    ///
    /// # Errors
    /// As [`predict`](Self::predict).
    fn predict_batch(&self, histories: &[Array2<c64>]) -> Result<Vec<Array2<c64>>, PredictError> {
        histories.iter().map(|h| self.predict(h.view())).collect()
    }
}

fn check_sizes(window: usize, min_window: usize, horizon: usize) -> Result<(), PredictError> {
    if window < min_window || horizon == 0 {
        return Err(PredictError::InvalidParameter(format!(
            "window = {window} must be >= {min_window} and horizon = {horizon} >= 1"
        )));
    }
    Ok(())
}

/// The outdated-CSI predictor `ĥ_{t+k} = ĥ_t`, `k = 1 … H` (needs `W ≥ 1` samples).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastValue {
    window: usize,
    horizon: usize,
}

impl LastValue {
    /// A last-value predictor demanding `window` samples of history.
    ///
    /// # Errors
    /// [`PredictError::InvalidParameter`] for `window = 0` or `horizon = 0`.
    pub fn new(window: usize, horizon: usize) -> Result<Self, PredictError> {
        check_sizes(window, 1, horizon)?;
        Ok(Self { window, horizon })
    }
}

impl ChannelPredictor for LastValue {
    fn window(&self) -> usize {
        self.window
    }

    fn horizon(&self) -> usize {
        self.horizon
    }

    fn predict(&self, history: ArrayView2<c64>) -> Result<Array2<c64>, PredictError> {
        let w = last_window(history, self.window, None)?;
        let last = w.row(self.window - 1);
        Ok(Array2::from_shape_fn((self.horizon, w.ncols()), |(_, m)| last[m]))
    }
}

/// Two-point linear extrapolation `ĥ_{t+k} = ĥ_t + k (ĥ_t − ĥ_{t−1})` (needs `W ≥ 2`); exact on
/// channels linear in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinearExtrapolation {
    window: usize,
    horizon: usize,
}

impl LinearExtrapolation {
    /// A linear extrapolator demanding `window ≥ 2` samples of history.
    ///
    /// # Errors
    /// [`PredictError::InvalidParameter`] for `window < 2` or `horizon = 0`.
    pub fn new(window: usize, horizon: usize) -> Result<Self, PredictError> {
        check_sizes(window, 2, horizon)?;
        Ok(Self { window, horizon })
    }
}

impl ChannelPredictor for LinearExtrapolation {
    fn window(&self) -> usize {
        self.window
    }

    fn horizon(&self) -> usize {
        self.horizon
    }

    fn predict(&self, history: ArrayView2<c64>) -> Result<Array2<c64>, PredictError> {
        let w = last_window(history, self.window, None)?;
        let (last, prev) = (w.row(self.window - 1), w.row(self.window - 2));
        Ok(Array2::from_shape_fn((self.horizon, w.ncols()), |(k, m)| last[m] + (last[m] - prev[m]) * (k + 1) as f64))
    }
}

/// Architecture of a learned predictor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelConfig {
    /// Which model (must be learned).
    pub kind: PredictorKind,
    /// History length `W`.
    pub window: usize,
    /// Predicted steps `H`.
    pub horizon: usize,
    /// Antennas `M` (features per step `2M`).
    pub n_antennas: usize,
    /// Neurons / hidden units (all models).
    pub hidden: usize,
    /// LTC solver sub-steps per sample.
    pub ode_unfolds: usize,
}

impl ModelConfig {
    /// Validates the configuration.
    ///
    /// # Errors
    /// [`PredictError::InvalidParameter`] for zero sizes or a trivial kind.
    pub fn check(&self) -> Result<(), PredictError> {
        if !self.kind.is_learned() {
            return Err(PredictError::InvalidParameter(format!("{} has no model", self.kind.name())));
        }
        if self.window == 0 || self.horizon == 0 || self.n_antennas == 0 || self.hidden == 0 || self.ode_unfolds == 0 {
            return Err(PredictError::InvalidParameter(format!("model sizes must all be >= 1: {self:?}")));
        }
        Ok(())
    }

    /// Features per time step, `2M`.
    #[must_use]
    pub fn n_features(&self) -> usize {
        2 * self.n_antennas
    }
}

enum Body {
    Recurrent(Box<dyn RecurrentCell + Send + Sync>),
    Mlp(Vec<candle_nn::Linear>),
}

/// A trainable predictor (see the module docs). Its variables live in [`vars`](Self::vars).
pub struct LearnedPredictor {
    config: ModelConfig,
    vars: VarMap,
    body: Body,
    head: candle_nn::Linear,
}

impl std::fmt::Debug for LearnedPredictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnedPredictor").field("config", &self.config).finish_non_exhaustive()
    }
}

impl LearnedPredictor {
    /// Builds the model with variables drawn from `seed`.
    ///
    /// # Errors
    /// [`PredictError::InvalidParameter`] for a bad configuration; cell errors.
    pub fn new(config: &ModelConfig, seed: u64) -> Result<Self, PredictError> {
        config.check()?;
        let vars = VarMap::new();
        let vb = seeded_var_builder(&vars, seed, DType::F64, &Device::Cpu);
        let (f, n) = (config.n_features(), config.hidden);
        let body = match config.kind {
            PredictorKind::Mlp => Body::Mlp(vec![
                candle_nn::linear(f * config.window, n, vb.pp("mlp0"))?,
                candle_nn::linear(n, n, vb.pp("mlp1"))?,
            ]),
            PredictorKind::Lstm => Body::Recurrent(Box::new(Lstm::new(f, n, vb.pp("lstm"))?)),
            PredictorKind::Gru => Body::Recurrent(Box::new(Gru::new(f, n, vb.pp("gru"))?)),
            PredictorKind::Cfc => {
                Body::Recurrent(Box::new(WiredCfc::new(&fully_connected(f, n, n)?, CfcMode::Default, vb.pp("cfc"))?))
            }
            PredictorKind::Ltc => {
                let ltc = LtcConfig { ode_unfolds: config.ode_unfolds, ..LtcConfig::default() };
                Body::Recurrent(Box::new(WiredLtc::new(&fully_connected(f, n, n)?, ltc, vb.pp("ltc"))?))
            }
            PredictorKind::LastValue | PredictorKind::Linear => {
                return Err(PredictError::InvalidParameter("trivial predictors have no model".into()));
            }
        };
        let out_in = match &body {
            Body::Recurrent(cell) => cell.output_size(),
            Body::Mlp(_) => n,
        };
        let head = candle_nn::linear(out_in, config.horizon * f, vb.pp("head"))?;
        Ok(Self { config: *config, vars, body, head })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The trainable variables.
    #[must_use]
    pub fn vars(&self) -> &VarMap {
        &self.vars
    }

    /// Number of trainable scalars.
    #[must_use]
    pub fn n_parameters(&self) -> usize {
        self.vars.all_vars().iter().map(|v| v.elem_count()).sum()
    }

    /// The forward pass on normalised features `inputs: [W, B, 2M]` (time-major) →
    /// `[B, H · 2M]` normalised predictions (graph kept for training).
    ///
    /// # Errors
    /// [`PredictError::Shape`] for a wrong input shape; candle and cell errors.
    pub fn forward(&self, inputs: &Tensor) -> Result<Tensor, PredictError> {
        let (w, f) = (self.config.window, self.config.n_features());
        let dims = inputs.dims();
        if dims.len() != 3 || dims[0] != w || dims[2] != f || dims[1] == 0 {
            return Err(PredictError::Shape(format!("inputs are {dims:?}, expected [{w}, batch, {f}]")));
        }
        let batch = dims[1];
        let last = inputs.get(w - 1)?;
        let features = match &self.body {
            Body::Recurrent(cell) => {
                let mut state = Tensor::zeros((batch, cell.state_size()), DType::F64, &Device::Cpu)?;
                let mut out = None;
                for t in 0..w {
                    let (o, next) = cell.step(&inputs.get(t)?, &state, 1.0)?;
                    out = Some(o);
                    state = next;
                }
                out.ok_or_else(|| PredictError::Shape("empty window".into()))?
            }
            Body::Mlp(layers) => {
                let mut x = inputs.transpose(0, 1)?.contiguous()?.reshape((batch, w * f))?;
                for layer in layers {
                    x = layer.forward(&x)?.tanh()?;
                }
                x
            }
        };
        let residual = Tensor::cat(&vec![last; self.config.horizon], 1)?;
        Ok((self.head.forward(&features)? + residual)?)
    }

    /// Normalised time-major inputs `[W, B, 2M]` for a batch of histories, with their transforms.
    pub(crate) fn encode(&self, histories: &[ArrayView2<c64>]) -> Result<(Tensor, Vec<WindowTransform>), PredictError> {
        let (w, f) = (self.config.window, self.config.n_features());
        let batch = histories.len();
        let mut buf = vec![0.0; w * batch * f];
        let mut transforms = Vec::with_capacity(batch);
        for (b, h) in histories.iter().enumerate() {
            let win = last_window(*h, w, Some(self.config.n_antennas))?;
            let tr = WindowTransform::of(win);
            let feats = tr.features(win);
            for t in 0..w {
                for (k, x) in feats.row(t).iter().enumerate() {
                    buf[(t * batch + b) * f + k] = *x;
                }
            }
            transforms.push(tr);
        }
        Ok((Tensor::from_vec(buf, (w, batch, f), &Device::Cpu)?, transforms))
    }
}

impl ChannelPredictor for LearnedPredictor {
    fn window(&self) -> usize {
        self.config.window
    }

    fn horizon(&self) -> usize {
        self.config.horizon
    }

    fn predict(&self, history: ArrayView2<c64>) -> Result<Array2<c64>, PredictError> {
        let mut out = self.predict_batch(&[history.to_owned()])?;
        out.pop().ok_or_else(|| PredictError::Shape("empty batch".into()))
    }

    fn predict_batch(&self, histories: &[Array2<c64>]) -> Result<Vec<Array2<c64>>, PredictError> {
        if histories.is_empty() {
            return Ok(Vec::new());
        }
        let views: Vec<ArrayView2<c64>> = histories.iter().map(|h| h.view()).collect();
        let (inputs, transforms) = self.encode(&views)?;
        let y: Vec<Vec<f64>> = self.forward(&inputs)?.to_vec2()?;
        let (hz, f) = (self.config.horizon, self.config.n_features());
        let mut out = Vec::with_capacity(histories.len());
        for (row, tr) in y.into_iter().zip(&transforms) {
            let feats = Array2::from_shape_vec((hz, f), row).map_err(|e| PredictError::Shape(e.to_string()))?;
            let pred = tr.unfeatures(feats.view());
            if pred.iter().any(|x| !x.is_finite()) {
                return Err(PredictError::NonFinite("the model produced a non-finite prediction".into()));
            }
            out.push(pred);
        }
        Ok(out)
    }
}
