//! The unrolled, differentiable robust WMMSE (spec §3) and the sum-rate losses (spec §4) as
//! composed candle graphs (the oracle of the fast path's solver and losses).
//!
//! Shapes (complex values as (re, im) pairs of `f64` tensors): channel columns
//! `H = [h_1 … h_K]: [M × K]`, covariances `R: [K × M × M]`, precoder `V: [M × K]`. The update
//! equations are those of [`crate::wmmse`]; `T` iterations from the MRT start (a constant of the
//! graph) are unrolled and the only non-elementary step, `B⁻¹ [c_1 h̄_1 … c_K h̄_K]`, goes through
//! [`super::solve::real_solve`]
//! (real-block form, hand-written adjoint). Every other step is composed from candle ops with
//! working backward passes (matmul, broadcast arithmetic, sum, sqrt, log, cat, narrow), so the
//! gradient of a loss with respect to `R` (and so the covariance network) is exact; a central
//! finite-difference test of the whole unrolled map checks it.

use beamlab_candle_bridge::ComplexTensor;
use beamlab_linalg_ops::c64;
use candle_core::{DType, Device, Tensor};
use ndarray::{Array1, Array2};

use crate::MetaLearnError;

/// A batch of `K` complex `M × M` matrices as an (re, im) pair of `[K, M, M]` tensors.
#[derive(Clone, Debug)]
pub(crate) struct ComplexBatch {
    /// Real parts `[K, M, M]`.
    pub re: Tensor,
    /// Imaginary parts `[K, M, M]`.
    pub im: Tensor,
}

impl ComplexBatch {
    /// From per-user matrices (all `M × M`).
    ///
    /// # Errors
    /// Empty input or unequal shapes.
    pub(crate) fn from_arrays(mats: &[Array2<c64>], device: &Device) -> Result<Self, MetaLearnError> {
        let m = mats.first().map(|a| a.nrows()).unwrap_or(0);
        if m == 0 || mats.iter().any(|a| a.dim() != (m, m)) {
            return Err(MetaLearnError::Empty { what: "covariance batch" });
        }
        let re: Vec<f64> = mats.iter().flat_map(|a| a.iter().map(|z| z.re)).collect();
        let im: Vec<f64> = mats.iter().flat_map(|a| a.iter().map(|z| z.im)).collect();
        Ok(Self {
            re: Tensor::from_vec(re, (mats.len(), m, m), device)?,
            im: Tensor::from_vec(im, (mats.len(), m, m), device)?,
        })
    }

    /// Back to per-user matrices.
    ///
    /// # Errors
    /// A tensor that is not `[K, M, M]`.
    pub(crate) fn to_arrays(&self) -> Result<Vec<Array2<c64>>, MetaLearnError> {
        let (k, m, _) = self.re.dims3()?;
        let re: Vec<f64> = self.re.flatten_all()?.to_vec1()?;
        let im: Vec<f64> = self.im.flatten_all()?.to_vec1()?;
        Ok((0..k)
            .map(|u| {
                Array2::from_shape_fn((m, m), |(i, j)| c64::new(re[u * m * m + i * m + j], im[u * m * m + i * m + j]))
            })
            .collect())
    }

    /// `a·self + b·other` for real scalars (the fusion `η R^S + (1 − η) R_net`).
    ///
    /// # Errors
    /// Shape mismatch.
    pub(crate) fn affine_mix(&self, a: f64, other: &Self, b: f64) -> Result<Self, MetaLearnError> {
        Ok(Self { re: ((&self.re * a)? + (&other.re * b)?)?, im: ((&self.im * a)? + (&other.im * b)?)? })
    }
}

/// Channel columns `[h_1 … h_K]: [M × K]` as a complex tensor.
///
/// # Errors
/// Empty or unequal columns.
pub(crate) fn columns_tensor(cols: &[Array1<c64>], device: &Device) -> Result<ComplexTensor, MetaLearnError> {
    let m = crate::wmmse::check_columns(cols)?;
    let a = Array2::from_shape_fn((m, cols.len()), |(i, k)| cols[k][i]);
    Ok(ComplexTensor::from_array(&a, device)?)
}

/// `G = Hᴴ V: [K × K]`, `G[k, i] = h_kᴴ v_i`.
fn gram(h: &ComplexTensor, v: &ComplexTensor) -> Result<ComplexTensor, MetaLearnError> {
    let (hrt, hit) = (h.re.t()?, h.im.t()?);
    let re = (hrt.matmul(&v.re)? + hit.matmul(&v.im)?)?;
    let im = (hrt.matmul(&v.im)? - hit.matmul(&v.re)?)?;
    Ok(ComplexTensor { re, im })
}

fn power_normalise(v: ComplexTensor, power: f64) -> Result<ComplexTensor, MetaLearnError> {
    let scale = (v.re.sqr()?.sum_all()? + v.im.sqr()?.sum_all()?)?.sqrt()?.recip()?.affine(power.sqrt(), 0.0)?;
    Ok(ComplexTensor { re: v.re.broadcast_mul(&scale)?, im: v.im.broadcast_mul(&scale)? })
}

/// One differentiable robust WMMSE update (spec (13)–(17)); `noise`, `weights`: `[K]`.
///
/// # Errors
/// Shape mismatches or a singular system.
pub(crate) fn robust_wmmse_step(
    h_bar: &ComplexTensor,
    cov: &ComplexBatch,
    v: &ComplexTensor,
    noise: &Tensor,
    weights: &Tensor,
    power: f64,
) -> Result<ComplexTensor, MetaLearnError> {
    let (m, k) = h_bar.re.dims2()?;
    let device = h_bar.re.device();
    let eye_k = Tensor::eye(k, DType::F64, device)?;
    let g = gram(h_bar, v)?;
    let g2 = (g.re.sqr()? + g.im.sqr()?)?;
    // v_iᴴ R_k v_i for all (k, i): RV = R_k V, [K, M, K].
    let vr = v.re.unsqueeze(0)?.broadcast_as((k, m, k))?.contiguous()?;
    let vi = v.im.unsqueeze(0)?.broadcast_as((k, m, k))?.contiguous()?;
    let rv_r = (cov.re.matmul(&vr)? - cov.im.matmul(&vi)?)?;
    let rv_i = (cov.re.matmul(&vi)? + cov.im.matmul(&vr)?)?;
    let quad = ((&vr * &rv_r)? + (&vi * &rv_i)?)?.sum(1)?; // [K, K]
    let a = ((g2.sum(1)? + quad.sum(1)?)? + noise)?; // [K]
    let gd_r = (&g.re * &eye_k)?.sum(1)?;
    let gd_i = (&g.im * &eye_k)?.sum(1)?;
    let gd2 = (gd_r.sqr()? + gd_i.sqr()?)?;
    let u_r = (&gd_r / &a)?;
    let u_i = (&gd_i / &a)?;
    let w = (&a / (&a - &gd2)?)?;
    let ww = (weights * &w)?;
    let lambda = (&ww * (u_r.sqr()? + u_i.sqr()?)?)?; // [K]
    let mu = ((&lambda * noise)?.sum_all()? / power)?;
    // B = H diag(λ) Hᴴ + Σ λ_k R_k + μ I.
    let lam_row = lambda.unsqueeze(0)?;
    let hl_r = h_bar.re.broadcast_mul(&lam_row)?;
    let hl_i = h_bar.im.broadcast_mul(&lam_row)?;
    let (hrt, hit) = (h_bar.re.t()?, h_bar.im.t()?);
    let lam3 = lambda.reshape((k, 1, 1))?;
    let eye_m = Tensor::eye(m, DType::F64, device)?;
    let b_r = ((hl_r.matmul(&hrt)? + hl_i.matmul(&hit)?)? + cov.re.broadcast_mul(&lam3)?.sum(0)?)?
        .add(&eye_m.broadcast_mul(&mu)?)?;
    let b_i = ((hl_i.matmul(&hrt)? - hl_r.matmul(&hit)?)? + cov.im.broadcast_mul(&lam3)?.sum(0)?)?;
    // Right-hand side c_k h̄_k, c_k = ω_k w_k u_k.
    let c_r = (&ww * &u_r)?.unsqueeze(0)?;
    let c_i = (&ww * &u_i)?.unsqueeze(0)?;
    let rhs_r = (h_bar.re.broadcast_mul(&c_r)? - h_bar.im.broadcast_mul(&c_i)?)?;
    let rhs_i = (h_bar.re.broadcast_mul(&c_i)? + h_bar.im.broadcast_mul(&c_r)?)?;
    let top = Tensor::cat(&[&b_r, &b_i.neg()?], 1)?;
    let bottom = Tensor::cat(&[&b_i, &b_r], 1)?;
    let a_block = Tensor::cat(&[&top, &bottom], 0)?;
    let rhs = Tensor::cat(&[&rhs_r, &rhs_i], 0)?;
    let x = super::solve::real_solve(&a_block, &rhs)?;
    let v_new = ComplexTensor { re: x.narrow(0, 0, m)?, im: x.narrow(0, m, m)? };
    power_normalise(v_new, power)
}

/// `T` unrolled robust WMMSE iterations from the start `v0` (the MRT start in every use).
///
/// # Errors
/// As [`robust_wmmse_step`].
pub(crate) fn unrolled_robust_wmmse(
    h_bar: &ComplexTensor,
    cov: &ComplexBatch,
    v0: &ComplexTensor,
    noise: &Tensor,
    weights: &Tensor,
    power: f64,
    n_iterations: usize,
) -> Result<ComplexTensor, MetaLearnError> {
    let mut v = v0.clone();
    for _ in 0..n_iterations {
        v = robust_wmmse_step(h_bar, cov, &v, noise, weights, power)?;
    }
    Ok(v)
}

/// Negative weighted sum rate `−Σ_k ω_k log2(1 + |h_kᴴ v_k|² / (Σ_{i≠k} |h_kᴴ v_i|² + σ_k²))`
/// of `v` on the channel columns `h` (a scalar tensor).
///
/// # Errors
/// Shape mismatches.
pub(crate) fn negative_wsr(
    h: &ComplexTensor,
    v: &ComplexTensor,
    noise: &Tensor,
    weights: &Tensor,
) -> Result<Tensor, MetaLearnError> {
    let k = h.re.dims2()?.1;
    let eye_k = Tensor::eye(k, DType::F64, h.re.device())?;
    let g = gram(h, v)?;
    let g2 = (g.re.sqr()? + g.im.sqr()?)?;
    let signal = (&g2 * &eye_k)?.sum(1)?;
    let interference = ((g2.sum(1)? - &signal)? + noise)?;
    let rate = ((&signal / &interference)? + 1.0)?.log()?.affine(1.0 / std::f64::consts::LN_2, 0.0)?;
    Ok((rate * weights)?.sum_all()?.neg()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wmmse::{SystemParams, robust_wmmse_fixed};
    use beamlab_channel::unknown_error::{haar_unitary, sample_error_block};
    use beamlab_channel::{UnknownErrorParams, rayleigh};
    use candle_core::Var;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn block(m: usize, seed: u64) -> Vec<beamlab_channel::UserErrorBlock> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = rayleigh(3, 1, m, &mut rng).unwrap();
        let q = haar_unitary(m, &mut rng).unwrap();
        sample_error_block(&h, &q, &UnknownErrorParams { error_level_db: 3.0, ..Default::default() }, &mut rng).unwrap()
    }

    #[test]
    fn unrolled_matches_the_classical_iterations() {
        let dev = Device::Cpu;
        let b = block(8, 1);
        let h_bar: Vec<_> = b.iter().map(|u| u.sample_mean.clone()).collect();
        let cov: Vec<_> = b.iter().map(|u| u.error_covariance.clone()).collect();
        let sys = SystemParams::uniform(3, 0.1, 1.0);
        let reference = robust_wmmse_fixed(&h_bar, Some(&cov), &sys, 5).unwrap();
        let noise = Tensor::new(&[0.1f64, 0.1, 0.1], &dev).unwrap();
        let weights = Tensor::new(&[1.0f64, 1.0, 1.0], &dev).unwrap();
        let v0 = ComplexTensor::from_array(&crate::wmmse::mrt_start(&h_bar, 1.0).unwrap(), &dev).unwrap();
        let v = unrolled_robust_wmmse(
            &columns_tensor(&h_bar, &dev).unwrap(),
            &ComplexBatch::from_arrays(&cov, &dev).unwrap(),
            &v0,
            &noise,
            &weights,
            1.0,
            5,
        )
        .unwrap()
        .to_array()
        .unwrap();
        let err = v.iter().zip(reference.iter()).map(|(a, b)| (a - b).norm()).fold(0.0, f64::max);
        assert!(err < 1e-10, "{err}");
        // The loss agrees with linalg-ops' weighted sum rate.
        let h_true: Vec<_> = b.iter().map(|u| u.h_true.clone()).collect();
        let l = negative_wsr(
            &columns_tensor(&h_true, &dev).unwrap(),
            &ComplexTensor::from_array(&v, &dev).unwrap(),
            &noise,
            &weights,
        )
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
        let r = crate::wmmse::wsr(&h_true, &v, &sys).unwrap();
        assert!((l + r).abs() < 1e-10);
    }

    /// Central finite differences of the full unrolled map (T = 4 iterations, loss on the true
    /// channel) with respect to every entry of Re R and Im R, against autograd with the
    /// hand-written solve adjoint.
    #[test]
    fn unrolled_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        let (m, t) = (4, 4);
        let b = block(m, 2);
        let h_bar: Vec<_> = b.iter().map(|u| u.sample_mean.clone()).collect();
        let h_true: Vec<_> = b.iter().map(|u| u.h_true.clone()).collect();
        let cov: Vec<_> = b.iter().map(|u| u.sample_covariance.clone() + u.error_covariance.clone()).collect();
        let hb = columns_tensor(&h_bar, &dev).unwrap();
        let ht = columns_tensor(&h_true, &dev).unwrap();
        let noise = Tensor::new(&[0.1f64, 0.2, 0.1], &dev).unwrap();
        let weights = Tensor::new(&[1.0f64, 0.5, 2.0], &dev).unwrap();
        let c0 = ComplexBatch::from_arrays(&cov, &dev).unwrap();
        let v0 = ComplexTensor::from_array(&crate::wmmse::mrt_start(&h_bar, 1.0).unwrap(), &dev).unwrap();
        let loss = |re: &Tensor, im: &Tensor| {
            let c = ComplexBatch { re: re.clone(), im: im.clone() };
            let v = unrolled_robust_wmmse(&hb, &c, &v0, &noise, &weights, 1.0, t).unwrap();
            negative_wsr(&ht, &v, &noise, &weights).unwrap()
        };
        let re = Var::from_tensor(&c0.re).unwrap();
        let im = Var::from_tensor(&c0.im).unwrap();
        let grads = loss(re.as_tensor(), im.as_tensor()).backward().unwrap();
        let eps = 1e-6;
        let mut worst: f64 = 0.0;
        for (which, var) in [(0, &re), (1, &im)] {
            let g: Vec<f64> = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            for idx in 0..base.len() {
                let eval = |delta: f64| {
                    let mut p = base.clone();
                    p[idx] += delta;
                    let pt = Tensor::from_vec(p, c0.re.shape().clone(), &dev).unwrap();
                    let l = if which == 0 { loss(&pt, &c0.im) } else { loss(&c0.re, &pt) };
                    l.to_scalar::<f64>().unwrap()
                };
                let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
                worst = worst.max((fd - g[idx]).abs() / (1e-3 + fd.abs()));
            }
        }
        assert!(worst < 1e-4, "worst relative error {worst}");
    }
}
