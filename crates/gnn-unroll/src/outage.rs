//! Outage evaluation (spec §1, (10)) and the target margin of G-HBF-marg (spec §2).
//!
//! For an effective precoder `W = A [√p_1 w_1 … √p_K w_K]: [N × K]` and channels `h_k: [N]`
//! (received signal `h_k^H x`, unit noise),
//! `SINR_k = |h_k^H W_k|² / (Σ_{j≠k} |h_k^H W_j|² + 1)`. User `k` is in outage when
//! `SINR_k < γ_k`. The outage probability given the transmitter's information is estimated by
//! Monte-Carlo over the channel posterior `h_k ~ CN(ĥ_k, C_e,k)` ([`posterior_outage`]), or
//! empirically over instances whose true channels are known (validation data).

use beamlab_linalg_ops::c64;
use ndarray::{Array1, Array2, ArrayView2};
use rand::Rng;

use crate::Error;
use crate::data::{complex_normal, psd_sqrt};

/// SINRs `[K]` of the effective precoder `w: [N × K]` on channels `h_k: [N]` (unit noise).
///
/// # Errors
/// [`Error::ShapeMismatch`] when the number of channels or their length does not match `w`.
pub fn sinrs(w: ArrayView2<'_, c64>, h: &[Array1<c64>]) -> Result<Vec<f64>, Error> {
    let (n, k) = w.dim();
    if h.len() != k {
        return Err(Error::shape("channels (one per precoder column)", k, h.len()));
    }
    if let Some(v) = h.iter().find(|v| v.len() != n) {
        return Err(Error::shape("channel length (precoder rows)", n, v.len()));
    }
    Ok(h.iter()
        .enumerate()
        .map(|(u, hk)| {
            let gains: Vec<f64> = w
                .columns()
                .into_iter()
                .map(|c| hk.iter().zip(c).map(|(a, b)| a.conj() * b).sum::<c64>().norm_sqr())
                .collect();
            let total: f64 = gains.iter().sum();
            gains[u] / (total - gains[u] + 1.0)
        })
        .collect())
}

/// Per-user outage probabilities `Pr[SINR_k < γ_k]` under the posterior `h_k ~ CN(ĥ_k, C_e,k)`,
/// estimated from `n_draws` joint draws.
///
/// # Errors
/// [`Error::ShapeMismatch`] for mismatched counts or shapes, [`Error::InvalidParameter`] for
/// `n_draws = 0`; linear-algebra errors.
pub fn posterior_outage<R: Rng + ?Sized>(
    w: ArrayView2<'_, c64>,
    h_est: &[Array1<c64>],
    err_cov: &[Array2<c64>],
    targets: &[f64],
    n_draws: usize,
    rng: &mut R,
) -> Result<Vec<f64>, Error> {
    let k = h_est.len();
    if err_cov.len() != k {
        return Err(Error::shape("error covariances (one per estimate)", k, err_cov.len()));
    }
    if targets.len() != k {
        return Err(Error::shape("SINR targets (one per estimate)", k, targets.len()));
    }
    if n_draws == 0 {
        return Err(Error::param("n_draws", "at least one Monte-Carlo draw, got 0"));
    }
    let roots = err_cov.iter().map(psd_sqrt).collect::<Result<Vec<_>, _>>()?;
    let mut count = vec![0usize; k];
    for _ in 0..n_draws {
        let h: Vec<Array1<c64>> =
            h_est.iter().zip(&roots).map(|(e, s)| e + &s.dot(&complex_normal(e.len(), rng))).collect();
        for (u, (s, g)) in sinrs(w, &h)?.iter().zip(targets).enumerate() {
            if s < g {
                count[u] += 1;
            }
        }
    }
    Ok(count.iter().map(|&c| c as f64 / n_draws as f64).collect())
}

/// Bisection of the target margin `Δ` (in dB, on `[lo_db, hi_db]`) such that the validation outage
/// `outage_at(Δ_linear)` is approximately `epsilon`; outage is assumed non-increasing in `Δ`.
/// Returns the smallest visited margin (linear) whose outage is `≤ epsilon`, or the upper end.
///
/// # Errors
/// Any error of `outage_at`; [`Error::InvalidParameter`] (`lo_db`) for an empty interval.
pub fn calibrate_margin<F>(mut outage_at: F, epsilon: f64, lo_db: f64, hi_db: f64, n_steps: usize) -> Result<f64, Error>
where
    F: FnMut(f64) -> Result<f64, Error>,
{
    if !(lo_db <= hi_db) {
        return Err(Error::param("lo_db", format!("margin interval [{lo_db}, {hi_db}] dB is empty")));
    }
    let lin = |db: f64| 10f64.powf(db / 10.0);
    let (mut lo, mut hi) = (lo_db, hi_db);
    if outage_at(lin(lo))? <= epsilon {
        return Ok(lin(lo));
    }
    for _ in 0..n_steps {
        let mid = 0.5 * (lo + hi);
        if outage_at(lin(mid))? <= epsilon {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(lin(hi))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use rand::SeedableRng;

    #[test]
    fn sinr_of_orthogonal_users() {
        let w = array![[c64::new(2.0, 0.0), c64::new(0.0, 0.0)], [c64::new(0.0, 0.0), c64::new(0.0, 1.0)]];
        let h = vec![array![c64::new(1.0, 0.0), c64::new(0.5, 0.0)], array![c64::new(0.0, 0.0), c64::new(1.0, 0.0)]];
        let s = sinrs(w.view(), &h).unwrap();
        assert!((s[0] - 4.0 / 1.25).abs() < 1e-12 && (s[1] - 1.0).abs() < 1e-12);
        assert!(sinrs(w.view(), &h[..1]).is_err());
    }

    #[test]
    fn posterior_outage_matches_a_closed_form() {
        // One user, one antenna, w = 1, ĥ = 0, C_e = 1: |h|² ~ Exp(1), Pr[|h|² < γ] = 1 − e^{−γ}.
        let w = array![[c64::new(1.0, 0.0)]];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        let o = posterior_outage(
            w.view(),
            &[array![c64::new(0.0, 0.0)]],
            &[array![[c64::new(1.0, 0.0)]]],
            &[0.5],
            20_000,
            &mut rng,
        )
        .unwrap();
        assert!((o[0] - (1.0 - (-0.5f64).exp())).abs() < 0.01, "{}", o[0]);
        // No error: no outage exactly at a design that meets the target.
        let o = posterior_outage(
            w.view(),
            &[array![c64::new(1.0, 0.0)]],
            &[array![[c64::new(0.0, 0.0)]]],
            &[0.9],
            10,
            &mut rng,
        )
        .unwrap();
        assert_eq!(o[0], 0.0);
    }

    #[test]
    fn margin_bisection_finds_the_threshold() {
        // Outage 1 below 3 dB and 0 above: the calibrated margin converges to 3 dB from above.
        let d = calibrate_margin(|m| Ok(if m < 10f64.powf(0.3) { 1.0 } else { 0.0 }), 0.1, 0.0, 10.0, 30).unwrap();
        assert!((10.0 * d.log10() - 3.0).abs() < 1e-6 && 10.0 * d.log10() >= 3.0);
        assert_eq!(calibrate_margin(|_| Ok(0.0), 0.1, 0.0, 10.0, 5).unwrap(), 1.0);
    }
}
