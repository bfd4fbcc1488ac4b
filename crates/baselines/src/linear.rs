//! Closed-form linear precoders: MRT, ZF (block-diagonalising) and RZF.
//!
//! All three return `W: [M × K]` with `‖W‖_F² = P` exactly. For single-antenna users they are the
//! textbook precoders; for users with `N_k > 1` receive antennas (one stream each) the
//! generalisations are documented on each function and in `docs/baselines.md`.

use beamlab_core::Problem;
use beamlab_linalg_ops::{c64, cholesky_solve, normalize_total_power, svd};
use ndarray::{Array1, Array2, ArrayView2, Axis, concatenate};

use crate::BaselineError;

/// Dominant right singular vector `v` and singular value `s` of `H_k` (`H_k v = s u`), plus the
/// dominant left singular vector `u`.
pub(crate) fn dominant_mode(
    hk: ArrayView2<'_, c64>,
    user: usize,
) -> Result<(Array1<c64>, f64, Array1<c64>), BaselineError> {
    let (u, s, vt) = svd(hk)?;
    if s[0] <= f64::MIN_POSITIVE {
        return Err(BaselineError::ZeroChannel { user });
    }
    let v = vt.row(0).mapv(|z| z.conj());
    Ok((v, s[0], u.column(0).to_owned()))
}

/// Maximum-ratio transmission: `w_k = √(P/K) v_k` with `v_k` the dominant right singular vector
/// of `H_k` (for `N_k = 1`: `h_k^H/‖h_k‖`), equal power per user.
///
/// # Errors
/// [`BaselineError::ZeroChannel`] when a user's channel is all zero; input validation errors.
pub fn mrt(problem: &Problem) -> Result<Array2<c64>, BaselineError> {
    problem.validate()?;
    let (m, k) = (problem.n_tx(), problem.n_users());
    let mut w = Array2::<c64>::zeros((m, k));
    for (j, hk) in problem.channel.blocks().iter().enumerate() {
        let (v, _, _) = dominant_mode(hk.view(), j)?;
        w.column_mut(j).assign(&v);
    }
    Ok(normalize_total_power(w.view(), problem.power_budget)?)
}

/// Matched filter on channel columns: `W = √P H / ‖H‖_F` for `H = [h_1 … h_K]: [M × K]`
/// (user `k` receives `h_kᴴ w_k`), i.e. MRT with power proportional to each user's channel gain
/// instead of [`mrt`]'s equal power per user. It is the start of the (robust) WMMSE iterations
/// of MB-MAML (spec `mbmaml-offline-online.md` §3).
///
/// # Errors
/// [`BaselineError::Linalg`] for an all-zero or non-finite `H` or a bad budget.
pub fn matched_filter(h: ArrayView2<'_, c64>, power: f64) -> Result<Array2<c64>, BaselineError> {
    Ok(normalize_total_power(h, power)?)
}

/// Zero-forcing by block diagonalisation, one stream per user.
///
/// `w_k ∝ v_k / s_k` where `s_k, v_k` are the dominant singular value and right singular vector of
/// `H_k P_k`, and `P_k` projects onto the null space of every other user's channel
/// `H_{-k} = [H_j]_{j≠k}`. Hence `H_j w_k = 0` for every `j ≠ k` (no inter-user interference at
/// any receive antenna) and every user gets the same effective gain before the final scaling to
/// `‖W‖_F² = P`. For `N_k = 1` this is exactly the normalised pseudo-inverse `H^H (H H^H)^{-1}`.
///
/// # Errors
/// [`BaselineError::Infeasible`] when `Σ_{j≠k} N_j ≥ M` for some user (the null space is empty,
/// e.g. `K > M` single-antenna users) or a user's channel lies in the span of the others.
pub fn zf(problem: &Problem) -> Result<Array2<c64>, BaselineError> {
    problem.validate()?;
    let (m, k) = (problem.n_tx(), problem.n_users());
    let blocks = problem.channel.blocks();
    let n_total: usize = blocks.iter().map(|b| b.nrows()).sum();
    let mut w = Array2::<c64>::zeros((m, k));
    for (j, hk) in blocks.iter().enumerate() {
        let n_others = n_total - hk.nrows();
        if n_others >= m {
            return Err(BaselineError::Infeasible(format!(
                "zero-forcing needs more transmit antennas ({m}) than the other users' receive antennas ({n_others})"
            )));
        }
        // B = P_k H_k^H = H_k^H − H_{-k}^H (H_{-k} H_{-k}^H)^{-1} H_{-k} H_k^H.
        let hk_h = hk.t().mapv(|z| z.conj());
        let b = if n_others == 0 {
            hk_h
        } else {
            let others: Vec<_> = blocks.iter().enumerate().filter(|(i, _)| *i != j).map(|(_, b)| b.view()).collect();
            let h_o = concatenate(Axis(0), &others).map_err(|e| BaselineError::InvalidParameter(e.to_string()))?;
            let h_o_h = h_o.t().mapv(|z| z.conj());
            let gram = h_o.dot(&h_o_h);
            let y = cholesky_solve(gram.view(), h_o.dot(&hk_h).view()).map_err(|_| {
                BaselineError::Infeasible(format!("the other users' channels are rank deficient (user {j})"))
            })?;
            &hk_h - &h_o_h.dot(&y)
        };
        let eff = b.t().mapv(|z| z.conj()); // H_k P_k
        let (v, s, _) = dominant_mode(eff.view(), j).map_err(|_| {
            BaselineError::Infeasible(format!("user {j}'s channel lies in the span of the other users'"))
        })?;
        if s <= 1e-10 * frobenius(hk.view()) {
            return Err(BaselineError::Infeasible(format!("user {j}'s channel lies in the span of the other users'")));
        }
        w.column_mut(j).assign(&v.mapv(|z| z / s));
    }
    Ok(normalize_total_power(w.view(), problem.power_budget)?)
}

fn frobenius(a: ArrayView2<'_, c64>) -> f64 {
    a.iter().map(|z| z.norm_sqr()).sum::<f64>().sqrt()
}

/// Regularised zero-forcing: `W ∝ G^H (G G^H + α I)^{-1}` with `G = [u_k^H H_k]_k` (`[K × M]`,
/// each user's channel seen through its dominant left singular vector; `G = H` for `N_k = 1`),
/// scaled to `‖W‖_F² = P`. Default `α = K σ̄² / P` (σ̄² the mean noise power), the
/// SINR-maximising choice for i.i.d. channels in the large-system limit.
///
/// # Errors
/// [`BaselineError::InvalidParameter`] for a negative or non-finite `α`; input validation errors.
pub fn rzf(problem: &Problem, alpha: Option<f64>) -> Result<Array2<c64>, BaselineError> {
    problem.validate()?;
    let k = problem.n_users();
    let alpha =
        alpha.unwrap_or_else(|| k as f64 * problem.noise_power.iter().sum::<f64>() / k as f64 / problem.power_budget);
    if !(alpha.is_finite() && alpha >= 0.0) {
        return Err(BaselineError::InvalidParameter(format!(
            "RZF regularisation must be finite and >= 0, got {alpha}"
        )));
    }
    let g = effective_channel(problem)?;
    let g_h = g.t().mapv(|z| z.conj());
    let gram = g.dot(&g_h) + Array2::<c64>::eye(k) * c64::from(alpha);
    let x = if alpha > 0.0 {
        cholesky_solve(gram.view(), Array2::<c64>::eye(k).view())?
    } else {
        beamlab_linalg_ops::inverse(gram.view())
            .map_err(|_| BaselineError::Infeasible("RZF with alpha = 0 on a rank-deficient channel".into()))?
    };
    Ok(normalize_total_power(g_h.dot(&x).view(), problem.power_budget)?)
}

/// Effective MISO channel `G = [u_k^H H_k]_k`, `[K × M]`, `u_k` the dominant left singular vector.
fn effective_channel(problem: &Problem) -> Result<Array2<c64>, BaselineError> {
    let blocks = problem.channel.blocks();
    let mut g = Array2::<c64>::zeros((blocks.len(), problem.n_tx()));
    for (j, hk) in blocks.iter().enumerate() {
        if hk.nrows() == 1 {
            g.row_mut(j).assign(&hk.row(0));
        } else {
            let (_, _, u) = dominant_mode(hk.view(), j)?;
            g.row_mut(j).assign(&u.mapv(|z| z.conj()).dot(hk));
        }
    }
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::problem;
    use beamlab_linalg_ops::{total_power, user_rates};

    /// Columns proportional to the channel columns (common factor), total power exactly `P`;
    /// an all-zero channel is an error.
    #[test]
    fn matched_filter_scales_the_channel_to_the_budget() {
        let h = ndarray::array![[c64::new(1.0, 2.0), c64::new(0.0, -1.0)], [c64::new(3.0, 0.0), c64::new(0.5, 0.5)]];
        let w = matched_filter(h.view(), 2.0).unwrap();
        assert!((total_power(w.view()) - 2.0).abs() < 1e-12);
        let ratio = w[[0, 0]] / h[[0, 0]];
        assert!(w.iter().zip(h.iter()).all(|(a, b)| (a - b * ratio).norm() < 1e-12));
        assert!(ratio.im.abs() < 1e-15 && ratio.re > 0.0);
        assert!(matched_filter(Array2::<c64>::zeros((2, 2)).view(), 1.0).is_err());
    }

    #[test]
    fn zf_nulls_interference_at_every_antenna() {
        for &(m, k, nk) in &[(8usize, 4usize, 1usize), (8, 4, 2), (16, 3, 3), (4, 4, 1)] {
            let p = problem(m, k, nk, 10.0, 3);
            let w = zf(&p).unwrap();
            assert!((total_power(w.view()) - 10.0).abs() < 1e-9);
            for (i, hi) in p.channel.blocks().iter().enumerate() {
                let hw = hi.dot(&w);
                let own: f64 = hw.column(i).iter().map(|z| z.norm_sqr()).sum();
                for j in (0..k).filter(|&j| j != i) {
                    let leak: f64 = hw.column(j).iter().map(|z| z.norm_sqr()).sum();
                    assert!(leak < 1e-20 * own.max(1.0), "m={m} k={k} nk={nk}: leak {leak}");
                }
            }
        }
    }

    #[test]
    fn zf_single_antenna_equals_normalised_pseudo_inverse() {
        let p = problem(6, 3, 1, 2.0, 9);
        let h = p.channel.stacked();
        let pinv = beamlab_linalg_ops::pinv(h.view(), 1e-12).unwrap();
        let reference = normalize_total_power(pinv.view(), 2.0).unwrap();
        let w = zf(&p).unwrap();
        let diff: f64 = (&w - &reference).iter().map(|z| z.norm()).fold(0.0, f64::max);
        assert!(diff < 1e-10, "{diff}");
    }

    #[test]
    fn zf_rejects_too_many_streams() {
        let p = problem(3, 4, 1, 1.0, 1);
        assert!(matches!(zf(&p), Err(BaselineError::Infeasible(_))));
        let p = problem(4, 3, 2, 1.0, 1);
        assert!(matches!(zf(&p), Err(BaselineError::Infeasible(_))));
    }

    #[test]
    fn single_user_mrt_reaches_capacity() {
        for nk in [1usize, 2] {
            let p = problem(8, 1, nk, 5.0, 4);
            let w = mrt(&p).unwrap();
            let r = user_rates(p.channel.blocks(), w.view(), &p.noise_power).unwrap();
            let smax = svd(p.channel.blocks()[0].view()).unwrap().1[0];
            let cap = (1.0 + 5.0 * smax * smax / p.noise_power[0]).log2();
            assert!((r[0] - cap).abs() < 1e-10, "nk={nk}: {} vs {cap}", r[0]);
        }
    }

    #[test]
    fn rzf_interpolates_between_zf_and_mrt() {
        let p = problem(8, 4, 1, 1.0, 2);
        let w0 = rzf(&p, Some(0.0)).unwrap();
        let wz = zf(&p).unwrap();
        assert!((&w0 - &wz).iter().map(|z| z.norm()).fold(0.0, f64::max) < 1e-9);
        // Large α: direction tends to H^H (MRT with channel-gain weighting).
        let wl = rzf(&p, Some(1e9)).unwrap();
        let mrt_dir = normalize_total_power(p.channel.stacked().t().mapv(|z| z.conj()).view(), 1.0).unwrap();
        assert!((&wl - &mrt_dir).iter().map(|z| z.norm()).fold(0.0, f64::max) < 1e-6);
        assert!(rzf(&p, Some(-1.0)).is_err());
    }

    #[test]
    fn zero_channel_is_an_error() {
        let mut p = problem(4, 2, 1, 1.0, 1);
        let mut blocks = p.channel.blocks().to_vec();
        blocks[1].fill(c64::new(0.0, 0.0));
        p.channel = beamlab_core::Channel::new(blocks).unwrap();
        assert!(matches!(mrt(&p), Err(BaselineError::ZeroChannel { user: 1 })));
        assert!(zf(&p).is_err());
    }
}
