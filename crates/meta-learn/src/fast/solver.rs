//! The `T` unrolled robust WMMSE iterations of the fast path, forward (keeping the per-iteration
//! trace) and reverse (adjoint equations in [`super`]). One iteration is
//! [`crate::iteration::robust_iteration`], the update the classical loop of [`crate::wmmse`] runs
//! too; its Cholesky factor of `B` also serves the adjoint solve `B⁻ᴴ X̂` (`B` is Hermitian).

// Index loops over several parallel buffers are the clearest form of these kernels.
#![allow(clippy::needless_range_loop)]

use beamlab_linalg_ops::c64;
use beamlab_linalg_ops::small::split::{self, cdot_conj, dot};

use super::workspace::FastWorkspace;
use super::{FastNet, FastTask};
use crate::MetaLearnError;
use crate::iteration::{Block, Values, robust_iteration};

/// `b += a · conj(x)` (complex scalar `a`, vectors as (re, im) slices).
#[inline]
fn outer_conj_acc(br: &mut [f64], bi: &mut [f64], ar: f64, ai: f64, xr: &[f64], xi: &[f64]) {
    for (o, (p, q)) in br.iter_mut().zip(xr.iter().zip(xi)) {
        *o += ar * p + ai * q;
    }
    for (o, (p, q)) in bi.iter_mut().zip(xr.iter().zip(xi)) {
        *o += ai * p - ar * q;
    }
}

impl FastNet {
    /// `T` robust WMMSE iterations from MRT on `(h̄, ws.r)`, keeping the trace (split layout).
    pub(super) fn solver_forward(&self, ws: &mut FastWorkspace, task: &FastTask) -> Result<(), MetaLearnError> {
        let (m, k, t_max) = (self.m, task.k, self.n_unroll);
        let (km, mm, kk_n) = (k * m, m * m, k * k);
        let sys = &task.sys;
        let sv = &mut ws.sv;
        // Split covariances and C_k = h_k h_kᴴ + R_k.
        for (i, z) in ws.r.iter().enumerate() {
            sv.r_re[i] = z.re;
            sv.r_im[i] = z.im;
            sv.c_re[i] = z.re + task.hh_re[i];
            sv.c_im[i] = z.im + task.hh_im[i];
        }
        // The MRT start, computed once per block (`FastTask::v0_*`).
        sv.v_re[..km].copy_from_slice(&task.v0_re);
        sv.v_im[..km].copy_from_slice(&task.v0_im);
        let block = Block {
            m,
            k,
            ht_re: &task.ht_re,
            ht_im: &task.ht_im,
            r_re: &sv.r_re,
            r_im: &sv.r_im,
            c_re: &sv.c_re,
            c_im: &sv.c_im,
            noise: &sys.noise,
            weights: &sys.weights,
            power: sys.power,
        };
        for t in 0..t_max {
            let (vr_all, vr_next) = sv.v_re.split_at_mut((t + 1) * km);
            let (vi_all, vi_next) = sv.v_im.split_at_mut((t + 1) * km);
            let values = Values {
                g: &mut sv.g[t * kk_n..(t + 1) * kk_n],
                rv_re: &mut sv.rv_re[t * k * km..(t + 1) * k * km],
                rv_im: &mut sv.rv_im[t * k * km..(t + 1) * k * km],
                a: &mut sv.a[t * k..(t + 1) * k],
                u: &mut sv.u[t * k..(t + 1) * k],
                w: &mut sv.w[t * k..(t + 1) * k],
                lam: &mut sv.lam[t * k..(t + 1) * k],
                l_re: &mut sv.l_re[t * mm..(t + 1) * mm],
                l_im: &mut sv.l_im[t * mm..(t + 1) * mm],
                lt_re: &mut sv.lt_re[t * mm..(t + 1) * mm],
                lt_im: &mut sv.lt_im[t * mm..(t + 1) * mm],
                x_re: &mut sv.x_re[t * km..(t + 1) * km],
                x_im: &mut sv.x_im[t * km..(t + 1) * km],
            };
            robust_iteration(&block, &vr_all[t * km..], &vi_all[t * km..], values, vr_next, vi_next)?;
        }
        Ok(())
    }

    /// Reverse of the solver: from `ws.sv.vh_*` (gradient of the final precoder) to `ws.r_hat`.
    pub(super) fn solver_backward(&self, ws: &mut FastWorkspace, task: &FastTask) {
        let (m, k, t_max) = (self.m, task.k, self.n_unroll);
        let (km, mm, kk_n) = (k * m, m * m, k * k);
        let sys = &task.sys;
        let sv = &mut ws.sv;
        sv.rh_re.fill(0.0);
        sv.rh_im.fill(0.0);
        for t in (0..t_max).rev() {
            let (xr, xi) = (&sv.x_re[t * km..(t + 1) * km], &sv.x_im[t * km..(t + 1) * km]);
            let (vr, vi) = (&sv.v_re[t * km..(t + 1) * km], &sv.v_im[t * km..(t + 1) * km]);
            let g = &sv.g[t * kk_n..(t + 1) * kk_n];
            let n2 = dot(xr, xr) + dot(xi, xi);
            let s = sys.power.sqrt() / n2.sqrt();
            let proj = dot(&sv.vh_re, xr) + dot(&sv.vh_im, xi);
            let c = proj * s / n2;
            for i in 0..km {
                sv.yh_re[i] = sv.vh_re[i] * s - xr[i] * c;
                sv.yh_im[i] = sv.vh_im[i] * s - xi[i] * c;
            }
            // Ŷ = B⁻¹ X̂ (B Hermitian), B̂ = −Ŷ Xᴴ.
            let (lr, li) = (&sv.l_re[t * mm..(t + 1) * mm], &sv.l_im[t * mm..(t + 1) * mm]);
            let (ltr, lti) = (&sv.lt_re[t * mm..(t + 1) * mm], &sv.lt_im[t * mm..(t + 1) * mm]);
            for kk in 0..k {
                let (yr, yi) = (&mut sv.yh_re[kk * m..(kk + 1) * m], &mut sv.yh_im[kk * m..(kk + 1) * m]);
                split::cholesky_solve_in_place(lr, li, ltr, lti, m, yr, yi);
            }
            let (yr, yi) = (&sv.yh_re, &sv.yh_im);
            // B̂[i][j] = −Σ_c ŷ_c[i] conj(x_c[j]);  V Vᴴ[i][j] = Σ_c v_c[i] conj(v_c[j]).
            sv.bh_re.fill(0.0);
            sv.bh_im.fill(0.0);
            sv.vv_re.fill(0.0);
            sv.vv_im.fill(0.0);
            for c in 0..k {
                let (xcr, xci) = (&xr[c * m..(c + 1) * m], &xi[c * m..(c + 1) * m]);
                let (vcr, vci) = (&vr[c * m..(c + 1) * m], &vi[c * m..(c + 1) * m]);
                for i in 0..m {
                    let (ar, ai) = (-yr[c * m + i], -yi[c * m + i]);
                    let (br, bi) = (&mut sv.bh_re[i * m..(i + 1) * m], &mut sv.bh_im[i * m..(i + 1) * m]);
                    outer_conj_acc(br, bi, ar, ai, xcr, xci);
                    let (pr, pi) = (vr[c * m + i], vi[c * m + i]);
                    let (br, bi) = (&mut sv.vv_re[i * m..(i + 1) * m], &mut sv.vv_im[i * m..(i + 1) * m]);
                    outer_conj_acc(br, bi, pr, pi, vcr, vci);
                }
            }
            let mu_hat: f64 = (0..m).map(|i| sv.bh_re[i * m + i]).sum();
            sv.vn_re.fill(0.0);
            sv.vn_im.fill(0.0);
            for kk in 0..k {
                let (hr, hi) = (&task.ht_re[kk * m..(kk + 1) * m], &task.ht_im[kk * m..(kk + 1) * m]);
                // h_kᴴ B̂ h_k = −Σ_j (h_kᴴ ŷ_j)(x_jᴴ h_k);  ĉ_k = h_kᴴ ŷ_k.
                let mut hbh = 0.0;
                let mut c_hat = c64::new(0.0, 0.0);
                for j in 0..k {
                    let (pr, pim) = cdot_conj(hr, hi, &yr[j * m..(j + 1) * m], &yi[j * m..(j + 1) * m]);
                    let (qr, qi) = cdot_conj(&xr[j * m..(j + 1) * m], &xi[j * m..(j + 1) * m], hr, hi);
                    hbh -= pr * qr - pim * qi;
                    if j == kk {
                        c_hat = c64::new(pr, pim);
                    }
                }
                let (rr, ri) = (&sv.r_re[kk * mm..(kk + 1) * mm], &sv.r_im[kk * mm..(kk + 1) * mm]);
                let br = dot(&sv.bh_re, rr) + dot(&sv.bh_im, ri);
                let (om, w, u, a, lam) =
                    (sys.weights[kk], sv.w[t * k + kk], sv.u[t * k + kk], sv.a[t * k + kk], sv.lam[t * k + kk]);
                let lam_hat = hbh + mu_hat * sys.noise[kk] / sys.power + br;
                let w_hat = om * (c_hat.conj() * u).re + lam_hat * om * u.norm_sqr();
                let u_hat = c_hat * (om * w) + u * (2.0 * lam_hat * om * w);
                let d = g[kk * k + kk];
                let e = a - d.norm_sqr();
                let d_hat = u_hat / a + d * (2.0 * w_hat * a / (e * e));
                let a_hat = -(u_hat.conj() * d).re / (a * a) - w_hat * d.norm_sqr() / (e * e);
                // v̂_i += ĝ_ki h_k + 2 â_k R_k v_i;  R̂_k += λ_k B̂ + â_k V Vᴴ.
                let two_a = 2.0 * a_hat;
                for i in 0..k {
                    let mut gh = g[kk * k + i] * (2.0 * a_hat);
                    if i == kk {
                        gh += d_hat;
                    }
                    let o = kk * km + i * m;
                    let (rvr, rvi) = (&sv.rv_re[t * k * km + o..t * k * km + o + m], &sv.rv_im[t * k * km + o..][..m]);
                    let (nr, ni) = (&mut sv.vn_re[i * m..(i + 1) * m], &mut sv.vn_im[i * m..(i + 1) * m]);
                    for row in 0..m {
                        nr[row] += gh.re * hr[row] - gh.im * hi[row] + two_a * rvr[row];
                        ni[row] += gh.re * hi[row] + gh.im * hr[row] + two_a * rvi[row];
                    }
                }
                let (hr_k, hi_k) = (&mut sv.rh_re[kk * mm..(kk + 1) * mm], &mut sv.rh_im[kk * mm..(kk + 1) * mm]);
                for (o, (b, v)) in hr_k.iter_mut().zip(sv.bh_re.iter().zip(&sv.vv_re)) {
                    *o += lam * b + a_hat * v;
                }
                for (o, (b, v)) in hi_k.iter_mut().zip(sv.bh_im.iter().zip(&sv.vv_im)) {
                    *o += lam * b + a_hat * v;
                }
            }
            std::mem::swap(&mut sv.vh_re, &mut sv.vn_re);
            std::mem::swap(&mut sv.vh_im, &mut sv.vn_im);
        }
        for (o, (re, im)) in ws.r_hat.iter_mut().zip(sv.rh_re.iter().zip(&sv.rh_im)) {
            *o = c64::new(*re, *im);
        }
    }
}
