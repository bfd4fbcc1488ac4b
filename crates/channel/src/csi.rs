//! CSI error models: what the transmitter sees instead of the true channel.
//!
//! Every model returns an estimate `Ĥ = H + E` with the same shape as the truth
//! (`H_k, E_k: [N_k × M]`):
//!
//! - **additive white Gaussian error** (GLNN): `E` i.i.d. `CN(0, σ_e²)`, with the error variance set
//!   from the channel estimation error `CEE = 10 log10(E‖Ĥ − H‖² / E‖H‖²)` dB by
//!   [`cee_to_variance`]: `σ_e² = p · 10^{CEE/10}` where `p` is the model's expected per-entry
//!   power;
//! - **relative error** (GGML-ImCSI): per user, `E_k` i.i.d. `CN(0, δ ‖H_k‖_F² / (N_k M))`, so that
//!   `E‖E_k‖_F² = δ ‖H_k‖_F²`.
//!
//! [`CsiModel`] bundles these (and perfect CSI) as one value that experiments can configure, and
//! reports the matching [`ErrorStats`] for methods that are told about the error.

use beamlab_core::{Channel, ErrorStats};
use ndarray::Array2;
use rand::Rng;

use crate::{ChannelError, standard_complex_normal};

/// Per-entry error variance `σ_e² = entry_power · 10^{cee_db/10}` that gives a channel estimation
/// error of `cee_db` dB, `CEE = 10 log10(E‖Ĥ − H‖² / E‖H‖²)`, when the channel's expected
/// per-entry power is `entry_power` (1 for [`rayleigh`](crate::rayleigh()) and
/// [`saleh_valenzuela`](crate::saleh_valenzuela())).
///
/// Non-finite inputs give a non-finite variance, which [`awgn_estimate`] rejects.
#[must_use]
pub fn cee_to_variance(cee_db: f64, entry_power: f64) -> f64 {
    entry_power * 10f64.powf(cee_db / 10.0)
}

/// Adds `variance`-scaled `CN(0, 1)` noise to every entry, user by user.
fn add_white_error<R: Rng + ?Sized>(
    truth: &Channel,
    variance_of_user: impl Fn(&Array2<num_complex::Complex64>) -> f64,
    rng: &mut R,
) -> Result<Channel, ChannelError> {
    let blocks = truth
        .blocks()
        .iter()
        .map(|h| {
            let std = variance_of_user(h).sqrt();
            h.mapv(|z| z + standard_complex_normal(rng) * std)
        })
        .collect();
    Ok(Channel::new(blocks)?)
}

/// Estimate `Ĥ = H + E` with `E` i.i.d. `CN(0, error_variance)` (real and imaginary parts
/// `N(0, error_variance/2)`); shapes as `truth`. A zero variance returns a copy of `truth`.
///
/// # Errors
/// [`ChannelError::InvalidParameter`] when `error_variance` is negative or not finite.
///
/// # Example
/// ```
/// use beamlab_channel::{awgn_estimate, cee_to_variance, rayleigh};
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
/// let h = rayleigh(2, 1, 4, &mut rng)?;
/// let h_est = awgn_estimate(&h, cee_to_variance(-20.0, 1.0), &mut rng)?;
/// assert_eq!(h_est.n_rx(), h.n_rx());
/// # Ok::<(), beamlab_channel::ChannelError>(())
/// ```
pub fn awgn_estimate<R: Rng + ?Sized>(
    truth: &Channel,
    error_variance: f64,
    rng: &mut R,
) -> Result<Channel, ChannelError> {
    if !(error_variance.is_finite() && error_variance >= 0.0) {
        return Err(ChannelError::InvalidParameter(format!(
            "CSI error variance must be finite and >= 0, got {error_variance}"
        )));
    }
    if error_variance == 0.0 {
        return Ok(truth.clone());
    }
    add_white_error(truth, |_| error_variance, rng)
}

/// Estimate with relative error (GGML-ImCSI): per user `Ĥ_k = H_k + E_k`, `E_k` i.i.d.
/// `CN(0, δ ‖H_k‖_F² / (N_k M))`, so `E‖E_k‖_F² = δ ‖H_k‖_F²`; shapes as `truth`. A zero `delta`
/// returns a copy of `truth`.
///
/// # Errors
/// [`ChannelError::InvalidParameter`] when `delta` is negative or not finite.
pub fn relative_estimate<R: Rng + ?Sized>(truth: &Channel, delta: f64, rng: &mut R) -> Result<Channel, ChannelError> {
    if !(delta.is_finite() && delta >= 0.0) {
        return Err(ChannelError::InvalidParameter(format!(
            "relative CSI error delta must be finite and >= 0, got {delta}"
        )));
    }
    if delta == 0.0 {
        return Ok(truth.clone());
    }
    add_white_error(truth, |h| delta * h.iter().map(|z| z.norm_sqr()).sum::<f64>() / h.len() as f64, rng)
}

/// How the transmitter's channel estimate is produced from the true channel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CsiModel {
    /// `Ĥ = H`.
    Perfect,
    /// Additive white Gaussian error at a channel estimation error of `cee_db` dB (see
    /// [`awgn_estimate`] and [`cee_to_variance`]).
    Awgn {
        /// `10 log10(E‖Ĥ − H‖² / E‖H‖²)`, e.g. `-10.0`.
        cee_db: f64,
    },
    /// Relative error with parameter `δ` (see [`relative_estimate`]).
    Relative {
        /// `δ = E‖E_k‖² / ‖H_k‖²`.
        delta: f64,
    },
}

impl CsiModel {
    /// The estimate `Ĥ` of `truth`, assuming the unit expected per-entry power of the built-in
    /// models. For imported channels with another normalisation use
    /// [`CsiModel::estimate_with_entry_power`].
    ///
    /// # Errors
    /// [`ChannelError::InvalidParameter`] for a non-finite `cee_db`, or a negative or non-finite
    /// `delta`.
    pub fn estimate<R: Rng + ?Sized>(&self, truth: &Channel, rng: &mut R) -> Result<Channel, ChannelError> {
        self.estimate_with_entry_power(truth, 1.0, rng)
    }

    /// The estimate `Ĥ` of `truth` when the channel model's expected per-entry power is
    /// `entry_power` (only used by [`CsiModel::Awgn`]).
    ///
    /// # Errors
    /// As [`CsiModel::estimate`], and for a negative or non-finite `entry_power` with
    /// [`CsiModel::Awgn`].
    pub fn estimate_with_entry_power<R: Rng + ?Sized>(
        &self,
        truth: &Channel,
        entry_power: f64,
        rng: &mut R,
    ) -> Result<Channel, ChannelError> {
        match *self {
            CsiModel::Perfect => Ok(truth.clone()),
            CsiModel::Awgn { cee_db } => {
                if !cee_db.is_finite() {
                    return Err(ChannelError::InvalidParameter(format!(
                        "channel estimation error must be a finite number of dB, got {cee_db}"
                    )));
                }
                if !(entry_power.is_finite() && entry_power >= 0.0) {
                    return Err(ChannelError::InvalidParameter(format!(
                        "entry power must be finite and >= 0, got {entry_power}"
                    )));
                }
                awgn_estimate(truth, cee_to_variance(cee_db, entry_power), rng)
            }
            CsiModel::Relative { delta } => relative_estimate(truth, delta, rng),
        }
    }

    /// The error statistics a method may be told about, for a channel model with expected
    /// per-entry power `entry_power`: [`ErrorStats::None`], [`ErrorStats::WhiteGaussian`] with
    /// the variance of [`cee_to_variance`], or [`ErrorStats::Relative`].
    #[must_use]
    pub fn error_stats(&self, entry_power: f64) -> ErrorStats {
        match *self {
            CsiModel::Perfect => ErrorStats::None,
            CsiModel::Awgn { cee_db } => ErrorStats::WhiteGaussian { variance: cee_to_variance(cee_db, entry_power) },
            CsiModel::Relative { delta } => ErrorStats::Relative { delta },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rayleigh;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn error_energy(a: &Channel, b: &Channel) -> f64 {
        a.blocks()
            .iter()
            .zip(b.blocks())
            .flat_map(|(x, y)| x.iter().zip(y.iter()))
            .map(|(x, y)| (x - y).norm_sqr())
            .sum()
    }

    #[test]
    fn cee_conversion() {
        assert!((cee_to_variance(-10.0, 1.0) - 0.1).abs() < 1e-15);
        assert!((cee_to_variance(0.0, 2.5) - 2.5).abs() < 1e-15);
        assert!((cee_to_variance(-20.0, 4.0) - 0.04).abs() < 1e-15);
    }

    #[test]
    fn awgn_hits_the_target_cee() {
        let mut rng = ChaCha8Rng::seed_from_u64(31);
        let h = rayleigh(8, 4, 1000, &mut rng).unwrap();
        for cee_db in [-20.0, -10.0, 0.0] {
            let h_est = awgn_estimate(&h, cee_to_variance(cee_db, 1.0), &mut rng).unwrap();
            let realised = 10.0 * (error_energy(&h_est, &h) / h.energy()).log10();
            assert!((realised - cee_db).abs() < 0.2, "target {cee_db} dB, realised {realised} dB");
        }
        let via_model = CsiModel::Awgn { cee_db: -10.0 }.estimate(&h, &mut rng).unwrap();
        let realised = 10.0 * (error_energy(&via_model, &h) / h.energy()).log10();
        assert!((realised + 10.0).abs() < 0.2, "realised {realised} dB");
    }

    #[test]
    fn relative_error_scales_with_each_user() {
        let mut rng = ChaCha8Rng::seed_from_u64(32);
        // Users of very different strength: the error must follow each user's own power.
        let base = rayleigh(2, 2, 5000, &mut rng).unwrap();
        let h = Channel::new(vec![base.blocks()[0].clone(), base.blocks()[1].mapv(|z| z * 10.0)]).unwrap();
        let delta = 0.05;
        let h_est = relative_estimate(&h, delta, &mut rng).unwrap();
        for (hk, ek) in h.blocks().iter().zip(h_est.blocks()) {
            let err: f64 = hk.iter().zip(ek.iter()).map(|(a, b)| (a - b).norm_sqr()).sum();
            let pow: f64 = hk.iter().map(|z| z.norm_sqr()).sum();
            assert!((err / pow / delta - 1.0).abs() < 0.05, "ratio {}", err / pow);
        }
    }

    #[test]
    fn zero_error_is_a_copy_and_bad_parameters_are_rejected() {
        let mut rng = ChaCha8Rng::seed_from_u64(33);
        let h = rayleigh(2, 1, 3, &mut rng).unwrap();
        assert_eq!(awgn_estimate(&h, 0.0, &mut rng).unwrap(), h);
        assert_eq!(relative_estimate(&h, 0.0, &mut rng).unwrap(), h);
        assert_eq!(CsiModel::Perfect.estimate(&h, &mut rng).unwrap(), h);
        let invalid = |r: Result<Channel, ChannelError>| matches!(r, Err(ChannelError::InvalidParameter(_)));
        assert!(invalid(awgn_estimate(&h, -0.1, &mut rng)));
        assert!(invalid(awgn_estimate(&h, f64::NAN, &mut rng)));
        assert!(invalid(awgn_estimate(&h, f64::INFINITY, &mut rng)));
        assert!(invalid(relative_estimate(&h, -0.1, &mut rng)));
        assert!(invalid(relative_estimate(&h, f64::NAN, &mut rng)));
        assert!(invalid(CsiModel::Awgn { cee_db: f64::NAN }.estimate(&h, &mut rng)));
        assert!(invalid(CsiModel::Awgn { cee_db: f64::INFINITY }.estimate(&h, &mut rng)));
        assert!(invalid(CsiModel::Relative { delta: -1.0 }.estimate(&h, &mut rng)));
        assert!(invalid(CsiModel::Awgn { cee_db: -10.0 }.estimate_with_entry_power(&h, -1.0, &mut rng)));
    }

    #[test]
    fn estimates_are_reproducible() {
        let h = rayleigh(2, 2, 4, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        let m = CsiModel::Awgn { cee_db: -5.0 };
        let a = m.estimate(&h, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
        let b = m.estimate(&h, &mut ChaCha8Rng::seed_from_u64(9)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, h);
    }

    #[test]
    fn error_stats_match_the_model() {
        assert_eq!(CsiModel::Perfect.error_stats(1.0), ErrorStats::None);
        assert_eq!(
            CsiModel::Awgn { cee_db: -10.0 }.error_stats(2.0),
            ErrorStats::WhiteGaussian { variance: cee_to_variance(-10.0, 2.0) }
        );
        assert_eq!(CsiModel::Relative { delta: 0.1 }.error_stats(1.0), ErrorStats::Relative { delta: 0.1 });
    }
}
