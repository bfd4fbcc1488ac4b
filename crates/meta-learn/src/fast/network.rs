//! The MLP of the fast path: Linear → BatchNorm (batch statistics over the users) → ReLU per
//! hidden layer, a linear output layer; forward, and reverse into a [`Sink`] (the gradient or an
//! in-place SGD update).

// Index loops over several parallel buffers are the clearest form of these kernels.
#![allow(clippy::needless_range_loop)]

use beamlab_linalg_ops::small::split::dot;

use super::workspace::{FastWorkspace, resize};
use super::{BN_EPS, FastNet, FastTask};

#[inline]
fn axpy(y: &mut [f64], s: f64, x: &[f64]) {
    for (a, b) in y.iter_mut().zip(x) {
        *a += s * b;
    }
}

/// `z = a W + b` for `a: [K × n_in]`, `W: [n_in × n_out]`.
fn linear_forward(a: &[f64], k: usize, n_in: usize, n_out: usize, w: &[f64], b: &[f64], z: &mut [f64]) {
    for kk in 0..k {
        z[kk * n_out..(kk + 1) * n_out].copy_from_slice(b);
    }
    for i in 0..n_in {
        let row = &w[i * n_out..(i + 1) * n_out];
        for kk in 0..k {
            let s = a[kk * n_in + i];
            if s != 0.0 {
                axpy(&mut z[kk * n_out..(kk + 1) * n_out], s, row);
            }
        }
    }
}

/// Row `i` of the gradients of `z = a W + b`: `Ŵ_i = Σ_k a_ki ẑ_k` into `g`, and (if `d_a` is
/// given) `â_ki = ⟨W_i, ẑ_k⟩`, set to 0 where the ReLU that produced `a` was inactive
/// (`pre < 0`). Users are processed in blocks of four so that the row is streamed once per block.
#[allow(clippy::too_many_arguments)]
#[inline]
fn row_backward(
    a: &[f64],
    k: usize,
    n_in: usize,
    n_out: usize,
    i: usize,
    row: &[f64],
    d_z: &[f64],
    g: &mut [f64],
    d_a: &mut Option<(&mut [f64], &[f64])>,
) {
    let mut k0 = 0;
    while k0 < k {
        let kb = (k - k0).min(4);
        let init = k0 == 0;
        if kb == 4 {
            let d0 = &d_z[k0 * n_out..(k0 + 1) * n_out];
            let d1 = &d_z[(k0 + 1) * n_out..(k0 + 2) * n_out];
            let d2 = &d_z[(k0 + 2) * n_out..(k0 + 3) * n_out];
            let d3 = &d_z[(k0 + 3) * n_out..(k0 + 4) * n_out];
            let s = [a[k0 * n_in + i], a[(k0 + 1) * n_in + i], a[(k0 + 2) * n_in + i], a[(k0 + 3) * n_in + i]];
            if init {
                for ((((gj, e0), e1), e2), e3) in g.iter_mut().zip(d0).zip(d1).zip(d2).zip(d3) {
                    *gj = (s[0] * e0 + s[1] * e1) + (s[2] * e2 + s[3] * e3);
                }
            } else {
                for ((((gj, e0), e1), e2), e3) in g.iter_mut().zip(d0).zip(d1).zip(d2).zip(d3) {
                    *gj += (s[0] * e0 + s[1] * e1) + (s[2] * e2 + s[3] * e3);
                }
            }
            if let Some((da, pre)) = d_a.as_mut() {
                for (u, dz) in [d0, d1, d2, d3].into_iter().enumerate() {
                    let q = (k0 + u) * n_in + i;
                    da[q] = if pre[q] < 0.0 { 0.0 } else { dot(row, dz) };
                }
            }
        } else {
            if init {
                g.fill(0.0);
            }
            for kk in k0..k0 + kb {
                let dz = &d_z[kk * n_out..(kk + 1) * n_out];
                let s = a[kk * n_in + i];
                if s != 0.0 {
                    axpy(g, s, dz);
                }
                if let Some((da, pre)) = d_a.as_mut() {
                    let q = kk * n_in + i;
                    da[q] = if pre[q] < 0.0 { 0.0 } else { dot(row, dz) };
                }
            }
        }
        k0 += kb;
    }
}

/// `b̂ = Σ_k ẑ_k`.
fn bias_backward(k: usize, n_out: usize, d_z: &[f64], g_b: &mut [f64]) {
    g_b.copy_from_slice(&d_z[..n_out]);
    for kk in 1..k {
        axpy(g_b, 1.0, &d_z[kk * n_out..(kk + 1) * n_out]);
    }
}

/// Where the reverse pass puts the parameter gradient.
pub(super) enum Sink<'a> {
    /// Write `∇θ` to `grad`.
    Grad { theta: &'a [f64], grad: &'a mut [f64] },
    /// Apply `θ ← θ − lr ∇θ` layer by layer as soon as a layer's gradient is known (each
    /// gradient row is used while hot; the same operations as a separate SGD pass).
    Sgd { theta: &'a mut [f64], lr: f64, scratch: &'a mut Vec<f64> },
}

impl Sink<'_> {
    fn theta(&self) -> &[f64] {
        match self {
            Sink::Grad { theta, .. } => theta,
            Sink::Sgd { theta, .. } => theta,
        }
    }

    /// Emits the gradient `g` of the parameters `range` (computed by `f` into the sink's
    /// buffer, reading the current parameters).
    fn emit(&mut self, range: std::ops::Range<usize>, f: impl FnOnce(&[f64], &mut [f64])) {
        match self {
            Sink::Grad { theta, grad } => f(theta, &mut grad[range]),
            Sink::Sgd { theta, lr, scratch } => {
                resize(scratch, range.len());
                f(theta, scratch);
                for (p, g) in theta[range].iter_mut().zip(scratch.iter()) {
                    *p -= g * *lr;
                }
            }
        }
    }
}

impl FastNet {
    /// MLP forward: fills the activations and `ws.out` (raw outputs `[K × D_o]`).
    pub(super) fn network_forward(&self, ws: &mut FastWorkspace, p: &[&[f64]], task: &FastTask) {
        let k = task.k;
        let n_hidden = self.layers.len() - 1;
        ws.act[0].copy_from_slice(&task.x);
        for (l, layer) in self.layers.iter().enumerate() {
            let (w, b) = (p[layer.index], p[layer.index + 1]);
            if l == n_hidden {
                linear_forward(&ws.act[l], k, layer.n_in, layer.n_out, w, b, &mut ws.out);
                break;
            }
            let o = layer.n_out;
            linear_forward(&ws.act[l], k, layer.n_in, o, w, b, &mut ws.z[l]);
            let (z, zhat, pre, inv_std) = (&ws.z[l], &mut ws.zhat[l], &mut ws.pre[l], &mut ws.inv_std[l]);
            if layer.batch_norm {
                let (gamma, beta) = (p[layer.index + 2], p[layer.index + 3]);
                let inv_k = 1.0 / k as f64;
                for j in 0..o {
                    let mean = (0..k).map(|kk| z[kk * o + j]).sum::<f64>() * inv_k;
                    let var = (0..k).map(|kk| (z[kk * o + j] - mean).powi(2)).sum::<f64>() * inv_k;
                    let is = 1.0 / (var + BN_EPS).sqrt();
                    inv_std[j] = is;
                    for kk in 0..k {
                        let zh = (z[kk * o + j] - mean) * is;
                        zhat[kk * o + j] = zh;
                        pre[kk * o + j] = zh * gamma[j] + beta[j];
                    }
                }
            } else {
                pre.copy_from_slice(z);
            }
            for (a, &x) in ws.act[l + 1].iter_mut().zip(pre.iter()) {
                *a = x.max(0.0);
            }
        }
    }

    /// MLP reverse from `ws.d_out` (gradient of the raw outputs) into `sink`.
    pub(super) fn network_backward(&self, ws: &mut FastWorkspace, k: usize, sink: &mut Sink<'_>) {
        let n_hidden = self.layers.len() - 1;
        let FastWorkspace { act, zhat, pre, inv_std, d_out, d_a, d_z, .. } = ws;
        // d_z holds ∂L/∂(layer output before BN) of the current layer.
        d_z[..d_out.len()].copy_from_slice(d_out);
        for l in (0..=n_hidden).rev() {
            let layer = self.layers[l];
            let (n_in, n_out) = (layer.n_in, layer.n_out);
            let ow = self.offsets[layer.index];
            let ob = self.offsets[layer.index + 1];
            let dz = &d_z[..k * n_out];
            let a_in = &act[l];
            let mut da = if l > 0 { Some((&mut d_a[..k * n_in], &pre[l - 1][..])) } else { None };
            for i in 0..n_in {
                let range = ow + i * n_out..ow + (i + 1) * n_out;
                let row_range = range.clone();
                sink.emit(range, |theta, g| {
                    row_backward(a_in, k, n_in, n_out, i, &theta[row_range], dz, g, &mut da);
                });
            }
            sink.emit(ob..ob + n_out, |_, g| bias_backward(k, n_out, dz, g));
            if l == 0 {
                break;
            }
            // Into hidden layer l − 1: (ReLU already applied to d_a), then BatchNorm.
            let h = l - 1;
            let o = n_in;
            let hl = self.layers[h];
            if hl.batch_norm {
                let og = self.offsets[hl.index + 2];
                let obeta = self.offsets[hl.index + 3];
                let zh = &zhat[h];
                let is = &inv_std[h];
                let inv_k = 1.0 / k as f64;
                // d_z from the current γ first, then the γ, β gradients.
                {
                    let gamma = &sink.theta()[og..og + o];
                    for j in 0..o {
                        let (mut s1, mut s2) = (0.0, 0.0);
                        for kk in 0..k {
                            let dzh = d_a[kk * o + j] * gamma[j];
                            s1 += dzh;
                            s2 += dzh * zh[kk * o + j];
                        }
                        let (m1, m2) = (s1 * inv_k, s2 * inv_k);
                        for kk in 0..k {
                            let dzh = d_a[kk * o + j] * gamma[j];
                            d_z[kk * o + j] = is[j] * (dzh - m1 - zh[kk * o + j] * m2);
                        }
                    }
                }
                let d_a_ro = &d_a[..k * o];
                sink.emit(og..og + o, |_, g| {
                    for (j, gj) in g.iter_mut().enumerate() {
                        *gj = (0..k).map(|kk| d_a_ro[kk * o + j] * zh[kk * o + j]).sum();
                    }
                });
                sink.emit(obeta..obeta + o, |_, g| {
                    for (j, gj) in g.iter_mut().enumerate() {
                        *gj = (0..k).map(|kk| d_a_ro[kk * o + j]).sum();
                    }
                });
            } else {
                d_z[..k * o].copy_from_slice(&d_a[..k * o]);
            }
        }
    }
}
