//! The survey's Fig. 4 as a harness experiment: NMSE (and MRT SE loss) against the prediction
//! step for every predictor.
//!
//! One unit per predictor in [`PredictionParams::predictors`]. The training and test windows are
//! generated once, when the experiment is built, from [`PredictionParams::data_seed`], so every
//! predictor is trained and scored on the same data; the harness's unit seed drives only the
//! model's initial weights and minibatch order. One model per predictor predicts all
//! `horizon` steps at once, so the curve over `x = 1 … horizon` comes from one training.
//!
//! Rows of a unit (series = [`PredictorKind::name`]):
//! - `nmse_db` at `x = k` (`k = 1 … horizon`): `10 log10 NMSE_k` (`n` = test windows, `std` 0:
//!   a ratio of sums has no per-window spread);
//! - `nmse` at `x = k`: the same, linear;
//! - `se_loss` at `x = k`: mean and spread over test windows of the MRT rate loss (bit/s/Hz);
//! - `train_loss` at `x = epoch` (1-based; learned predictors only): mean normalised MSE.

use std::collections::BTreeMap;

use beamlab_channel::RandomWalkParams;
use beamlab_core::CoreError;
use beamlab_core::experiment::{CurveRow, FamilyExperiment};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::PredictError;
use super::data::{PredictionData, generate_data};
use super::metrics::evaluate;
use super::predictors::{ModelConfig, PredictorKind};
use super::train::{TrainConfig, train_predictor};
use beamlab_core::derive_seed;

/// Parameters of the prediction experiment (TOML table; defaults = the quick profile).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PredictionParams {
    /// Predictors, one unit each (default: all seven).
    pub predictors: Vec<PredictorKind>,
    /// History length `W` (20).
    pub window: usize,
    /// Predicted steps `H` (10: the horizon axis of Fig. 4).
    pub horizon: usize,
    /// Training trajectories, each in a fresh scene (128).
    pub n_train_trajectories: usize,
    /// Test trajectories (32).
    pub n_test_trajectories: usize,
    /// Samples per trajectory (60).
    pub samples_per_trajectory: usize,
    /// Samples between window starts (5).
    pub stride: usize,
    /// Neurons / hidden units of every learned model (32).
    pub hidden: usize,
    /// LTC semi-implicit sub-steps per sample (6, ncps' default).
    pub ode_unfolds: usize,
    /// Training epochs (20).
    pub epochs: usize,
    /// Minibatch size (32).
    pub batch_size: usize,
    /// Adam learning rate (5e-3) of every learned predictor not in `learning_rates`.
    pub learning_rate: f64,
    /// Per-predictor learning rates overriding `learning_rate` (TOML table `[learning_rates]`,
    /// e.g. `ltc = 0.03`); default `{ ltc = 0.03 }` (the LTC trains slower at the shared rate, see
    /// `docs/prediction.md`). Setting the table replaces the default.
    pub learning_rates: BTreeMap<PredictorKind, f64>,
    /// SNR `ρ` (dB) of the MRT rate (10).
    pub rate_snr_db: f64,
    /// BS antennas `M` (4).
    pub n_tx_antennas: usize,
    /// Carrier (Hz), 6 GHz.
    pub carrier_hz: f64,
    /// User speed (m/s), 2.
    pub speed_mps: f64,
    /// CSI sample period (s), 1.25 ms (`f_D T_s = 0.05`).
    pub sample_period_s: f64,
    /// Direction re-draw probability per sample (0).
    pub turn_probability: f64,
    /// LoS probability per scene (0.5).
    pub los_probability: f64,
    /// Scatterers per scene (8).
    pub n_scatterers: usize,
    /// CSI feedback SNR (dB); absent for perfect feedback.
    pub feedback_snr_db: Option<f64>,
    /// Seed of the training and test data (shared by all predictors).
    pub data_seed: u64,
}

impl Default for PredictionParams {
    fn default() -> Self {
        let c = RandomWalkParams::default();
        Self {
            predictors: PredictorKind::ALL.to_vec(),
            window: 20,
            horizon: 10,
            n_train_trajectories: 128,
            n_test_trajectories: 32,
            samples_per_trajectory: 60,
            stride: 5,
            hidden: 32,
            ode_unfolds: 6,
            epochs: 20,
            batch_size: 32,
            learning_rate: 5e-3,
            learning_rates: BTreeMap::from([(PredictorKind::Ltc, 0.03)]),
            rate_snr_db: 10.0,
            n_tx_antennas: c.n_tx_antennas,
            carrier_hz: c.carrier_hz,
            speed_mps: c.speed_mps,
            sample_period_s: c.sample_period_s,
            turn_probability: c.turn_probability,
            los_probability: c.los_probability,
            n_scatterers: c.n_scatterers,
            feedback_snr_db: None,
            data_seed: 2026,
        }
    }
}

impl PredictionParams {
    /// The channel model these parameters describe.
    #[must_use]
    pub fn channel(&self) -> RandomWalkParams {
        RandomWalkParams {
            n_tx_antennas: self.n_tx_antennas,
            carrier_hz: self.carrier_hz,
            speed_mps: self.speed_mps,
            sample_period_s: self.sample_period_s,
            turn_probability: self.turn_probability,
            los_probability: self.los_probability,
            n_scatterers: self.n_scatterers,
            feedback_snr_db: self.feedback_snr_db,
            ..RandomWalkParams::default()
        }
    }

    /// The model configuration of `kind`.
    #[must_use]
    pub fn model(&self, kind: PredictorKind) -> ModelConfig {
        ModelConfig {
            kind,
            window: self.window,
            horizon: self.horizon,
            n_antennas: self.n_tx_antennas,
            hidden: self.hidden,
            ode_unfolds: self.ode_unfolds,
        }
    }

    /// The training settings of `kind`.
    #[must_use]
    pub fn training(&self, kind: PredictorKind) -> TrainConfig {
        let learning_rate = self.learning_rates.get(&kind).copied().unwrap_or(self.learning_rate);
        TrainConfig { epochs: self.epochs, batch_size: self.batch_size, learning_rate }
    }

    /// Validates every parameter.
    ///
    /// # Errors
    /// [`PredictError::InvalidParameter`] for an empty or repeated predictor list, zero sizes,
    /// `window < 2`, trajectories shorter than `window + horizon`, a non-finite rate SNR, bad
    /// training settings or channel parameters.
    pub fn check(&self) -> Result<(), PredictError> {
        let bad = |m: String| Err(PredictError::InvalidParameter(m));
        if self.predictors.is_empty() {
            return bad("predictors must not be empty".into());
        }
        for (i, k) in self.predictors.iter().enumerate() {
            if self.predictors[..i].contains(k) {
                return bad(format!("predictor {} is listed twice", k.name()));
            }
        }
        if self.window < 2 || self.horizon == 0 || self.stride == 0 || self.hidden == 0 || self.ode_unfolds == 0 {
            return bad(format!("window = {} must be >= 2; horizon, stride, hidden, ode_unfolds >= 1", self.window));
        }
        if self.n_train_trajectories == 0 || self.n_test_trajectories == 0 {
            return bad("n_train_trajectories and n_test_trajectories must be >= 1".into());
        }
        if self.samples_per_trajectory < self.window + self.horizon {
            return bad(format!(
                "samples_per_trajectory = {} must be >= window + horizon = {}",
                self.samples_per_trajectory,
                self.window + self.horizon
            ));
        }
        if !self.rate_snr_db.is_finite() {
            return bad(format!("rate_snr_db = {} must be finite", self.rate_snr_db));
        }
        for kind in PredictorKind::ALL {
            self.training(kind).check()?;
        }
        self.channel().check()?;
        Ok(())
    }
}

/// The prediction experiment (see the module docs), with its data generated.
#[derive(Clone, Debug)]
pub struct PredictionExperiment {
    params: PredictionParams,
    train: PredictionData,
    test: PredictionData,
}

/// Validates `params` and generates the shared training and test windows.
///
/// # Errors
/// As [`PredictionParams::check`]; channel-model errors.
pub fn prediction_experiment(params: &PredictionParams) -> Result<PredictionExperiment, PredictError> {
    params.check()?;
    let channel = params.channel();
    let data = |n: usize, stream: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(params.data_seed, &[stream]));
        generate_data(
            &channel,
            n,
            params.samples_per_trajectory,
            params.window,
            params.horizon,
            params.stride,
            &mut rng,
        )
    };
    Ok(PredictionExperiment {
        params: params.clone(),
        train: data(params.n_train_trajectories, 0)?,
        test: data(params.n_test_trajectories, 1)?,
    })
}

impl PredictionExperiment {
    /// The parameters.
    #[must_use]
    pub fn params(&self) -> &PredictionParams {
        &self.params
    }

    /// The training windows.
    #[must_use]
    pub fn train_data(&self) -> &PredictionData {
        &self.train
    }

    /// The test windows.
    #[must_use]
    pub fn test_data(&self) -> &PredictionData {
        &self.test
    }

    /// Trains and scores predictor `kind` with model seed `seed`; the unit's rows.
    ///
    /// # Errors
    /// Training and evaluation errors.
    pub fn run_predictor(&self, kind: PredictorKind, seed: u64) -> Result<Vec<CurveRow>, PredictError> {
        let p = &self.params;
        let (predictor, report) = train_predictor(&p.model(kind), &p.training(kind), &self.train, seed)?;
        let metrics = evaluate(predictor.as_ref(), &self.test, p.rate_snr_db)?;
        let name = kind.display_name();
        let n = metrics.n_windows;
        let mut rows = Vec::new();
        for k in 0..p.horizon {
            let x = (k + 1) as f64;
            rows.push(CurveRow {
                series: name.into(),
                metric: "nmse_db".into(),
                x,
                mean: metrics.nmse_db[k],
                std: 0.0,
                n,
            });
            rows.push(CurveRow { series: name.into(), metric: "nmse".into(), x, mean: metrics.nmse[k], std: 0.0, n });
            rows.push(CurveRow::summarise(name, "se_loss", x, &metrics.se_loss[k]));
        }
        for (e, loss) in report.epoch_losses.iter().enumerate() {
            rows.push(CurveRow::single(name, "train_loss", (e + 1) as f64, *loss));
        }
        Ok(rows)
    }
}

impl FamilyExperiment for PredictionExperiment {
    fn n_units(&self) -> usize {
        self.params.predictors.len()
    }

    fn unit_label(&self, unit: usize) -> String {
        self.params.predictors.get(unit).map_or_else(|| format!("unit {unit}"), |k| format!("predictor {}", k.name()))
    }

    fn run_unit(&self, unit: usize, seed: u64) -> Result<Vec<CurveRow>, CoreError> {
        let kind = *self.params.predictors.get(unit).ok_or_else(|| CoreError::Method {
            method: "prediction".into(),
            source: Box::new(PredictError::InvalidParameter(format!(
                "unit {unit} out of range (n_units = {})",
                self.params.predictors.len()
            ))),
        })?;
        self.run_predictor(kind, seed)
            .map_err(|e| CoreError::Method { method: format!("prediction/{}", kind.name()), source: Box::new(e) })
    }
}
