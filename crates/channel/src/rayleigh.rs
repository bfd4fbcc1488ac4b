//! i.i.d. Rayleigh MU-MIMO channels (model 1 of the channel spec).
//!
//! System model: user `k` receives `y_k = H_k x + n_k` with `H_k: [N_rx × M]` and every entry
//! i.i.d. `CN(0, 1)` (real and imaginary parts independent `N(0, 1/2)`), so the expected per-entry
//! power is 1 and `E‖H_k‖_F² = N_rx M`.

use beamlab_core::Channel;
use ndarray::Array2;

use crate::{ChannelError, standard_complex_normal};

/// Draws an i.i.d. Rayleigh channel: `n_users` blocks `H_k: [n_rx × n_tx]` with `CN(0, 1)`
/// entries.
///
/// Entries are drawn user by user, row by row, real part before imaginary part, so a given seed
/// always gives the same channel.
///
/// # Errors
/// [`ChannelError::InvalidParameter`] when any size is zero.
///
/// # Example
/// ```
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
/// let h = beamlab_channel::rayleigh(2, 1, 4, &mut rng)?;
/// assert_eq!(h.blocks()[1].dim(), (1, 4));
/// assert!(beamlab_channel::rayleigh(0, 1, 4, &mut rng).is_err());
/// # Ok::<(), beamlab_channel::ChannelError>(())
/// ```
pub fn rayleigh<R: rand::Rng + ?Sized>(
    n_users: usize,
    n_rx: usize,
    n_tx: usize,
    rng: &mut R,
) -> Result<Channel, ChannelError> {
    if n_users == 0 || n_rx == 0 || n_tx == 0 {
        return Err(ChannelError::InvalidParameter(format!(
            "Rayleigh channel sizes must be positive, got n_users = {n_users}, n_rx = {n_rx}, \
             n_tx = {n_tx}"
        )));
    }
    let blocks =
        (0..n_users).map(|_| Array2::from_shape_simple_fn((n_rx, n_tx), || standard_complex_normal(rng))).collect();
    Ok(Channel::new(blocks)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_complex::Complex64;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn entries_are_standard_complex_normal() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let h = rayleigh(10, 5, 1000, &mut rng).unwrap();
        let n = 10.0 * 5.0 * 1000.0;
        let power = h.energy() / n;
        assert!((power - 1.0).abs() < 0.02, "mean entry power {power}");
        let mean: Complex64 = h.blocks().iter().flat_map(|b| b.iter()).sum::<Complex64>() / n;
        assert!(mean.norm() < 0.02, "mean {mean}");
        // Real and imaginary parts carry half the power each.
        let re: f64 = h.blocks().iter().flat_map(|b| b.iter()).map(|z| z.re * z.re).sum::<f64>() / n;
        assert!((re - 0.5).abs() < 0.02, "real-part power {re}");
    }

    #[test]
    fn shapes_and_reproducibility() {
        let a = rayleigh(3, 2, 4, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        assert_eq!(a.n_users(), 3);
        assert_eq!(a.n_rx(), vec![2, 2, 2]);
        assert_eq!(a.n_tx(), 4);
        let b = rayleigh(3, 2, 4, &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        assert_eq!(a, b);
        let c = rayleigh(3, 2, 4, &mut ChaCha8Rng::seed_from_u64(6)).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn zero_sizes_are_rejected() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for (k, n, m) in [(0, 1, 1), (1, 0, 1), (1, 1, 0)] {
            assert!(matches!(rayleigh(k, n, m, &mut rng), Err(ChannelError::InvalidParameter(_))));
        }
    }

    #[test]
    fn accepts_a_dyn_rng() {
        let mut inner = ChaCha8Rng::seed_from_u64(3);
        let rng: &mut dyn rand::RngCore = &mut inner;
        let h = rayleigh(1, 1, 2, rng).unwrap();
        assert_eq!(h, rayleigh(1, 1, 2, &mut ChaCha8Rng::seed_from_u64(3)).unwrap());
    }
}
