//! The interface between a method family's own experiments and the harness.
//!
//! Most beamlab experiments are Monte-Carlo sweeps of [`Beamformer`](crate::Beamformer)s, which the
//! eval runner drives itself. Some are not: channel-prediction error against the horizon, training
//! curves, convergence traces, outage tables. A family crate describes such an experiment as a
//! [`FamilyExperiment`]: a list of independent *units* of work (for example one sweep point or one
//! trained model), each of which returns [`CurveRow`]s. The harness runs the units, stores each
//! unit's rows atomically as soon as it finishes (so an interrupted run resumes without redoing
//! finished units), draws figures from the stored rows, and checks claims against them.
//!
//! Rules every implementation keeps: a unit's rows depend only on the experiment's parameters and
//! the `seed` passed to [`FamilyExperiment::run_unit`] (never on the thread count or on other
//! units), and units do no IO and no printing.
//!
//! ```
//! use beamlab_core::experiment::{CurveRow, FamilyExperiment};
//! use beamlab_core::CoreError;
//! struct Squares;
//! impl FamilyExperiment for Squares {
//!     fn n_units(&self) -> usize { 3 }
//!     fn unit_label(&self, unit: usize) -> String { format!("x = {unit}") }
//!     fn run_unit(&self, unit: usize, _seed: u64) -> Result<Vec<CurveRow>, CoreError> {
//!         let x = unit as f64;
//!         Ok(vec![CurveRow::single("square", "value", x, x * x)])
//!     }
//! }
//! let rows = Squares.run_unit(2, 0).unwrap();
//! assert_eq!(rows[0].mean, 4.0);
//! ```

use crate::CoreError;

/// One point of one curve: the mean (and spread) of `metric` for `series` at abscissa `x`.
#[derive(Clone, Debug, PartialEq)]
pub struct CurveRow {
    /// Series (usually a method) name, as shown in legends.
    pub series: String,
    /// Metric name (for example `nmse_db`, `sum_se`, `outage`, `time_ms`).
    pub metric: String,
    /// Abscissa (horizon, iteration, SNR, ...).
    pub x: f64,
    /// Mean over the `n` measurements.
    pub mean: f64,
    /// Sample standard deviation over the `n` measurements (0 when `n <= 1`).
    pub std: f64,
    /// Number of measurements.
    pub n: usize,
}

impl CurveRow {
    /// A row from a single measurement.
    #[must_use]
    pub fn single(series: &str, metric: &str, x: f64, value: f64) -> Self {
        Self { series: series.into(), metric: metric.into(), x, mean: value, std: 0.0, n: 1 }
    }

    /// A row summarising `values` (mean and sample standard deviation). Non-finite values are
    /// kept: they make the mean non-finite, which the harness reports instead of hiding.
    #[must_use]
    pub fn summarise(series: &str, metric: &str, x: f64, values: &[f64]) -> Self {
        let n = values.len();
        let mean = if n == 0 { f64::NAN } else { values.iter().sum::<f64>() / n as f64 };
        let std =
            if n > 1 { (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
        Self { series: series.into(), metric: metric.into(), x, mean, std, n }
    }
}

/// An experiment of a method family, split into independent units of work.
pub trait FamilyExperiment: Sync {
    /// Number of units.
    fn n_units(&self) -> usize;

    /// Human-readable label of a unit (for progress bars and logs).
    fn unit_label(&self, unit: usize) -> String;

    /// Runs one unit. `seed` is derived by the harness from the experiment seed and the unit
    /// index; the rows must be a deterministic function of the parameters and `seed`.
    ///
    /// # Errors
    /// Bad parameters or a numerical breakdown.
    fn run_unit(&self, unit: usize, seed: u64) -> Result<Vec<CurveRow>, CoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarise_mean_and_std() {
        let r = CurveRow::summarise("a", "m", 1.0, &[1.0, 2.0, 3.0]);
        assert_eq!(r.n, 3);
        assert!((r.mean - 2.0).abs() < 1e-15);
        assert!((r.std - 1.0).abs() < 1e-15);
        assert!(CurveRow::summarise("a", "m", 0.0, &[]).mean.is_nan());
        assert_eq!(CurveRow::summarise("a", "m", 0.0, &[5.0]).std, 0.0);
    }
}
