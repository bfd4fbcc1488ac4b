//! The fast path's reusable buffers ([`FastWorkspace`]) and their sizing for one block.
//!
//! Complex solver values are split into real and imaginary parts; `[K × M]` blocks hold one user
//! / column per row; per-iteration quantities keep all `T` iterations (the reverse pass reads
//! them).

use beamlab_linalg_ops::c64;

use super::{FastNet, Head};

/// Solver buffers (complex values split into real and imaginary parts; `[K × M]` blocks hold
/// one user / column per row).
#[derive(Clone, Debug, Default)]
pub(super) struct SolverBuffers {
    pub(super) r_re: Vec<f64>,
    pub(super) r_im: Vec<f64>,
    pub(super) c_re: Vec<f64>,
    pub(super) c_im: Vec<f64>,
    pub(super) v_re: Vec<f64>,
    pub(super) v_im: Vec<f64>,
    pub(super) g: Vec<c64>,
    pub(super) rv_re: Vec<f64>,
    pub(super) rv_im: Vec<f64>,
    pub(super) a: Vec<f64>,
    pub(super) u: Vec<c64>,
    pub(super) w: Vec<f64>,
    pub(super) lam: Vec<f64>,
    pub(super) l_re: Vec<f64>,
    pub(super) l_im: Vec<f64>,
    pub(super) lt_re: Vec<f64>,
    pub(super) lt_im: Vec<f64>,
    pub(super) x_re: Vec<f64>,
    pub(super) x_im: Vec<f64>,
    pub(super) vh_re: Vec<f64>,
    pub(super) vh_im: Vec<f64>,
    pub(super) vn_re: Vec<f64>,
    pub(super) vn_im: Vec<f64>,
    pub(super) yh_re: Vec<f64>,
    pub(super) yh_im: Vec<f64>,
    pub(super) bh_re: Vec<f64>,
    pub(super) bh_im: Vec<f64>,
    pub(super) vv_re: Vec<f64>,
    pub(super) vv_im: Vec<f64>,
    pub(super) rh_re: Vec<f64>,
    pub(super) rh_im: Vec<f64>,
    pub(super) gl: Vec<c64>,
}

/// Reusable buffers of the forward and reverse passes.
#[derive(Clone, Debug, Default)]
pub struct FastWorkspace {
    // Network.
    pub(super) act: Vec<Vec<f64>>,
    pub(super) z: Vec<Vec<f64>>,
    pub(super) zhat: Vec<Vec<f64>>,
    pub(super) pre: Vec<Vec<f64>>,
    pub(super) inv_std: Vec<Vec<f64>>,
    pub(super) out: Vec<f64>,
    pub(super) d_out: Vec<f64>,
    pub(super) d_a: Vec<f64>,
    pub(super) d_z: Vec<f64>,
    pub(super) scratch: Vec<f64>,
    // Head and fusion.
    pub(super) fac: Vec<c64>,
    pub(super) r: Vec<c64>,
    pub(super) r_hat: Vec<c64>,
    pub(super) g_s: Vec<c64>,
    pub(super) fac_hat: Vec<c64>,
    pub(super) sv: SolverBuffers,
}

pub(super) fn resize<T: Clone + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() != n {
        v.clear();
        v.resize(n, T::default());
    }
}

impl FastNet {
    pub(super) fn prepare(&self, ws: &mut FastWorkspace, k: usize) {
        let (m, t) = (self.m, self.n_unroll);
        let n_hidden = self.layers.len() - 1;
        ws.act.resize(n_hidden + 1, Vec::new());
        ws.z.resize(n_hidden, Vec::new());
        ws.zhat.resize(n_hidden, Vec::new());
        ws.pre.resize(n_hidden, Vec::new());
        ws.inv_std.resize(n_hidden, Vec::new());
        resize(&mut ws.act[0], k * 2 * m);
        let mut widest = 2 * m;
        for (l, layer) in self.layers.iter().enumerate().take(n_hidden) {
            resize(&mut ws.act[l + 1], k * layer.n_out);
            resize(&mut ws.z[l], k * layer.n_out);
            resize(&mut ws.zhat[l], k * layer.n_out);
            resize(&mut ws.pre[l], k * layer.n_out);
            resize(&mut ws.inv_std[l], layer.n_out);
            widest = widest.max(layer.n_out);
        }
        widest = widest.max(self.output_dim);
        resize(&mut ws.out, k * self.output_dim);
        resize(&mut ws.d_out, k * self.output_dim);
        resize(&mut ws.d_a, k * widest);
        resize(&mut ws.d_z, k * widest);
        let fac = match self.head {
            Head::FullRank => m * m,
            Head::Salr { rank, .. } => m * rank,
        };
        resize(&mut ws.fac, fac);
        resize(&mut ws.fac_hat, fac);
        resize(&mut ws.r, k * m * m);
        resize(&mut ws.r_hat, k * m * m);
        resize(&mut ws.g_s, m * m);
        let (km, mm) = (k * m, m * m);
        let sv = &mut ws.sv;
        for (b, n) in [
            (&mut sv.r_re, k * mm),
            (&mut sv.r_im, k * mm),
            (&mut sv.c_re, k * mm),
            (&mut sv.c_im, k * mm),
            (&mut sv.v_re, (t + 1) * km),
            (&mut sv.v_im, (t + 1) * km),
            (&mut sv.rv_re, t * k * km),
            (&mut sv.rv_im, t * k * km),
            (&mut sv.a, t * k),
            (&mut sv.w, t * k),
            (&mut sv.lam, t * k),
            (&mut sv.l_re, t * mm),
            (&mut sv.l_im, t * mm),
            (&mut sv.lt_re, t * mm),
            (&mut sv.lt_im, t * mm),
            (&mut sv.x_re, t * km),
            (&mut sv.x_im, t * km),
            (&mut sv.vh_re, km),
            (&mut sv.vh_im, km),
            (&mut sv.vn_re, km),
            (&mut sv.vn_im, km),
            (&mut sv.yh_re, km),
            (&mut sv.yh_im, km),
            (&mut sv.bh_re, mm),
            (&mut sv.bh_im, mm),
            (&mut sv.vv_re, mm),
            (&mut sv.vv_im, mm),
            (&mut sv.rh_re, k * mm),
            (&mut sv.rh_im, k * mm),
        ] {
            resize(b, n);
        }
        resize(&mut sv.g, t * k * k);
        resize(&mut sv.u, t * k);
        resize(&mut sv.gl, k);
    }
}
