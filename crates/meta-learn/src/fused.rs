//! The whole `T`-iteration robust WMMSE as ONE candle op with a hand-written reverse pass
//! (the fast path of [`crate::covnet::CovNet::precoder`]).
//!
//! The composed graph of [`crate::unrolled`] costs ~600 small candle ops forward and ~1 200
//! backward; this op runs the same iterations in ndarray (`M × M` complex LU solves through
//! `beamlab_linalg_ops::lu_solve`) and back-propagates by hand. Input: the covariances packed as
//! one `[2K, M, M]` tensor (`Re R_1..K` then `Im R_1..K`); output: `[2M, K]` (`Re V` over
//! `Im V`); `h̄`, `σ²`, `ω`, `P`, `T` are constants of the op.
//!
//! Reverse pass. For a real loss `L` and a complex variable `z`, write
//! `ẑ = ∂L/∂Re z + j ∂L/∂Im z` (so `dL = Re Σ conj(ẑ) dz`, which is exactly what candle's (re, im)
//! gradients hold). With the forward of one iteration
//!
//! ```text
//! g_ki = h_kᴴ v_i, q_ki = Re(v_iᴴ R_k v_i), a_k = Σ_i |g_ki|² + Σ_i q_ki + σ_k², d_k = g_kk,
//! u_k = d_k/a_k, e_k = a_k − |d_k|², w_k = a_k/e_k, λ_k = ω_k w_k |u_k|², c_k = ω_k w_k u_k,
//! μ = Σ λ_k σ_k²/P, B = Σ λ_k (h_k h_kᴴ + R_k) + μI, Y = [c_k h_k], X = B⁻¹Y, V⁺ = √P X/‖X‖_F
//! ```
//!
//! the adjoints are (each line accumulates):
//!
//! ```text
//! X̂ = s V̂⁺ − (s/‖X‖²) Re⟨V̂⁺, X⟩ X,  s = √P/‖X‖_F
//! Ŷ = B⁻ᴴ X̂,  B̂ = −Ŷ Xᴴ,  ĉ_k = h_kᴴ ŷ_k,  μ̂ = Re tr B̂
//! λ̂_k = Re(h_kᴴ B̂ h_k) + Re⟨B̂, R_k⟩ + μ̂ σ_k²/P,  R̂_k += λ_k B̂
//! ŵ_k = ω_k Re(conj(ĉ_k) u_k) + λ̂_k ω_k |u_k|²,   û_k = ω_k w_k ĉ_k + 2 λ̂_k ω_k w_k u_k
//! d̂_k = û_k/a_k + 2 ŵ_k (a_k/e_k²) d_k,           â_k = −Re(conj(û_k) d_k)/a_k² − ŵ_k |d_k|²/e_k²
//! ĝ_ki = 2 â_k g_ki (+ d̂_k if i = k),  q̂_ki = â_k
//! v̂_i = Σ_k ĝ_ki h_k + Σ_k q̂_ki (R_k + R_kᴴ) v_i,   R̂_k += Σ_i q̂_ki v_i v_iᴴ
//! ```
//!
//! `R` is treated as a general complex matrix (so finite differences in every real entry agree);
//! for Hermitian `R` it is the usual Hermitian-covariance gradient. Tests compare the op with the
//! composed graph (values and gradients) and with finite differences.

use beamlab_linalg_ops::{c64, lu_solve};
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use ndarray::{Array1, Array2};

use crate::MetaLearnError;
use crate::wmmse::{SystemParams, mrt_init};

/// The op: constants of one task.
#[derive(Clone, Debug)]
pub struct FusedRobustWmmse {
    h: Vec<Array1<c64>>,
    h_mat: Array2<c64>,
    h_adj: Array2<c64>,
    sys: SystemParams,
    n_iterations: usize,
    /// Forward trace of the last `cpu_fwd`, reused by `bwd` (same op instance in the graph).
    trace: TraceCache,
}

/// The covariances of the last forward with its per-iteration trace.
type TraceCache = std::sync::Arc<std::sync::Mutex<Option<(Vec<Array2<c64>>, Vec<Step>)>>>;

/// Per-iteration values kept for the reverse pass.
#[derive(Clone, Debug)]
struct Step {
    v: Array2<c64>,
    g: Array2<c64>,
    a: Vec<f64>,
    u: Vec<c64>,
    w: Vec<f64>,
    lambda: Vec<f64>,
    b: Array2<c64>,
    x: Array2<c64>,
}

impl FusedRobustWmmse {
    /// The op for channel columns `h` and system `sys`.
    ///
    /// # Errors
    /// Bad columns or system parameters.
    pub fn new(h: &[Array1<c64>], sys: &SystemParams, n_iterations: usize) -> Result<Self, MetaLearnError> {
        crate::wmmse::check_columns(h)?;
        sys.check(h.len())?;
        let h_mat = Array2::from_shape_fn((h[0].len(), h.len()), |(i, kk)| h[kk][i]);
        let h_adj = h_mat.t().mapv(|z| z.conj());
        Ok(Self { h: h.to_vec(), h_mat, h_adj, sys: sys.clone(), n_iterations, trace: Default::default() })
    }

    fn m(&self) -> usize {
        self.h[0].len()
    }

    /// Forward with the trace; returns the final precoder.
    fn run(&self, r: &[Array2<c64>], keep: bool) -> Result<(Array2<c64>, Vec<Step>), MetaLearnError> {
        let (m, k) = (self.m(), self.h.len());
        let sys = &self.sys;
        let hm = &self.h_mat;
        let hh = &self.h_adj;
        let mut v = mrt_init(&self.h, sys.power);
        let mut steps = Vec::new();
        for _ in 0..self.n_iterations {
            let g = hh.dot(&v); // [K × K], g[k, i] = h_kᴴ v_i
            let mut a = vec![0.0; k];
            for kk in 0..k {
                let rv = r[kk].dot(&v);
                let quad: f64 = v.iter().zip(rv.iter()).map(|(x, y)| (x.conj() * y).re).sum();
                a[kk] = sys.noise[kk] + quad + g.row(kk).iter().map(|z| z.norm_sqr()).sum::<f64>();
            }
            let u: Vec<c64> = (0..k).map(|kk| g[[kk, kk]] / a[kk]).collect();
            let w: Vec<f64> = (0..k).map(|kk| a[kk] / (a[kk] - g[[kk, kk]].norm_sqr())).collect();
            let lambda: Vec<f64> = (0..k).map(|kk| sys.weights[kk] * w[kk] * u[kk].norm_sqr()).collect();
            let mu: f64 = (0..k).map(|kk| lambda[kk] * sys.noise[kk]).sum::<f64>() / sys.power;
            // B = H diag(λ) Hᴴ + Σ λ_k R_k + μ I.
            let hl = Array2::from_shape_fn((m, k), |(i, kk)| hm[[i, kk]] * lambda[kk]);
            let mut b = hl.dot(hh);
            for kk in 0..k {
                b.scaled_add(c64::new(lambda[kk], 0.0), &r[kk]);
            }
            b.diag_mut().mapv_inplace(|z| z + mu);
            let y = Array2::from_shape_fn((m, k), |(i, kk)| hm[[i, kk]] * u[kk] * (sys.weights[kk] * w[kk]));
            let x = lu_solve(b.view(), y.view())?;
            let n = x.iter().map(|z| z.norm_sqr()).sum::<f64>().sqrt();
            let v_new = x.mapv(|z| z * (sys.power.sqrt() / n));
            if keep {
                steps.push(Step { v, g, a, u, w, lambda, b, x });
            }
            v = v_new;
        }
        Ok((v, steps))
    }

    /// Reverse pass: given `V̂` of the output, the gradient `R̂_k` of every covariance.
    fn reverse(&self, r: &[Array2<c64>], v_hat_out: Array2<c64>) -> Result<Vec<Array2<c64>>, MetaLearnError> {
        let (m, k) = (self.m(), self.h.len());
        let sys = &self.sys;
        let hm = &self.h_mat;
        let hh = &self.h_adj;
        let cached = match self.trace.lock() {
            Ok(mut t) => t.take().filter(|(r0, _)| r0.as_slice() == r),
            Err(_) => None,
        };
        let steps = match cached {
            Some((_, steps)) => steps,
            None => self.run(r, true)?.1,
        };
        let r_adj: Vec<Array2<c64>> = r.iter().map(|x| x.t().mapv(|z| z.conj())).collect();
        let mut r_hat: Vec<Array2<c64>> = (0..k).map(|_| Array2::zeros((m, m))).collect();
        let mut v_hat = v_hat_out;
        for st in steps.iter().rev() {
            // Normalisation.
            let n2: f64 = st.x.iter().map(|z| z.norm_sqr()).sum();
            let s = sys.power.sqrt() / n2.sqrt();
            let proj: f64 = v_hat.iter().zip(st.x.iter()).map(|(a, b)| (a.conj() * b).re).sum::<f64>();
            let x_hat = Array2::from_shape_fn((m, k), |ij| v_hat[ij] * s - st.x[ij] * (proj * s / n2));
            // Solve: Ŷ = B⁻ᴴ X̂, B̂ = −Ŷ Xᴴ.
            let b_adj = st.b.t().mapv(|z| z.conj());
            let y_hat = lu_solve(b_adj.view(), x_hat.view())?;
            let x_adj = st.x.t().mapv(|z| -z.conj());
            let b_hat = y_hat.dot(&x_adj);
            let mu_hat: f64 = b_hat.diag().iter().map(|z| z.re).sum();
            let c_hat = hh.dot(&y_hat); // c_hat[k, k] = h_kᴴ ŷ_k
            let hbh = hh.dot(&b_hat.dot(hm)); // [K × K], diag = h_kᴴ B̂ h_k
            let vvh = st.v.dot(&st.v.t().mapv(|z| z.conj()));
            let mut g_hat = Array2::<c64>::zeros((k, k));
            let mut v_next_hat = Array2::<c64>::zeros((m, k));
            for kk in 0..k {
                let (om, w, u, a, lam) = (sys.weights[kk], st.w[kk], st.u[kk], st.a[kk], st.lambda[kk]);
                let c_hat_k = c_hat[[kk, kk]];
                let lam_hat = hbh[[kk, kk]].re
                    + mu_hat * sys.noise[kk] / sys.power
                    + b_hat.iter().zip(r[kk].iter()).map(|(x, y)| (x.conj() * y).re).sum::<f64>();
                let w_hat = om * (c_hat_k.conj() * u).re + lam_hat * om * u.norm_sqr();
                let u_hat = c_hat_k * (om * w) + u * (2.0 * lam_hat * om * w);
                let d = st.g[[kk, kk]];
                let e = a - d.norm_sqr();
                let d_hat = u_hat / a + d * (2.0 * w_hat * a / (e * e));
                let a_hat = -(u_hat.conj() * d).re / (a * a) - w_hat * d.norm_sqr() / (e * e);
                for i in 0..k {
                    g_hat[[kk, i]] = st.g[[kk, i]] * (2.0 * a_hat);
                }
                g_hat[[kk, kk]] += d_hat;
                // q̂_ki = â_k for every i: v̂ += â_k (R_k + R_kᴴ) V, R̂_k += λ_k B̂ + â_k V Vᴴ.
                let sym_v = r[kk].dot(&st.v) + r_adj[kk].dot(&st.v);
                v_next_hat.scaled_add(c64::new(a_hat, 0.0), &sym_v);
                r_hat[kk].scaled_add(c64::new(lam, 0.0), &b_hat);
                r_hat[kk].scaled_add(c64::new(a_hat, 0.0), &vvh);
            }
            // v̂_i += Σ_k ĝ_ki h_k.
            v_next_hat += &hm.dot(&g_hat);
            v_hat = v_next_hat;
        }
        Ok(r_hat)
    }

    fn unpack(&self, data: &[f64], k: usize, m: usize) -> Vec<Array2<c64>> {
        (0..k)
            .map(|kk| {
                Array2::from_shape_fn((m, m), |(i, j)| {
                    c64::new(data[kk * m * m + i * m + j], data[(k + kk) * m * m + i * m + j])
                })
            })
            .collect()
    }
}

fn candle_err(e: MetaLearnError) -> candle_core::Error {
    candle_core::Error::Msg(e.to_string())
}

impl CustomOp1 for FusedRobustWmmse {
    fn name(&self) -> &'static str {
        "fused-robust-wmmse"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (k2, m, m2) = l.shape().dims3()?;
        let k = self.h.len();
        if k2 != 2 * k || m != self.m() || m2 != m {
            candle_core::bail!("fused robust WMMSE: covariances {:?}, expected [{}, {m}, {m}]", l.shape(), 2 * k);
        }
        let Some((start, end)) = l.contiguous_offsets() else {
            candle_core::bail!("fused robust WMMSE: non-contiguous")
        };
        let data = &s.as_slice::<f64>()?[start..end];
        let r = self.unpack(data, k, m);
        let (v, steps) = self.run(&r, true).map_err(candle_err)?;
        if let Ok(mut t) = self.trace.lock() {
            *t = Some((r, steps));
        }
        let mut out = Vec::with_capacity(2 * m * k);
        out.extend(v.iter().map(|z| z.re));
        out.extend(v.iter().map(|z| z.im));
        Ok((CpuStorage::F64(out), Shape::from((2 * m, k))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (m, k) = (self.m(), self.h.len());
        let data: Vec<f64> = arg.detach().flatten_all()?.to_vec1()?;
        let r = self.unpack(&data, k, m);
        let g: Vec<f64> = grad_res.detach().flatten_all()?.to_vec1()?;
        let v_hat = Array2::from_shape_fn((m, k), |(i, j)| c64::new(g[i * k + j], g[(m + i) * k + j]));
        let r_hat = self.reverse(&r, v_hat).map_err(candle_err)?;
        let mut out = Vec::with_capacity(2 * k * m * m);
        for rh in &r_hat {
            out.extend(rh.iter().map(|z| z.re));
        }
        for rh in &r_hat {
            out.extend(rh.iter().map(|z| z.im));
        }
        Ok(Some(Tensor::from_vec(out, (2 * k, m, m), arg.device())?))
    }
}

/// `T` robust WMMSE iterations from MRT as one differentiable op; `cov`: `[K, M, M]` pair.
///
/// # Errors
/// Bad shapes or parameters, a singular system.
pub fn fused_robust_wmmse(
    h_bar: &[Array1<c64>],
    cov: &crate::unrolled::ComplexBatch,
    sys: &SystemParams,
    n_iterations: usize,
) -> Result<beamlab_candle_bridge::ComplexTensor, MetaLearnError> {
    let op = FusedRobustWmmse::new(h_bar, sys, n_iterations)?;
    let m = op.m();
    let packed = Tensor::cat(&[&cov.re, &cov.im], 0)?.contiguous()?;
    let out = packed.apply_op1(op)?;
    Ok(beamlab_candle_bridge::ComplexTensor { re: out.narrow(0, 0, m)?, im: out.narrow(0, m, m)? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unrolled::{ComplexBatch, columns_tensor, negative_wsr, unrolled_robust_wmmse};
    use beamlab_channel::unknown_error::{haar_unitary, sample_error_block};
    use beamlab_channel::{UnknownErrorParams, rayleigh};
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Fused op = composed graph: same precoder and same gradient in every entry of Re R and
    /// Im R (the composed graph's gradient is itself finite-difference checked), for Hermitian
    /// and for general complex `R`.
    #[test]
    fn fused_matches_the_composed_graph_and_finite_differences() {
        let dev = Device::Cpu;
        let (m, k, t) = (5, 3, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let h = rayleigh(k, 1, m, &mut rng).unwrap();
        let q = haar_unitary(m, &mut rng).unwrap();
        let b = sample_error_block(&h, &q, &UnknownErrorParams { error_level_db: 3.0, ..Default::default() }, &mut rng)
            .unwrap();
        let h_bar: Vec<_> = b.iter().map(|u| u.sample_mean.clone()).collect();
        let h_true: Vec<_> = b.iter().map(|u| u.h_true.clone()).collect();
        let sys = SystemParams { noise: vec![0.1, 0.2, 0.1], weights: vec![1.0, 0.5, 2.0], power: 2.0 };
        let hb = columns_tensor(&h_bar, &dev).unwrap();
        let ht = columns_tensor(&h_true, &dev).unwrap();
        let noise = Tensor::new(sys.noise.as_slice(), &dev).unwrap();
        let weights = Tensor::new(sys.weights.as_slice(), &dev).unwrap();
        let herm: Vec<_> = b.iter().map(|u| u.error_covariance.clone()).collect();
        let general: Vec<_> = herm
            .iter()
            .map(|r| {
                r + &Array2::from_shape_fn((m, m), |_| {
                    c64::new(rng.random::<f64>() - 0.5, rng.random::<f64>() - 0.5) * 0.3
                })
            })
            .collect();
        for cov in [herm, general] {
            let c0 = ComplexBatch::from_arrays(&cov, &dev).unwrap();
            let grads = |fused: bool| {
                let re = Var::from_tensor(&c0.re).unwrap();
                let im = Var::from_tensor(&c0.im).unwrap();
                let c = ComplexBatch { re: re.as_tensor().clone(), im: im.as_tensor().clone() };
                let v = if fused {
                    fused_robust_wmmse(&h_bar, &c, &sys, t).unwrap()
                } else {
                    unrolled_robust_wmmse(&hb, &c, &noise, &weights, sys.power, t).unwrap()
                };
                let l = negative_wsr(&ht, &v, &noise, &weights).unwrap();
                let g = l.backward().unwrap();
                let flat = |x: &Var| g.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
                (l.to_scalar::<f64>().unwrap(), v.to_array().unwrap(), flat(&re), flat(&im))
            };
            let (lf, vf, gre_f, gim_f) = grads(true);
            let (lc, vc, gre_c, gim_c) = grads(false);
            assert!((lf - lc).abs() < 1e-10);
            assert!(vf.iter().zip(vc.iter()).all(|(a, b)| (a - b).norm() < 1e-10));
            for (a, b) in gre_f.iter().chain(&gim_f).zip(gre_c.iter().chain(&gim_c)) {
                assert!((a - b).abs() < 1e-8 * (1.0 + b.abs()), "fused {a} vs composed {b}");
            }
            // Direct finite-difference spot check of the fused op.
            let eps = 1e-6;
            for idx in [0, 7, 13, 31, 52] {
                let eval = |d: f64| {
                    let mut re: Vec<f64> = c0.re.flatten_all().unwrap().to_vec1().unwrap();
                    re[idx] += d;
                    let c = ComplexBatch {
                        re: Tensor::from_vec(re, c0.re.shape().clone(), &dev).unwrap(),
                        im: c0.im.clone(),
                    };
                    let v = fused_robust_wmmse(&h_bar, &c, &sys, t).unwrap();
                    negative_wsr(&ht, &v, &noise, &weights).unwrap().to_scalar::<f64>().unwrap()
                };
                let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
                assert!((fd - gre_f[idx]).abs() < 1e-6 * (1.0 + fd.abs()), "FD {fd} vs {}", gre_f[idx]);
            }
        }
    }
}
