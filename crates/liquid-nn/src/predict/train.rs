//! Offline training of the learned predictors.
//!
//! Loss: the mean squared error between the model's normalised predictions and the futures
//! normalised by the same window transform (so every window counts equally whatever its power),
//! averaged over the batch, the `H` steps and the `2M` features. Adam (bridge defaults,
//! `β = (0.9, 0.999)`) at a fixed learning rate, minibatches drawn by a seeded shuffle every
//! epoch, a fixed number of epochs; no early stopping, no validation split (the test set is held
//! out by the caller). A non-finite loss stops training with [`PredictError::Diverged`].

use beamlab_candle_bridge::candle_core::{Device, Tensor};
use beamlab_candle_bridge::{adam, all_finite, step};
use beamlab_core::derive_seed;
use ndarray::ArrayView2;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::PredictError;
use super::data::PredictionData;
use super::predictors::{
    ChannelPredictor, LastValue, LearnedPredictor, LinearExtrapolation, ModelConfig, PredictorKind,
};
use beamlab_linalg_ops::c64;

/// Training settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the training windows.
    pub epochs: usize,
    /// Windows per Adam step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self { epochs: 20, batch_size: 32, learning_rate: 5e-3 }
    }
}

impl TrainConfig {
    /// Validates the settings.
    ///
    /// # Errors
    /// [`PredictError::InvalidParameter`] for zero epochs or batch size, or a learning rate that
    /// is not positive and finite.
    pub fn check(&self) -> Result<(), PredictError> {
        if self.epochs == 0 || self.batch_size == 0 || !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(PredictError::InvalidParameter(format!("bad training settings: {self:?}")));
        }
        Ok(())
    }
}

/// What training did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainReport {
    /// Mean training loss of every epoch (normalised MSE per real feature).
    pub epoch_losses: Vec<f64>,
    /// Adam steps taken.
    pub n_steps: usize,
    /// Trainable scalars.
    pub n_parameters: usize,
}

/// Builds the predictor `model.kind` and, when it is learned, trains it on `data` (seeded by
/// `seed`: initial weights and the minibatch order). Trivial predictors are returned untrained
/// with an empty report.
///
/// # Errors
/// Bad configurations, empty data, data whose windows do not match the model
/// ([`PredictError::Shape`] / [`PredictError::NonFinite`]), a diverged loss.
pub fn train_predictor(
    model: &ModelConfig,
    train: &TrainConfig,
    data: &PredictionData,
    seed: u64,
) -> Result<(Box<dyn ChannelPredictor>, TrainReport), PredictError> {
    match model.kind {
        PredictorKind::LastValue => {
            return Ok((Box::new(LastValue::new(model.window, model.horizon)?), TrainReport::default()));
        }
        PredictorKind::Linear => {
            return Ok((Box::new(LinearExtrapolation::new(model.window, model.horizon)?), TrainReport::default()));
        }
        _ => {}
    }
    train.check()?;
    if data.is_empty() || data.histories.len() != data.futures.len() {
        return Err(PredictError::InvalidParameter("training needs matching, non-empty histories and futures".into()));
    }
    let span = tracing::info_span!("train_predictor", kind = model.kind.name(), n_windows = data.len());
    let _guard = span.enter();
    let net = LearnedPredictor::new(model, derive_seed(seed, &[0]))?;
    let (hz, f) = (model.horizon, model.n_features());
    // Normalised inputs and targets of every window, once.
    let views: Vec<ArrayView2<c64>> = data.histories.iter().map(|h| h.view()).collect();
    let (inputs, transforms) = net.encode(&views)?;
    let mut targets: Vec<f64> = Vec::with_capacity(data.len() * hz * f);
    for (fut, tr) in data.futures.iter().zip(&transforms) {
        if fut.nrows() < hz || fut.ncols() != model.n_antennas {
            return Err(PredictError::Shape(format!(
                "future is {:?}, expected [>= {hz}, {}]",
                fut.dim(),
                model.n_antennas
            )));
        }
        if fut.iter().any(|x| !x.is_finite()) {
            return Err(PredictError::NonFinite("training future holds NaN or infinite CSI".into()));
        }
        targets.extend(tr.features(fut.slice(ndarray::s![..hz, ..])).iter());
    }
    let targets = Tensor::from_vec(targets, (data.len(), hz * f), &Device::Cpu)?;
    let mut opt = adam(net.vars(), train.learning_rate)?;
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[1]));
    let mut order: Vec<u32> = (0..data.len() as u32).collect();
    let mut report = TrainReport { n_parameters: net.n_parameters(), ..TrainReport::default() };
    for epoch in 0..train.epochs {
        order.shuffle(&mut rng);
        let (mut sum, mut count) = (0.0, 0usize);
        for chunk in order.chunks(train.batch_size) {
            let idx = Tensor::new(chunk, &Device::Cpu)?;
            let x = inputs.index_select(&idx, 1)?;
            let y = targets.index_select(&idx, 0)?;
            let loss = (net.forward(&x)? - y)?.sqr()?.mean_all()?;
            let value: f64 = loss.to_scalar()?;
            if !value.is_finite() {
                return Err(PredictError::Diverged(format!("{} loss {value} at epoch {epoch}", model.kind.name())));
            }
            step(&mut opt, &loss)?;
            sum += value * chunk.len() as f64;
            count += chunk.len();
            report.n_steps += 1;
        }
        report.epoch_losses.push(sum / count.max(1) as f64);
        tracing::debug!(epoch, loss = sum / count.max(1) as f64, "epoch");
    }
    if !all_finite(net.vars())? {
        return Err(PredictError::Diverged(format!("{} parameters are not finite", model.kind.name())));
    }
    Ok((Box::new(net), report))
}
