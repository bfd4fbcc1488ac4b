//! One robust WMMSE iteration (spec (13)–(17)) in split real/imaginary layout: the one
//! implementation of the update, used by the classical loop ([`crate::wmmse::robust_wmmse`],
//! iterated to a tolerance) and by the fast path's unrolled loop (`T` iterations whose
//! intermediate values the reverse pass reads).
//!
//! ```text
//! g_ki = h̄_kᴴ v_i,  a_k = Σ_i (|g_ki|² + v_iᴴ R_k v_i) + σ_k²,  u_k = g_kk/a_k,
//! w_k = a_k/(a_k − |g_kk|²),  λ_k = ω_k w_k |u_k|²,  μ = Σ_k λ_k σ_k²/P,
//! B = Σ_k λ_k (h̄_k h̄_kᴴ + R_k) + μI = L Lᴴ,  x_k = ω_k w_k u_k B⁻¹ h̄_k,  V⁺ = √P X/‖X‖_F
//! ```
//!
//! Layout: `[K × M]` blocks hold one user / column per row; matrices are `M × M` row-major.
//! `R_k` must be exactly Hermitian (`R_k V` is formed from the rows of `R_k` as conjugated
//! columns, contiguous axpys); `B` is factored by the split-complex Cholesky of
//! `beamlab_linalg_ops::small::split` (only its lower triangle is formed).

// Index loops over several parallel buffers are the clearest form of these kernels.
#![allow(clippy::needless_range_loop)]

use beamlab_linalg_ops::c64;
use beamlab_linalg_ops::small::split::{self, cdot_conj, dot};

use crate::MetaLearnError;

/// The constants of a block.
pub(crate) struct Block<'a> {
    /// Antennas `M`.
    pub m: usize,
    /// Users `K`.
    pub k: usize,
    /// `h̄` as `[K × M]`.
    pub ht_re: &'a [f64],
    pub ht_im: &'a [f64],
    /// `R_k`, `[K × M × M]`, exactly Hermitian.
    pub r_re: &'a [f64],
    pub r_im: &'a [f64],
    /// `C_k = h̄_k h̄_kᴴ + R_k`, `[K × M × M]` (only the lower triangle is read).
    pub c_re: &'a [f64],
    pub c_im: &'a [f64],
    /// `σ_k²`, `ω_k`, `P`.
    pub noise: &'a [f64],
    pub weights: &'a [f64],
    pub power: f64,
}

/// The values of one iteration (kept by the fast path for its reverse pass).
pub(crate) struct Values<'a> {
    /// `g_ki`, `[K × K]`.
    pub g: &'a mut [c64],
    /// `R_k v_i`, `[K × K × M]`.
    pub rv_re: &'a mut [f64],
    pub rv_im: &'a mut [f64],
    /// `a_k`, `u_k`, `w_k`, `λ_k`.
    pub a: &'a mut [f64],
    pub u: &'a mut [c64],
    pub w: &'a mut [f64],
    pub lam: &'a mut [f64],
    /// The factor `L` of `B` and `Lᵀ`, `M × M`.
    pub l_re: &'a mut [f64],
    pub l_im: &'a mut [f64],
    pub lt_re: &'a mut [f64],
    pub lt_im: &'a mut [f64],
    /// `X = B⁻¹ Y` before the power normalisation, `[K × M]`.
    pub x_re: &'a mut [f64],
    pub x_im: &'a mut [f64],
}

/// One update from `(vr, vi)` into `(vr_next, vi_next)` (all `[K × M]`), filling `val`.
///
/// # Errors
/// [`MetaLearnError::Linalg`] when `B` is not positive definite to working precision.
pub(crate) fn robust_iteration(
    b: &Block<'_>,
    vr: &[f64],
    vi: &[f64],
    val: Values<'_>,
    vr_next: &mut [f64],
    vi_next: &mut [f64],
) -> Result<(), MetaLearnError> {
    let (m, k) = (b.m, b.k);
    let (km, mm) = (k * m, m * m);
    let Values { g, rv_re, rv_im, a, u, w, lam, l_re: lr, l_im: li, lt_re: ltr, lt_im: lti, x_re: xr, x_im: xi } = val;
    for kk in 0..k {
        let (hr, hi) = (&b.ht_re[kk * m..(kk + 1) * m], &b.ht_im[kk * m..(kk + 1) * m]);
        for i in 0..k {
            let (re, im) = cdot_conj(hr, hi, &vr[i * m..(i + 1) * m], &vi[i * m..(i + 1) * m]);
            g[kk * k + i] = c64::new(re, im);
        }
    }
    for kk in 0..k {
        let (rr, ri) = (&b.r_re[kk * mm..(kk + 1) * mm], &b.r_im[kk * mm..(kk + 1) * mm]);
        // R_k V by columns: (R v)[·] = Σ_j v[j] conj(R[j, ·]) (R Hermitian), contiguous axpys.
        let (rvr_k, rvi_k) = (&mut rv_re[kk * km..(kk + 1) * km], &mut rv_im[kk * km..(kk + 1) * km]);
        rvr_k.fill(0.0);
        rvi_k.fill(0.0);
        for j in 0..m {
            let (pr, pi) = (&rr[j * m..(j + 1) * m], &ri[j * m..(j + 1) * m]);
            for i in 0..k {
                let (s, t) = (vr[i * m + j], vi[i * m + j]);
                for ((o, p), q) in rvr_k[i * m..(i + 1) * m].iter_mut().zip(pr).zip(pi) {
                    *o += s * p + t * q;
                }
                for ((o, p), q) in rvi_k[i * m..(i + 1) * m].iter_mut().zip(pr).zip(pi) {
                    *o += t * p - s * q;
                }
            }
        }
        let mut quad = 0.0;
        for i in 0..k {
            let o = i * m;
            quad += dot(&vr[o..o + m], &rvr_k[o..o + m]) + dot(&vi[o..o + m], &rvi_k[o..o + m]);
        }
        a[kk] = b.noise[kk] + quad + g[kk * k..(kk + 1) * k].iter().map(|z| z.norm_sqr()).sum::<f64>();
        let d = g[kk * k + kk];
        u[kk] = d / a[kk];
        w[kk] = a[kk] / (a[kk] - d.norm_sqr());
        lam[kk] = b.weights[kk] * w[kk] * u[kk].norm_sqr();
    }
    let mu: f64 = (0..k).map(|kk| lam[kk] * b.noise[kk]).sum::<f64>() / b.power;
    // B = Σ λ_k C_k + μ I (lower triangle), Cholesky in place.
    for i in 0..m {
        let (br, bi) = (&mut lr[i * m..i * m + i + 1], &mut li[i * m..i * m + i + 1]);
        br.fill(0.0);
        bi.fill(0.0);
        for kk in 0..k {
            let o = kk * mm + i * m;
            for (y, x) in br.iter_mut().zip(&b.c_re[o..o + i + 1]) {
                *y += lam[kk] * x;
            }
            for (y, x) in bi.iter_mut().zip(&b.c_im[o..o + i + 1]) {
                *y += lam[kk] * x;
            }
        }
        br[i] += mu;
    }
    split::cholesky_in_place(lr, li, m)?;
    split::transpose_lower(lr, li, ltr, lti, m);
    for kk in 0..k {
        let c = u[kk] * (b.weights[kk] * w[kk]);
        for row in 0..m {
            let h = c64::new(b.ht_re[kk * m + row], b.ht_im[kk * m + row]) * c;
            xr[kk * m + row] = h.re;
            xi[kk * m + row] = h.im;
        }
        split::cholesky_solve_in_place(
            lr,
            li,
            ltr,
            lti,
            m,
            &mut xr[kk * m..(kk + 1) * m],
            &mut xi[kk * m..(kk + 1) * m],
        );
    }
    let nx = (dot(xr, xr) + dot(xi, xi)).sqrt();
    let s = b.power.sqrt() / nx;
    for i in 0..km {
        vr_next[i] = xr[i] * s;
        vi_next[i] = xi[i] * s;
    }
    Ok(())
}
