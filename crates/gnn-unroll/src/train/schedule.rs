//! The schedule of a training run: AutoClip, step-size decay and early stopping on the
//! convergence metric `V` (54), iterate averaging, and the validation trace.

use beamlab_candle_bridge::candle_core::{Tensor, Var};

use super::evaluation::EvalStats;
use crate::Error;

/// One validation point of a training run.
#[derive(Clone, Debug, PartialEq)]
pub struct ValPoint {
    /// Primal steps taken.
    pub step: usize,
    /// Validation statistics.
    pub stats: EvalStats,
    /// The convergence metric `V` (54) at this point.
    pub metric: f64,
    /// Duals `μ_g` at this point.
    pub duals: Vec<f64>,
    /// Annealing slopes `κ_g` at this point (0 for the quantile loss).
    pub kappas: Vec<f64>,
}

/// The result of [`Trainer::train`](super::Trainer::train).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    /// Validation trace.
    pub points: Vec<ValPoint>,
    /// Steps taken.
    pub n_steps: usize,
    /// Skipped primal steps.
    pub n_skipped: usize,
    /// Step of the best (restored) parameters.
    pub best_step: usize,
    /// Step-size decays performed.
    pub n_decays: usize,
}

/// AutoClip: the gradient norm is clipped to the `percentile`-th percentile of all norms seen so
/// far.
#[derive(Clone, Debug)]
pub(super) struct AutoClip {
    percentile: f64,
    history: Vec<f64>,
}

impl AutoClip {
    pub(super) fn new(percentile: f64) -> Self {
        Self { percentile, history: Vec::new() }
    }

    /// Records `norm` (finite, > 0) and returns the clipping threshold.
    pub(super) fn threshold(&mut self, norm: f64) -> f64 {
        self.history.push(norm);
        let mut hist = self.history.clone();
        hist.sort_by(f64::total_cmp);
        let idx = ((self.percentile / 100.0) * (hist.len() - 1) as f64).round() as usize;
        hist[idx.min(hist.len() - 1)]
    }
}

/// What to do after a validation ([`Patience::after_validation`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// `V` set a new minimum: keep these parameters as the best.
    Improved,
    /// No new minimum, nothing to do yet.
    Wait,
    /// `decay_patience` more validations without a new minimum: decay the learning rate.
    Decay,
    /// `stop_patience` validations without a new minimum: stop.
    Stop,
}

/// Step-size decay and early stopping: counts validations since the last new minimum of `V`.
#[derive(Clone, Debug)]
pub(super) struct Patience {
    decay_patience: usize,
    stop_patience: usize,
    since_best: usize,
}

impl Patience {
    pub(super) fn new(decay_patience: usize, stop_patience: usize) -> Self {
        Self { decay_patience, stop_patience, since_best: 0 }
    }

    pub(super) fn after_validation(&mut self, improved: bool) -> Verdict {
        if improved {
            self.since_best = 0;
            return Verdict::Improved;
        }
        self.since_best += 1;
        if self.since_best >= self.stop_patience {
            Verdict::Stop
        } else if self.since_best % self.decay_patience == 0 {
            Verdict::Decay
        } else {
            Verdict::Wait
        }
    }
}

/// Iterate averaging `θ̄ ← β θ̄ + (1 − β) θ` over the trainable variables.
pub(super) struct IterateAverage {
    beta: f64,
    average: Vec<Tensor>,
}

impl IterateAverage {
    /// Starts at the current values of `trainable`.
    pub(super) fn new(beta: f64, trainable: &[Var]) -> Result<Self, Error> {
        let average = trainable.iter().map(|v| v.as_tensor().copy()).collect::<Result<_, _>>()?;
        Ok(Self { beta, average })
    }

    /// One averaging step after a primal step.
    pub(super) fn update(&mut self, trainable: &[Var]) -> Result<(), Error> {
        let beta = self.beta;
        for (a, v) in self.average.iter_mut().zip(trainable) {
            *a = ((&*a * beta)? + (v.as_tensor() * (1.0 - beta))?)?;
        }
        Ok(())
    }

    /// Writes the average into `trainable`.
    pub(super) fn load_into(&self, trainable: &[Var]) -> Result<(), Error> {
        for (v, a) in trainable.iter().zip(&self.average) {
            v.set(a)?;
        }
        Ok(())
    }
}
