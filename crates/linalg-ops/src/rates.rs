//! System-model maths: SINR, rates, weighted sum rate and MSE of linear precoders.
//!
//! # System model
//! Downlink MU-MIMO with `K` users, `M` transmit antennas and `N_k ≥ 1` receive antennas at user
//! `k`, one stream per user. User `k` receives `y_k = H_k Σ_j w_j s_j + n_k` with
//! `H_k: [N_k × M]`, `w_j` the j-th column of the precoder `W: [M × K]`, and `n_k ~ CN(0, σ_k² I)`.
//! With an MMSE receiver the rate is
//!
//! `R_k = log2 det(I + H_k w_k w_k^H H_k^H C_k^{-1}) = log2(1 + g_k^H C_k^{-1} g_k)`,
//!
//! where `g_k = H_k w_k` and `C_k = σ_k² I + Σ_{j≠k} H_k w_j w_j^H H_k^H` (matrix determinant
//! lemma; [`user_rates_log_det`] evaluates the log-det form directly and the tests check both agree).
//! MISO (`N_k = 1`) is the special case of 1-row blocks. A hybrid precoder `(F, D)` acts as the
//! digital precoder `W = F D` ([`hybrid_user_rates`]).
//!
//! Rates are in bit/s/Hz (log base 2).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::small::hpd_solve_in_place;
use crate::{LinalgError, c64, check_finite};

/// Checks that `h` (per-user blocks), `w` and `noise` describe one consistent system.
///
/// # Errors
/// [`LinalgError::Empty`], [`LinalgError::ShapeMismatch`], [`LinalgError::NonFinite`] or
/// [`LinalgError::InvalidParameter`] (noise power not finite and positive).
pub fn check_system(h: &[Array2<c64>], w: ArrayView2<'_, c64>, noise: &[f64]) -> Result<(), LinalgError> {
    if h.is_empty() {
        return Err(LinalgError::Empty { what: "channel (no users)" });
    }
    let n_tx = h[0].ncols();
    for (k, hk) in h.iter().enumerate() {
        if hk.is_empty() {
            return Err(LinalgError::Empty { what: "channel block" });
        }
        if hk.ncols() != n_tx {
            return Err(LinalgError::ShapeMismatch {
                what: "channel block",
                expected: format!("{n_tx} transmit antennas (as user 0)"),
                found: format!("{} at user {k}", hk.ncols()),
            });
        }
        check_finite(hk.view(), "channel")?;
    }
    if w.nrows() != n_tx || w.ncols() != h.len() {
        return Err(LinalgError::ShapeMismatch {
            what: "precoder",
            expected: format!("{n_tx}x{} (antennas x users)", h.len()),
            found: format!("{}x{}", w.nrows(), w.ncols()),
        });
    }
    check_finite(w, "precoder")?;
    if noise.len() != h.len() {
        return Err(LinalgError::ShapeMismatch {
            what: "noise powers",
            expected: format!("{} values (one per user)", h.len()),
            found: format!("{}", noise.len()),
        });
    }
    if let Some(s) = noise.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(LinalgError::InvalidParameter(format!("noise power must be finite and > 0, got {s}")));
    }
    Ok(())
}

/// Per-user quantities shared by rates and gradients.
pub(crate) struct RateTerms {
    /// SINR of each user.
    pub sinr: Vec<f64>,
    /// `z_k = C_k^{-1} H_k w_k`.
    pub z: Vec<Array1<c64>>,
    /// `H_k W`, `[N_k × K]`.
    pub hw: Vec<Array2<c64>>,
}

pub(crate) fn rate_terms(h: &[Array2<c64>], w: ArrayView2<'_, c64>, noise: &[f64]) -> Result<RateTerms, LinalgError> {
    check_system(h, w, noise)?;
    let n_users = h.len();
    let mut sinr = Vec::with_capacity(n_users);
    let mut zs = Vec::with_capacity(n_users);
    let mut hws = Vec::with_capacity(n_users);
    for (k, hk) in h.iter().enumerate() {
        let hw = hk.dot(&w);
        let n_rx = hk.nrows();
        let mut c = Array2::<c64>::eye(n_rx) * c64::from(noise[k]);
        for j in (0..n_users).filter(|&j| j != k) {
            let col = hw.column(j);
            for a in 0..n_rx {
                for b in 0..n_rx {
                    c[[a, b]] += col[a] * col[b].conj();
                }
            }
        }
        let g = hw.column(k).to_owned();
        let mut z = g.clone();
        hpd_solve_in_place(&mut c, &mut z)?;
        let s: f64 = g.iter().zip(z.iter()).map(|(gi, zi)| (gi.conj() * zi).re).sum();
        if !s.is_finite() {
            return Err(LinalgError::Degenerate(format!(
                "user {k}: SINR overflows f64 (channel or precoder entries too large)"
            )));
        }
        sinr.push(s.max(0.0));
        zs.push(z);
        hws.push(hw);
    }
    Ok(RateTerms { sinr, z: zs, hw: hws })
}

/// SINR of each user with an MMSE receiver: `g_k^H C_k^{-1} g_k`.
///
/// # Errors
/// As [`check_system`].
pub fn user_sinrs(h: &[Array2<c64>], w: ArrayView2<'_, c64>, noise: &[f64]) -> Result<Array1<f64>, LinalgError> {
    Ok(Array1::from(rate_terms(h, w, noise)?.sinr))
}

/// Rate of each user in bit/s/Hz, `log2(1 + SINR_k)`.
///
/// # Errors
/// As [`check_system`].
pub fn user_rates(h: &[Array2<c64>], w: ArrayView2<'_, c64>, noise: &[f64]) -> Result<Array1<f64>, LinalgError> {
    Ok(user_sinrs(h, w, noise)?.mapv(|s| (1.0 + s).log2()))
}

/// Rate of each user by the log-det formula
/// `log2 det(σ² I + Σ_j H_k w_j w_j^H H_k^H) − log2 det(σ² I + Σ_{j≠k} …)` (LAPACK Cholesky).
///
/// Slower than [`user_rates`]; kept as an independent check of it.
///
/// # Errors
/// As [`check_system`].
pub fn user_rates_log_det(
    h: &[Array2<c64>],
    w: ArrayView2<'_, c64>,
    noise: &[f64],
) -> Result<Array1<f64>, LinalgError> {
    check_system(h, w, noise)?;
    let mut out = Array1::zeros(h.len());
    for (k, hk) in h.iter().enumerate() {
        let hw = hk.dot(&w);
        let n_rx = hk.nrows();
        let mut a = Array2::<c64>::eye(n_rx) * c64::from(noise[k]);
        let mut c = a.clone();
        for j in 0..h.len() {
            let col = hw.column(j).insert_axis(ndarray::Axis(1)).to_owned();
            let outer = col.dot(&col.t().mapv(|z| z.conj()));
            a += &outer;
            if j != k {
                c += &outer;
            }
        }
        out[k] = (crate::log_det_hpd(a.view())? - crate::log_det_hpd(c.view())?) / std::f64::consts::LN_2;
    }
    Ok(out)
}

/// Weighted sum rate `Σ_k α_k R_k`.
///
/// # Errors
/// As [`check_system`], plus a shape error when `weights` has the wrong length.
pub fn weighted_sum_rate(
    h: &[Array2<c64>],
    w: ArrayView2<'_, c64>,
    noise: &[f64],
    weights: &[f64],
) -> Result<f64, LinalgError> {
    check_weights(weights, h.len())?;
    let r = user_rates(h, w, noise)?;
    Ok(r.iter().zip(weights).map(|(r, a)| r * a).sum())
}

pub(crate) fn check_weights(weights: &[f64], n_users: usize) -> Result<(), LinalgError> {
    if weights.len() != n_users {
        return Err(LinalgError::ShapeMismatch {
            what: "user weights",
            expected: format!("{n_users} values"),
            found: format!("{}", weights.len()),
        });
    }
    if weights.iter().any(|a| !a.is_finite() || *a < 0.0) {
        return Err(LinalgError::InvalidParameter("user weights must be finite and >= 0".into()));
    }
    Ok(())
}

/// MSE of each user's symbol estimate with the MMSE receiver: `e_k = 1 / (1 + SINR_k)`.
///
/// # Errors
/// As [`check_system`].
pub fn user_mmse(h: &[Array2<c64>], w: ArrayView2<'_, c64>, noise: &[f64]) -> Result<Array1<f64>, LinalgError> {
    Ok(user_sinrs(h, w, noise)?.mapv(|s| 1.0 / (1.0 + s)))
}

/// MSE of each user with a given receive filter `u_k` (`ŝ_k = u_k^H y_k`):
/// `e_k = |1 − u_k^H H_k w_k|² + Σ_{j≠k} |u_k^H H_k w_j|² + σ_k² ‖u_k‖²`.
///
/// # Errors
/// As [`check_system`], plus shape errors for `receivers`.
pub fn user_mse_with_receivers(
    h: &[Array2<c64>],
    w: ArrayView2<'_, c64>,
    receivers: &[ArrayView1<'_, c64>],
    noise: &[f64],
) -> Result<Array1<f64>, LinalgError> {
    check_system(h, w, noise)?;
    if receivers.len() != h.len() {
        return Err(LinalgError::ShapeMismatch {
            what: "receivers",
            expected: format!("{} filters", h.len()),
            found: format!("{}", receivers.len()),
        });
    }
    let mut out = Array1::zeros(h.len());
    for (k, hk) in h.iter().enumerate() {
        let u = receivers[k];
        if u.len() != hk.nrows() {
            return Err(LinalgError::ShapeMismatch {
                what: "receiver",
                expected: format!("{} entries", hk.nrows()),
                found: format!("{} at user {k}", u.len()),
            });
        }
        let uh_h = u.mapv(|z| z.conj()).dot(hk);
        let t = uh_h.dot(&w);
        let mut e = noise[k] * u.iter().map(|z| z.norm_sqr()).sum::<f64>();
        for (j, tj) in t.iter().enumerate() {
            e += if j == k { (c64::new(1.0, 0.0) - tj).norm_sqr() } else { tj.norm_sqr() };
        }
        out[k] = e;
    }
    Ok(out)
}

/// Rates of a hybrid precoder `(F: [N × M_RF], D: [M_RF × K])`, i.e. of `W = F D`.
///
/// # Errors
/// As [`check_system`], plus a shape error when `F` and `D` do not chain.
pub fn hybrid_user_rates(
    h: &[Array2<c64>],
    f: ArrayView2<'_, c64>,
    d: ArrayView2<'_, c64>,
    noise: &[f64],
) -> Result<Array1<f64>, LinalgError> {
    user_rates(h, hybrid_product(f, d)?.view(), noise)
}

/// `F D` after checking that the shapes chain and the entries are finite.
///
/// # Errors
/// [`LinalgError::ShapeMismatch`] or [`LinalgError::NonFinite`].
pub fn hybrid_product(f: ArrayView2<'_, c64>, d: ArrayView2<'_, c64>) -> Result<Array2<c64>, LinalgError> {
    if f.ncols() != d.nrows() {
        return Err(LinalgError::ShapeMismatch {
            what: "hybrid precoder",
            expected: format!("D with {} rows (RF chains of F)", f.ncols()),
            found: format!("{} rows", d.nrows()),
        });
    }
    check_finite(f, "analog precoder F")?;
    check_finite(d, "digital precoder D")?;
    Ok(f.dot(&d))
}

/// Splits the rows of a stacked MISO channel `[K × M]` into 1-row user blocks.
#[must_use]
pub fn miso_blocks(h: ArrayView2<'_, c64>) -> Vec<Array2<c64>> {
    h.outer_iter().map(|row| row.to_owned().insert_axis(ndarray::Axis(0))).collect()
}

/// Stacks user blocks into `H = [H_1; …; H_K]`, `[Σ N_k × M]`.
///
/// # Errors
/// [`LinalgError::Empty`] or [`LinalgError::ShapeMismatch`] when the blocks disagree on `M`.
pub fn stack_blocks(h: &[Array2<c64>]) -> Result<Array2<c64>, LinalgError> {
    let views: Vec<_> = h.iter().map(|b| b.view()).collect();
    if views.is_empty() {
        return Err(LinalgError::Empty { what: "channel (no users)" });
    }
    ndarray::concatenate(ndarray::Axis(0), &views).map_err(|_| LinalgError::ShapeMismatch {
        what: "channel blocks",
        expected: "the same number of transmit antennas for every user".into(),
        found: "differing column counts".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{rand_blocks, rand_mat};

    #[test]
    fn sinr_form_equals_log_det_form() {
        for &(m, k, nk) in &[(4usize, 1usize, 1usize), (6, 3, 2), (8, 4, 3), (5, 2, 1)] {
            let h = rand_blocks(k, nk, m, 1);
            let w = rand_mat(m, k, 2);
            let noise = vec![0.7; k];
            let a = user_rates(&h, w.view(), &noise).unwrap();
            let b = user_rates_log_det(&h, w.view(), &noise).unwrap();
            for (x, y) in a.iter().zip(b.iter()) {
                assert!((x - y).abs() < 1e-10, "{x} vs {y}");
            }
        }
    }

    #[test]
    fn single_user_mrt_capacity() {
        let h = rand_blocks(1, 1, 8, 3);
        let hn: f64 = h[0].iter().map(|z| z.norm_sqr()).sum();
        let p = 4.0;
        let w = h[0].t().mapv(|z| z.conj()) * c64::from((p / hn).sqrt());
        let r = user_rates(&h, w.view(), &[0.5]).unwrap();
        assert!((r[0] - (1.0 + p * hn / 0.5).log2()).abs() < 1e-12);
    }

    #[test]
    fn mmse_receiver_mse_matches_closed_form() {
        let h = rand_blocks(3, 2, 6, 5);
        let w = rand_mat(6, 3, 6);
        let noise = [1.0, 0.5, 2.0];
        let terms = rate_terms(&h, w.view(), &noise).unwrap();
        // The MMSE receiver of a single stream is u_k = z_k / (1 + SINR_k).
        let us: Vec<Array1<c64>> = terms.z.iter().zip(&terms.sinr).map(|(z, s)| z.mapv(|v| v / (1.0 + s))).collect();
        let views: Vec<_> = us.iter().map(|u| u.view()).collect();
        let e1 = user_mse_with_receivers(&h, w.view(), &views, &noise).unwrap();
        let e2 = user_mmse(&h, w.view(), &noise).unwrap();
        for (a, b) in e1.iter().zip(e2.iter()) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    #[test]
    fn hybrid_rates_equal_digital_rates_of_product() {
        let h = rand_blocks(3, 1, 8, 7);
        let f = rand_mat(8, 4, 8);
        let d = rand_mat(4, 3, 9);
        let a = hybrid_user_rates(&h, f.view(), d.view(), &[1.0; 3]).unwrap();
        let b = user_rates(&h, f.dot(&d).view(), &[1.0; 3]).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn bad_systems_are_rejected() {
        let h = rand_blocks(2, 1, 4, 1);
        let w = rand_mat(4, 2, 2);
        assert!(matches!(user_rates(&[], w.view(), &[]), Err(LinalgError::Empty { .. })));
        assert!(matches!(user_rates(&h, rand_mat(3, 2, 1).view(), &[1.0; 2]), Err(LinalgError::ShapeMismatch { .. })));
        assert!(matches!(user_rates(&h, w.view(), &[1.0]), Err(LinalgError::ShapeMismatch { .. })));
        assert!(matches!(user_rates(&h, w.view(), &[1.0, 0.0]), Err(LinalgError::InvalidParameter(_))));
        let mut wn = w.clone();
        wn[[0, 0]] = c64::new(f64::NAN, 0.0);
        assert!(matches!(user_rates(&h, wn.view(), &[1.0; 2]), Err(LinalgError::NonFinite { .. })));
    }
}
