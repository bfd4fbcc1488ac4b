//! Saleh–Valenzuela clustered mmWave channel with a uniform linear array (model 2 of the channel
//! spec, the synthetic channel of GGML).
//!
//! System model (MISO downlink, `M` transmit antennas on a half-wavelength ULA, single-antenna
//! users): user `k` sees the row
//!
//! ```text
//! h_k = √(M / (N_c N_ray)) Σ_{c=1}^{N_c} Σ_{l=1}^{N_ray} α_cl a(φ_cl)^H,     h_k: [1 × M]
//! a(φ) = [1, e^{jπ sin φ}, …, e^{jπ(M−1) sin φ}]ᵀ / √M,                     a: [M]
//! ```
//!
//! with path gains `α_cl ~ CN(0, 1)`, cluster mean angles `φ_c ~ U[0, 2π)` and ray angles
//! `φ_cl = φ_c + Δ_cl`, `Δ_cl` Laplacian with zero mean and standard deviation equal to the
//! angular spread (scale `b = σ/√2`). Users are drawn independently. Since `‖a(φ)‖ = 1`,
//! `E‖h_k‖² = M` and the expected per-entry power is 1.
//!
//! This is a synthetic substitute for measured mmWave data, not a ray tracer.

use std::f64::consts::{PI, TAU};

use beamlab_core::Channel;
use ndarray::{Array1, Array2};
use num_complex::Complex64 as c64;
use rand::Rng;
use rand_distr::{Distribution, Exp1};

use crate::{ChannelError, standard_complex_normal};

/// Parameters of the Saleh–Valenzuela model.
#[derive(Clone, Debug, PartialEq)]
pub struct SvParams {
    /// Number of clusters `N_c` (default 3).
    pub n_clusters: usize,
    /// Number of rays per cluster `N_ray` (default 30).
    pub n_rays: usize,
    /// Standard deviation of the ray angles around their cluster mean, in degrees (default 10°).
    pub angular_spread_deg: f64,
}

impl Default for SvParams {
    /// GGML's setting: 3 clusters of 30 rays with a 10° angular spread.
    fn default() -> Self {
        Self { n_clusters: 3, n_rays: 30, angular_spread_deg: 10.0 }
    }
}

impl SvParams {
    /// Checks the parameters.
    ///
    /// # Errors
    /// [`ChannelError::InvalidParameter`] for zero clusters or rays, or an angular spread that is
    /// negative or not finite.
    pub fn check(&self) -> Result<(), ChannelError> {
        if self.n_clusters == 0 || self.n_rays == 0 {
            return Err(ChannelError::InvalidParameter(format!(
                "Saleh-Valenzuela needs at least one cluster and one ray, got n_clusters = {}, \
                 n_rays = {}",
                self.n_clusters, self.n_rays
            )));
        }
        if !(self.angular_spread_deg.is_finite() && self.angular_spread_deg >= 0.0) {
            return Err(ChannelError::InvalidParameter(format!(
                "angular spread must be finite and >= 0 degrees, got {}",
                self.angular_spread_deg
            )));
        }
        Ok(())
    }
}

/// Response of an `n`-element half-wavelength ULA towards angle `phi` (radians from broadside):
/// `a(φ) = [e^{jπ i sin φ}]_{i=0..n-1} / √n`, shape `[n]`, unit norm (empty when `n = 0`).
#[must_use]
pub fn ula_response(n: usize, phi: f64) -> Array1<c64> {
    let scale = 1.0 / (n.max(1) as f64).sqrt();
    let step = PI * phi.sin();
    Array1::from_shape_fn(n, |i| c64::from_polar(scale, step * i as f64))
}

/// A zero-mean Laplacian sample with scale `b` (standard deviation `b√2`), as the difference of two
/// independent unit exponentials.
fn laplace<R: Rng + ?Sized>(b: f64, rng: &mut R) -> f64 {
    let e1: f64 = Exp1.sample(rng);
    let e2: f64 = Exp1.sample(rng);
    b * (e1 - e2)
}

/// Draws a Saleh–Valenzuela mmWave MISO channel: `n_users` independent rows `h_k: [1 × n_tx]`
/// following the model in the [module docs](self), with `E‖h_k‖² = n_tx`.
///
/// For each user and cluster, the mean angle is drawn first, then for each ray its angle offset and
/// its gain; a given seed therefore always gives the same channel.
///
/// # Errors
/// [`ChannelError::InvalidParameter`] for zero users or antennas, or parameters rejected by
/// [`SvParams::check`].
///
/// # Example
/// ```
/// use beamlab_channel::{saleh_valenzuela, SvParams};
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
/// let params = SvParams { n_rays: 10, ..SvParams::default() };
/// let h = saleh_valenzuela(&params, 2, 32, &mut rng)?;
/// assert_eq!(h.blocks()[0].dim(), (1, 32));
/// # Ok::<(), beamlab_channel::ChannelError>(())
/// ```
pub fn saleh_valenzuela<R: Rng + ?Sized>(
    params: &SvParams,
    n_users: usize,
    n_tx: usize,
    rng: &mut R,
) -> Result<Channel, ChannelError> {
    params.check()?;
    if n_users == 0 || n_tx == 0 {
        return Err(ChannelError::InvalidParameter(format!(
            "Saleh-Valenzuela sizes must be positive, got n_users = {n_users}, n_tx = {n_tx}"
        )));
    }
    let laplace_scale = params.angular_spread_deg.to_radians() / 2f64.sqrt();
    let gain = (n_tx as f64 / (params.n_clusters * params.n_rays) as f64).sqrt();
    let mut blocks = Vec::with_capacity(n_users);
    for _ in 0..n_users {
        let mut h = Array2::<c64>::zeros((1, n_tx));
        for _ in 0..params.n_clusters {
            let mean_angle = rng.random_range(0.0..TAU);
            for _ in 0..params.n_rays {
                let phi = mean_angle + laplace(laplace_scale, rng);
                let alpha = standard_complex_normal(rng) * gain;
                // Accumulate α a(φ)^H, i.e. the conjugated response, into the row.
                let a = ula_response(n_tx, phi);
                h.row_mut(0).zip_mut_with(&a, |hi, ai| *hi += alpha * ai.conj());
            }
        }
        blocks.push(h);
    }
    Ok(Channel::new(blocks)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn ula_response_has_unit_norm_and_linear_phase() {
        for (n, phi) in [(1, 0.3), (8, -1.2), (64, 2.5)] {
            let a = ula_response(n, phi);
            assert_eq!(a.len(), n);
            let norm: f64 = a.iter().map(|z| z.norm_sqr()).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-12, "n = {n}: norm {norm}");
            assert!((a[0] - c64::new(1.0 / (n as f64).sqrt(), 0.0)).norm() < 1e-12);
        }
        let a = ula_response(4, PI / 6.0); // sin φ = 1/2: a phase step of π/2.
        assert!((a[1] - c64::new(0.0, 0.5)).norm() < 1e-12, "{}", a[1]);
        assert!(ula_response(0, 0.1).is_empty());
    }

    #[test]
    fn laplace_offsets_have_the_requested_spread() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let b = 0.5;
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| laplace(b, &mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var / (2.0 * b * b) - 1.0).abs() < 0.03, "variance {var}");
    }

    #[test]
    fn mean_user_power_is_n_tx() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let n_tx = 16;
        let n_users = 3000;
        let h = saleh_valenzuela(&SvParams::default(), n_users, n_tx, &mut rng).unwrap();
        assert_eq!(h.n_users(), n_users);
        assert!(h.blocks().iter().all(|b| b.dim() == (1, n_tx)));
        let mean_power = h.energy() / n_users as f64;
        assert!((mean_power / n_tx as f64 - 1.0).abs() < 0.05, "E‖h‖² = {mean_power}");
    }

    #[test]
    fn single_ray_without_spread_is_a_scaled_steering_vector() {
        let params = SvParams { n_clusters: 1, n_rays: 1, angular_spread_deg: 0.0 };
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let h = saleh_valenzuela(&params, 1, 8, &mut rng).unwrap();
        let row = h.blocks()[0].row(0).to_owned();
        // Rank one along a(φ)^H with constant modulus √M|α|/√M = |α| per entry.
        let m0 = row[0].norm();
        assert!(row.iter().all(|z| (z.norm() - m0).abs() < 1e-12));
    }

    #[test]
    fn reproducible_and_checked() {
        let p = SvParams::default();
        let a = saleh_valenzuela(&p, 2, 8, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let b = saleh_valenzuela(&p, 2, 8, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let c = saleh_valenzuela(&p, 2, 8, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let invalid = |r: Result<Channel, ChannelError>| matches!(r, Err(ChannelError::InvalidParameter(_)));
        assert!(invalid(saleh_valenzuela(&p, 0, 8, &mut rng)));
        assert!(invalid(saleh_valenzuela(&p, 2, 0, &mut rng)));
        for bad in [
            SvParams { n_clusters: 0, ..SvParams::default() },
            SvParams { n_rays: 0, ..SvParams::default() },
            SvParams { angular_spread_deg: -1.0, ..SvParams::default() },
            SvParams { angular_spread_deg: f64::NAN, ..SvParams::default() },
        ] {
            assert!(bad.check().is_err());
            assert!(invalid(saleh_valenzuela(&bad, 2, 8, &mut rng)));
        }
    }
}
