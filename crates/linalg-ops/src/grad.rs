//! Analytic gradients of rates and rate-based losses.
//!
//! # Convention
//! All gradients are **Wirtinger derivatives with respect to the conjugate**, `∂f/∂W*`, of a real
//! function `f`. The first-order change is `df = 2 Re tr((∂f/∂W*)^H dW)`, and the steepest-ascent
//! direction is `∂f/∂W*` itself. PyTorch's `W.grad` for a complex leaf equals `2 ∂f/∂W*`; multiply
//! by 2 to compare with it (or with the papers' formulas, which use PyTorch's convention).
//!
//! # Formulas
//! With `g_k = H_k w_k`, `C_k` the interference-plus-noise covariance of user `k`,
//! `z_k = C_k^{-1} g_k` and `s_k = g_k^H z_k` (see [`crate::rates`]):
//!
//! - `∂R_k/∂w_k* = H_k^H z_k / ((1 + s_k) ln 2)`,
//! - `∂R_k/∂w_j* = −H_k^H z_k (z_k^H H_k w_j) / ((1 + s_k) ln 2)` for `j ≠ k`.
//!
//! Every other gradient follows by the chain rule: `∂/∂F* = G_W D^H` and `∂/∂D* = F^H G_W` for a
//! hybrid `W = F D`; `∂/∂X* = H G_W` for the base-matrix form `W = H^H X` of GLNN.

use ndarray::{Array1, Array2, ArrayView2};

use crate::rates::{check_weights, rate_terms};
use crate::{LinalgError, c64};

/// Gradient `∂(Σ_k c_k R_k)/∂W*` for arbitrary real coefficients `c_k` (the chain-rule entry
/// point: any loss of the rates has `c_k = ∂L/∂R_k`). Returns `(rates, gradient [M × K])`.
///
/// # Errors
/// As [`crate::check_system`], plus a shape error when `coeffs` has the wrong length.
pub fn rate_gradient(
    h: &[Array2<c64>],
    w: ArrayView2<'_, c64>,
    noise: &[f64],
    coeffs: &[f64],
) -> Result<(Array1<f64>, Array2<c64>), LinalgError> {
    let terms = rate_terms(h, w, noise)?;
    if coeffs.len() != h.len() || coeffs.iter().any(|c| !c.is_finite()) {
        return Err(LinalgError::ShapeMismatch {
            what: "rate coefficients",
            expected: format!("{} finite values", h.len()),
            found: format!("{} values", coeffs.len()),
        });
    }
    Ok(gradient_from_terms(h, &terms, coeffs, w.raw_dim()))
}

fn gradient_from_terms(
    h: &[Array2<c64>],
    terms: &crate::rates::RateTerms,
    coeffs: &[f64],
    dim: ndarray::Ix2,
) -> (Array1<f64>, Array2<c64>) {
    let n_users = h.len();
    let mut grad = Array2::<c64>::zeros(dim);
    let mut rates = Array1::zeros(n_users);
    for k in 0..n_users {
        let s = terms.sinr[k];
        rates[k] = (1.0 + s).log2();
        let coef = coeffs[k] / ((1.0 + s) * std::f64::consts::LN_2);
        if coef == 0.0 {
            continue;
        }
        let z = &terms.z[k];
        // a = H_k^H z_k  (M entries).
        let a: Array1<c64> = h[k].t().mapv(|v| v.conj()).dot(z);
        // r_j = −z^H H_k w_j for j ≠ k, r_k = 1.
        let zc = z.mapv(|v| v.conj());
        let mut r: Array1<c64> = zc.dot(&terms.hw[k]).mapv(|v| -v);
        r[k] = c64::new(1.0, 0.0);
        for (mut col, rj) in grad.columns_mut().into_iter().zip(r.iter()) {
            let f = rj * coef;
            col.zip_mut_with(&a, |g, ai| *g += ai * f);
        }
    }
    (rates, grad)
}

/// Weighted sum rate and its gradient `∂WSR/∂W*`. Returns `(WSR, gradient)`.
///
/// # Errors
/// As [`rate_gradient`], plus a weight check.
pub fn wsr_gradient(
    h: &[Array2<c64>],
    w: ArrayView2<'_, c64>,
    noise: &[f64],
    weights: &[f64],
) -> Result<(f64, Array2<c64>), LinalgError> {
    check_weights(weights, h.len())?;
    let (rates, g) = rate_gradient(h, w, noise, weights)?;
    Ok((rates.iter().zip(weights).map(|(r, a)| r * a).sum(), g))
}

/// A rate-based loss with fairness penalties, as used by GLNN and GGML:
///
/// `L = −a Σ_k R_k + γ Σ_k ReLU(λ − R_k) + β Var(R)`, with `Var` the unbiased sample variance
/// (`Σ (R_k − R̄)² / (K − 1)`, taken as 0 for `K = 1`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PenalisedLoss {
    /// `a`, the weight of the sum rate (1 for GLNN, `1/K` for GGML's per-user mean).
    pub rate_scale: f64,
    /// `γ`, weight of the hinge penalty.
    pub relu_weight: f64,
    /// `λ`, the rate (bit/s/Hz) below which the hinge penalty is active.
    pub relu_threshold: f64,
    /// `β`, weight of the variance penalty.
    pub var_weight: f64,
}

impl PenalisedLoss {
    /// GLNN's loss as the reference code runs it: `a = 1, γ = 0.7, λ = 2.5, β = 0.3`.
    #[must_use]
    pub fn glnn() -> Self {
        Self { rate_scale: 1.0, relu_weight: 0.7, relu_threshold: 2.5, var_weight: 0.3 }
    }

    /// GGML's loss: mean rate per user with variance penalty, `a = 1/K, γ = 0, β = 0.2`.
    #[must_use]
    pub fn ggml(n_users: usize) -> Self {
        Self { rate_scale: 1.0 / n_users.max(1) as f64, relu_weight: 0.0, relu_threshold: 0.0, var_weight: 0.2 }
    }

    /// The loss value and `∂L/∂R_k` (the hinge uses the sub-gradient 0 at its kink).
    #[must_use]
    pub fn value_and_rate_derivative(&self, rates: &[f64]) -> (f64, Vec<f64>) {
        let n = rates.len();
        let mean = if n == 0 { 0.0 } else { rates.iter().sum::<f64>() / n as f64 };
        let var = if n > 1 { rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        let mut value = self.var_weight * var;
        let mut d = Vec::with_capacity(n);
        for &r in rates {
            value += -self.rate_scale * r + self.relu_weight * (self.relu_threshold - r).max(0.0);
            let mut dr = -self.rate_scale;
            if r < self.relu_threshold {
                dr -= self.relu_weight;
            }
            if n > 1 {
                dr += self.var_weight * 2.0 * (r - mean) / (n - 1) as f64;
            }
            d.push(dr);
        }
        (value, d)
    }
}

/// Value, rates and gradient `∂L/∂W*` of a [`PenalisedLoss`] at `W`.
#[derive(Clone, Debug)]
pub struct LossGradient {
    /// Loss value.
    pub loss: f64,
    /// Per-user rates at `W`.
    pub rates: Array1<f64>,
    /// `∂L/∂W*`, `[M × K]`.
    pub grad: Array2<c64>,
}

/// Evaluates a [`PenalisedLoss`] and its gradient with respect to the digital precoder.
///
/// # Errors
/// As [`crate::check_system`].
pub fn penalised_loss_gradient(
    h: &[Array2<c64>],
    w: ArrayView2<'_, c64>,
    noise: &[f64],
    loss: &PenalisedLoss,
) -> Result<LossGradient, LinalgError> {
    let terms = rate_terms(h, w, noise)?;
    let rates: Vec<f64> = terms.sinr.iter().map(|s| (1.0 + s).log2()).collect();
    let (value, coeffs) = loss.value_and_rate_derivative(&rates);
    let (rates, grad) = gradient_from_terms(h, &terms, &coeffs, w.raw_dim());
    Ok(LossGradient { loss: value, rates, grad })
}

/// Chain rule for a hybrid precoder `W = F D`: given `G_W = ∂f/∂W*`, returns
/// `(∂f/∂F*, ∂f/∂D*) = (G_W D^H, F^H G_W)`.
///
/// # Errors
/// Shape errors when the three matrices do not chain.
pub fn hybrid_chain_rule(
    f: ArrayView2<'_, c64>,
    d: ArrayView2<'_, c64>,
    g_w: ArrayView2<'_, c64>,
) -> Result<(Array2<c64>, Array2<c64>), LinalgError> {
    if f.ncols() != d.nrows() || g_w.nrows() != f.nrows() || g_w.ncols() != d.ncols() {
        return Err(LinalgError::ShapeMismatch {
            what: "hybrid chain rule",
            expected: format!("F [N×M], D [M×K], G [N×K] with F {}x{}", f.nrows(), f.ncols()),
            found: format!("D {}x{}, G {}x{}", d.nrows(), d.ncols(), g_w.nrows(), g_w.ncols()),
        });
    }
    let g_f = g_w.dot(&d.t().mapv(|z| z.conj()));
    let g_d = f.t().mapv(|z| z.conj()).dot(&g_w);
    Ok((g_f, g_d))
}

/// `(rates, ∂/∂F*, ∂/∂D*)` of a hybrid precoder.
pub type HybridGradient = (Array1<f64>, Array2<c64>, Array2<c64>);

/// Rates and gradients `(∂/∂F*, ∂/∂D*)` of `Σ_k c_k R_k` for a hybrid precoder (MISO or MIMO users).
///
/// # Errors
/// As [`rate_gradient`] and [`crate::hybrid_product`].
pub fn hybrid_rate_gradient(
    h: &[Array2<c64>],
    f: ArrayView2<'_, c64>,
    d: ArrayView2<'_, c64>,
    noise: &[f64],
    coeffs: &[f64],
) -> Result<HybridGradient, LinalgError> {
    let w = crate::hybrid_product(f, d)?;
    let (rates, g_w) = rate_gradient(h, w.view(), noise, coeffs)?;
    let (g_f, g_d) = hybrid_chain_rule(f, d, g_w.view())?;
    Ok((rates, g_f, g_d))
}

/// Chain rule for the base-matrix form `W = H^H X` (`H` the stacked channel `[N × M]`,
/// `X: [N × K]`): `∂f/∂X* = H G_W`.
///
/// # Errors
/// Shape error when `H` and `G_W` disagree on `M`.
pub fn base_matrix_chain_rule(
    h_stacked: ArrayView2<'_, c64>,
    g_w: ArrayView2<'_, c64>,
) -> Result<Array2<c64>, LinalgError> {
    if h_stacked.ncols() != g_w.nrows() {
        return Err(LinalgError::ShapeMismatch {
            what: "base-matrix chain rule",
            expected: format!("gradient with {} rows", h_stacked.ncols()),
            found: format!("{} rows", g_w.nrows()),
        });
    }
    Ok(h_stacked.dot(&g_w))
}

/// Chain rule through the total-power normalisation `W = √P · V / ‖V‖_F`: given
/// `G_W = ∂f/∂W*` at `W`, returns `∂f/∂V* = (√P/‖V‖) (G_W − Re tr(G_W^H V) V / ‖V‖²)`
/// (the component along `V`, which the normalisation removes, is projected out).
///
/// # Errors
/// Shape mismatch, non-positive power, or an all-zero `V`.
pub fn power_normalization_chain_rule(
    v: ArrayView2<'_, c64>,
    g_w: ArrayView2<'_, c64>,
    power: f64,
) -> Result<Array2<c64>, LinalgError> {
    crate::project::check_power_value(power)?;
    if v.dim() != g_w.dim() {
        return Err(LinalgError::ShapeMismatch {
            what: "power-normalisation chain rule",
            expected: format!("gradient of shape {:?}", v.dim()),
            found: format!("{:?}", g_w.dim()),
        });
    }
    let n2 = crate::total_power(v);
    if n2 <= f64::MIN_POSITIVE {
        return Err(LinalgError::Degenerate("cannot differentiate the normalisation of an all-zero matrix".into()));
    }
    let n = n2.sqrt();
    let inner: f64 = g_w.iter().zip(v.iter()).map(|(g, x)| (g.conj() * x).re).sum();
    let c = power.sqrt() / n;
    Ok(Array2::from_shape_fn(v.dim(), |ij| (g_w[ij] - v[ij] * (inner / n2)) * c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rates::user_rates;
    use crate::testutil::{rand_blocks, rand_mat};

    /// Directional derivative check: `d/dt f(W + tE) = 2 Re tr(G^H E)`.
    fn fd_check(f: &dyn Fn(&Array2<c64>) -> f64, w: &Array2<c64>, g: &Array2<c64>, seed: u64) -> f64 {
        let mut worst: f64 = 0.0;
        for trial in 0..3 {
            let e = rand_mat(w.nrows(), w.ncols(), seed * 31 + trial);
            let t = 1e-6;
            let fd = (f(&(w + &(&e * c64::from(t)))) - f(&(w - &(&e * c64::from(t))))) / (2.0 * t);
            let an: f64 = 2.0 * g.iter().zip(e.iter()).map(|(gi, ei)| (gi.conj() * ei).re).sum::<f64>();
            let rel = (fd - an).abs() / an.abs().max(1e-3);
            worst = worst.max(rel);
        }
        worst
    }

    const SIZES: &[(usize, usize, usize)] = &[(4, 1, 1), (4, 1, 2), (6, 3, 1), (8, 4, 2), (16, 4, 2), (5, 2, 3)];

    #[test]
    fn wsr_gradient_matches_finite_differences() {
        for (i, &(m, k, nk)) in SIZES.iter().enumerate() {
            let h = rand_blocks(k, nk, m, 10 + i as u64);
            let w = rand_mat(m, k, 20 + i as u64);
            let noise: Vec<f64> = (0..k).map(|j| 0.5 + 0.3 * j as f64).collect();
            let weights: Vec<f64> = (0..k).map(|j| 1.0 + 0.25 * j as f64).collect();
            let (_, g) = wsr_gradient(&h, w.view(), &noise, &weights).unwrap();
            let f = |x: &Array2<c64>| crate::weighted_sum_rate(&h, x.view(), &noise, &weights).unwrap();
            let rel = fd_check(&f, &w, &g, i as u64);
            assert!(rel < 1e-6, "size {:?}: relative error {rel}", (m, k, nk));
        }
    }

    #[test]
    fn penalised_loss_gradients_match_finite_differences() {
        for (i, &(m, k, nk)) in SIZES.iter().enumerate() {
            let h = rand_blocks(k, nk, m, 40 + i as u64);
            // Scale W so that rates straddle the hinge threshold without sitting on it.
            let w = rand_mat(m, k, 50 + i as u64).mapv(|z| z * 0.6);
            let noise = vec![1.0; k];
            for loss in [PenalisedLoss::glnn(), PenalisedLoss::ggml(k)] {
                let lg = penalised_loss_gradient(&h, w.view(), &noise, &loss).unwrap();
                let rates = user_rates(&h, w.view(), &noise).unwrap();
                if rates.iter().any(|r| (r - loss.relu_threshold).abs() < 1e-3) {
                    continue;
                }
                let f = |x: &Array2<c64>| {
                    let r = user_rates(&h, x.view(), &noise).unwrap();
                    loss.value_and_rate_derivative(r.as_slice().unwrap()).0
                };
                assert!((f(&w) - lg.loss).abs() < 1e-12);
                let rel = fd_check(&f, &w, &lg.grad, 100 + i as u64);
                assert!(rel < 1e-6, "size {:?} loss {loss:?}: relative error {rel}", (m, k, nk));
            }
        }
    }

    #[test]
    fn hybrid_gradients_match_finite_differences() {
        for (i, &(n, m_rf, k)) in [(8usize, 4usize, 3usize), (16, 4, 4), (6, 2, 1)].iter().enumerate() {
            let h = rand_blocks(k, 1, n, 70 + i as u64);
            let f = rand_mat(n, m_rf, 80 + i as u64);
            let d = rand_mat(m_rf, k, 90 + i as u64);
            let noise = vec![0.3; k];
            let coeffs: Vec<f64> = (0..k).map(|j| 1.0 - 0.2 * j as f64).collect();
            let (_, g_f, g_d) = hybrid_rate_gradient(&h, f.view(), d.view(), &noise, &coeffs).unwrap();
            let obj = |ff: &Array2<c64>, dd: &Array2<c64>| {
                let r = crate::hybrid_user_rates(&h, ff.view(), dd.view(), &noise).unwrap();
                r.iter().zip(&coeffs).map(|(a, b)| a * b).sum::<f64>()
            };
            assert!(fd_check(&|x| obj(x, &d), &f, &g_f, 7) < 1e-6);
            assert!(fd_check(&|x| obj(&f, x), &d, &g_d, 8) < 1e-6);
        }
    }

    #[test]
    fn base_matrix_gradient_matches_finite_differences() {
        let (m, k, nk) = (12usize, 4usize, 2usize);
        let h = rand_blocks(k, nk, m, 5);
        let hs = crate::stack_blocks(&h).unwrap();
        let hh = hs.t().mapv(|z| z.conj());
        let x = rand_mat(k * nk, k, 6);
        let noise = vec![1.0; k];
        let loss = PenalisedLoss::glnn();
        let w = hh.dot(&x);
        let lg = penalised_loss_gradient(&h, w.view(), &noise, &loss).unwrap();
        let g_x = base_matrix_chain_rule(hs.view(), lg.grad.view()).unwrap();
        let f = |xx: &Array2<c64>| {
            let r = user_rates(&h, hh.dot(xx).view(), &noise).unwrap();
            loss.value_and_rate_derivative(r.as_slice().unwrap()).0
        };
        assert!(fd_check(&f, &x, &g_x, 3) < 1e-6);
    }

    #[test]
    fn power_normalization_gradient_matches_finite_differences() {
        let (m, k, nk) = (10usize, 3usize, 2usize);
        let h = rand_blocks(k, nk, m, 15);
        let v = rand_mat(m, k, 16);
        let noise = vec![1.0; k];
        let loss = PenalisedLoss::glnn();
        let p = 7.0;
        let f = |vv: &Array2<c64>| {
            let w = crate::normalize_total_power(vv.view(), p).unwrap();
            let r = user_rates(&h, w.view(), &noise).unwrap();
            loss.value_and_rate_derivative(r.as_slice().unwrap()).0
        };
        let w = crate::normalize_total_power(v.view(), p).unwrap();
        let lg = penalised_loss_gradient(&h, w.view(), &noise, &loss).unwrap();
        let g_v = power_normalization_chain_rule(v.view(), lg.grad.view(), p).unwrap();
        assert!(fd_check(&f, &v, &g_v, 17) < 1e-6);
        assert!(
            power_normalization_chain_rule(Array2::zeros((2, 2)).view(), Array2::zeros((2, 2)).view(), 1.0).is_err()
        );
    }

    #[test]
    fn loss_derivative_signs() {
        let l = PenalisedLoss::glnn();
        let (v, d) = l.value_and_rate_derivative(&[1.0, 3.0]);
        // -4 + 0.7*1.5 + 0.3*2
        assert!((v - (-4.0 + 1.05 + 0.6)).abs() < 1e-12);
        assert!((d[0] - (-1.0 - 0.7 - 0.6)).abs() < 1e-12);
        assert!((d[1] - (-1.0 + 0.6)).abs() < 1e-12);
        let (v1, d1) = l.value_and_rate_derivative(&[3.0]);
        assert!((v1 + 3.0).abs() < 1e-12 && (d1[0] + 1.0).abs() < 1e-12);
    }
}
