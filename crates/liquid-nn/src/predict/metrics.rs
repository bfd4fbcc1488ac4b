//! Prediction metrics: NMSE per step and the spectral-efficiency loss of MRT on predicted CSI.
//!
//! For step `k` over `N` test windows with true futures `h_{n,k}: [M]` and predictions `ĥ_{n,k}`,
//!
//! ```text
//! NMSE_k = Σ_n ‖h_{n,k} − ĥ_{n,k}‖² / Σ_n ‖h_{n,k}‖²           (ratio of sums; dB = 10 log10)
//! R(h, ĥ) = log2(1 + ρ |h^H w|²),  w = ĥ / ‖ĥ‖  (MRT, unit power; w = 0 when ĥ = 0)
//! SE loss_k = mean_n [ log2(1 + ρ ‖h_{n,k}‖²) − R(h_{n,k}, ĥ_{n,k}) ]   ≥ 0
//! ```
//!
//! `ρ = P/σ²` (linear, from `snr_db`); the first term is MRT on the true channel, the single-user
//! optimum. With the random-walk channel normalised to unit mean per-entry power, `ρ` is the mean
//! per-antenna receive SNR.

use beamlab_linalg_ops::c64;
use ndarray::{Array2, ArrayView1};

use super::PredictError;
use super::data::PredictionData;
use super::predictors::ChannelPredictor;

/// Metrics of one predictor on one test set, per prediction step `k = 1 … H`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PredictionMetrics {
    /// NMSE per step (linear).
    pub nmse: Vec<f64>,
    /// NMSE per step (dB).
    pub nmse_db: Vec<f64>,
    /// Per-window SE loss (bit/s/Hz) per step: `se_loss[k][n]`.
    pub se_loss: Vec<Vec<f64>>,
    /// Number of test windows.
    pub n_windows: usize,
}

/// `log2(1 + ρ |h^H w|²)` with `w = ĥ/‖ĥ‖` (0 when `ĥ = 0`); `snr` is linear.
#[must_use]
pub fn mrt_rate(h: ArrayView1<c64>, h_pred: ArrayView1<c64>, snr: f64) -> f64 {
    let norm = h_pred.iter().map(|x| x.norm_sqr()).sum::<f64>().sqrt();
    if !(norm > 0.0) {
        return 0.0;
    }
    let gain: c64 = h.iter().zip(h_pred.iter()).map(|(a, b)| a.conj() * b).sum::<c64>() / norm;
    (1.0 + snr * gain.norm_sqr()).log2()
}

/// NMSE per step (linear) of `predictions` against the first rows of `futures`.
///
/// # Errors
/// [`PredictError::Shape`] for different counts, empty input or mismatched shapes;
/// [`PredictError::NonFinite`] when the true power of a step is zero or not finite.
pub fn nmse_per_step(predictions: &[Array2<c64>], futures: &[Array2<c64>]) -> Result<Vec<f64>, PredictError> {
    let Some(first) = predictions.first() else {
        return Err(PredictError::Shape("no predictions".into()));
    };
    if predictions.len() != futures.len() {
        return Err(PredictError::Shape(format!("{} predictions vs {} futures", predictions.len(), futures.len())));
    }
    let (hz, m) = first.dim();
    let mut err = vec![0.0; hz];
    let mut pow = vec![0.0; hz];
    for (p, f) in predictions.iter().zip(futures) {
        if p.dim() != (hz, m) || f.nrows() < hz || f.ncols() != m {
            return Err(PredictError::Shape(format!("prediction {:?} vs future {:?}", p.dim(), f.dim())));
        }
        for k in 0..hz {
            for j in 0..m {
                err[k] += (f[[k, j]] - p[[k, j]]).norm_sqr();
                pow[k] += f[[k, j]].norm_sqr();
            }
        }
    }
    err.iter()
        .zip(&pow)
        .map(|(e, p)| {
            if *p > 0.0 && p.is_finite() {
                Ok(e / p)
            } else {
                Err(PredictError::NonFinite(format!("true power {p} of a step is not positive and finite")))
            }
        })
        .collect()
}

/// Runs `predictor` on every window of `data` and measures NMSE and SE loss at `snr_db`.
///
/// # Errors
/// The predictor's errors; as [`nmse_per_step`]; [`PredictError::InvalidParameter`] for a
/// non-finite `snr_db`.
pub fn evaluate(
    predictor: &dyn ChannelPredictor,
    data: &PredictionData,
    snr_db: f64,
) -> Result<PredictionMetrics, PredictError> {
    if !snr_db.is_finite() {
        return Err(PredictError::InvalidParameter(format!("snr_db = {snr_db} must be finite")));
    }
    let predictions = predictor.predict_batch(&data.histories)?;
    let nmse = nmse_per_step(&predictions, &data.futures)?;
    let snr = 10f64.powf(snr_db / 10.0);
    let hz = predictor.horizon();
    let mut se_loss = vec![Vec::with_capacity(data.len()); hz];
    for (p, f) in predictions.iter().zip(&data.futures) {
        for (k, losses) in se_loss.iter_mut().enumerate() {
            let h = f.row(k);
            let best = (1.0 + snr * h.iter().map(|x| x.norm_sqr()).sum::<f64>()).log2();
            losses.push(best - mrt_rate(h, p.row(k), snr));
        }
    }
    Ok(PredictionMetrics {
        nmse_db: nmse.iter().map(|x| 10.0 * x.log10()).collect(),
        nmse,
        se_loss,
        n_windows: data.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn mrt_rate_is_optimal_on_the_true_channel() {
        let h = array![c64::new(1.0, 0.5), c64::new(-0.3, 0.2)];
        let best = (1.0 + 10.0 * h.iter().map(|x| x.norm_sqr()).sum::<f64>()).log2();
        assert!((mrt_rate(h.view(), h.view(), 10.0) - best).abs() < 1e-12);
        // A common phase and scale of the prediction do not matter.
        let rotated = h.mapv(|x| x * c64::from_polar(3.0, 1.2));
        assert!((mrt_rate(h.view(), rotated.view(), 10.0) - best).abs() < 1e-12);
        // An orthogonal prediction gives rate 0.
        let orth = array![-h[1].conj(), h[0].conj()];
        assert!(mrt_rate(h.view(), orth.view(), 10.0).abs() < 1e-12);
        assert_eq!(mrt_rate(h.view(), ndarray::Array1::<c64>::zeros(2).view(), 10.0), 0.0);
    }

    #[test]
    fn nmse_is_a_ratio_of_sums() {
        let f = vec![
            array![[c64::new(1.0, 0.0)], [c64::new(2.0, 0.0)]],
            array![[c64::new(0.0, 1.0)], [c64::new(0.0, 0.0)]],
        ];
        let p = vec![
            array![[c64::new(0.0, 0.0)], [c64::new(2.0, 1.0)]],
            array![[c64::new(0.0, 1.0)], [c64::new(0.0, 1.0)]],
        ];
        let n = nmse_per_step(&p, &f).unwrap();
        assert!((n[0] - 0.5).abs() < 1e-15);
        assert!((n[1] - 0.5).abs() < 1e-15);
        assert!(matches!(nmse_per_step(&p[..1], &f), Err(PredictError::Shape(_))));
        assert!(matches!(nmse_per_step(&[], &[]), Err(PredictError::Shape(_))));
    }
}
