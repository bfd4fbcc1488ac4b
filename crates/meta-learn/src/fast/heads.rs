//! The covariance heads of the fast path (full rank `L Lᴴ`, SALR `A Aᴴ + S`), the output scaling
//! by `s_k²` and the fusion with `R^S`, forward and reverse (derivation in [`super`]).

// Index loops over several parallel buffers are the clearest form of these kernels.
#![allow(clippy::needless_range_loop)]

use beamlab_linalg_ops::c64;

use super::workspace::FastWorkspace;
use super::{FastNet, FastTask, Head};

fn softplus(x: f64) -> f64 {
    x.max(0.0) + (1.0 + (-x.abs()).exp()).ln()
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The full-rank head's lower-triangular factor `L` (row-major `m × m`) from the raw outputs:
/// softplus diagonal, then the real and the imaginary parts of the strictly lower triangle.
fn full_rank_factor(m: usize, out: &[f64], fac: &mut [c64]) {
    let n_low = m * (m - 1) / 2;
    fac.fill(c64::new(0.0, 0.0));
    for i in 0..m {
        fac[i * m + i] = c64::new(softplus(out[i]), 0.0);
        for j in 0..i {
            let q = i * (i - 1) / 2 + j;
            fac[i * m + j] = c64::new(out[m + q], out[m + n_low + q]);
        }
    }
}

impl FastNet {
    /// Heads, output scaling and fusion: `ws.r[k] = η R^S_k + (1 − η) s_k² head(out_k)`.
    pub(super) fn covariances_forward(&self, ws: &mut FastWorkspace, task: &FastTask) {
        let (m, k) = (self.m, task.k);
        let mm = m * m;
        let (eta, one_m_eta) = (self.eta, 1.0 - self.eta);
        for kk in 0..k {
            let out = &ws.out[kk * self.output_dim..(kk + 1) * self.output_dim];
            let r = &mut ws.r[kk * mm..(kk + 1) * mm];
            self.head_forward(out, &mut ws.fac, r);
            let s2 = task.scales2[kk];
            let rs = &task.r_s[kk * mm..(kk + 1) * mm];
            for (x, y) in r.iter_mut().zip(rs) {
                *x = *y * eta + (*x * s2) * one_m_eta;
            }
        }
    }

    /// `R_net` of one user from its raw outputs (exactly Hermitian); the factor goes to `fac`.
    fn head_forward(&self, out: &[f64], fac: &mut [c64], r: &mut [c64]) {
        let m = self.m;
        match &self.head {
            Head::FullRank => {
                full_rank_factor(m, out, fac);
                for i in 0..m {
                    for j in 0..=i {
                        let mut s = c64::new(0.0, 0.0);
                        for c in 0..=j {
                            s += fac[i * m + c] * fac[j * m + c].conj();
                        }
                        r[i * m + j] = s;
                        r[j * m + i] = s.conj();
                    }
                    r[i * m + i].im = 0.0;
                }
            }
            Head::Salr { rank, sparse, pairs } => {
                let rank = *rank;
                for i in 0..m {
                    for c in 0..rank {
                        fac[i * rank + c] = c64::new(out[i * rank + c], out[rank * m + i * rank + c]);
                    }
                }
                for i in 0..m {
                    for j in 0..=i {
                        let mut s = c64::new(0.0, 0.0);
                        for c in 0..rank {
                            s += fac[i * rank + c] * fac[j * rank + c].conj();
                        }
                        r[i * m + j] = s;
                        r[j * m + i] = s.conj();
                    }
                    r[i * m + i].im = 0.0;
                }
                if *sparse {
                    let base = 2 * rank * m;
                    let np = pairs.len();
                    for i in 0..m {
                        r[i * m + i].re += softplus(out[base + i]);
                    }
                    for (q, &(i, j)) in pairs.iter().enumerate() {
                        let (x, y) = (out[base + m + q], out[base + m + np + q]);
                        let mag = (x * x + y * y + 1e-12).sqrt();
                        r[i * m + i].re += mag;
                        r[j * m + j].re += mag;
                        r[i * m + j] += c64::new(x, y);
                        r[j * m + i] += c64::new(x, -y);
                    }
                }
            }
        }
    }

    /// Head backward for one user: `g` = gradient w.r.t. `R_net` (already scaled); writes `d_out`.
    fn head_backward(
        &self,
        out: &[f64],
        g: &[c64],
        g_s: &mut [c64],
        fac: &mut [c64],
        fac_hat: &mut [c64],
        d_out: &mut [f64],
    ) {
        let m = self.m;
        for i in 0..m {
            for j in 0..m {
                g_s[i * m + j] = g[i * m + j] + g[j * m + i].conj();
            }
        }
        match &self.head {
            Head::FullRank => {
                let n_low = m * (m - 1) / 2;
                full_rank_factor(m, out, fac);
                // Â[i][c] = Σ_{j ≥ c} Ĝ_s[i][j] L[j][c] for c ≤ i.
                for i in 0..m {
                    for c in 0..=i {
                        let mut s = c64::new(0.0, 0.0);
                        for j in c..m {
                            s += g_s[i * m + j] * fac[j * m + c];
                        }
                        fac_hat[i * m + c] = s;
                    }
                }
                for i in 0..m {
                    d_out[i] = fac_hat[i * m + i].re * sigmoid(out[i]);
                    for j in 0..i {
                        let q = i * (i - 1) / 2 + j;
                        d_out[m + q] = fac_hat[i * m + j].re;
                        d_out[m + n_low + q] = fac_hat[i * m + j].im;
                    }
                }
            }
            Head::Salr { rank, sparse, pairs } => {
                let rank = *rank;
                for i in 0..m {
                    for c in 0..rank {
                        fac[i * rank + c] = c64::new(out[i * rank + c], out[rank * m + i * rank + c]);
                    }
                }
                fac_hat.fill(c64::new(0.0, 0.0));
                for i in 0..m {
                    for j in 0..m {
                        let gij = g_s[i * m + j];
                        for c in 0..rank {
                            fac_hat[i * rank + c] += gij * fac[j * rank + c];
                        }
                    }
                }
                for i in 0..m {
                    for c in 0..rank {
                        d_out[i * rank + c] = fac_hat[i * rank + c].re;
                        d_out[rank * m + i * rank + c] = fac_hat[i * rank + c].im;
                    }
                }
                if *sparse {
                    let base = 2 * rank * m;
                    let np = pairs.len();
                    for i in 0..m {
                        d_out[base + i] = g[i * m + i].re * sigmoid(out[base + i]);
                    }
                    for (q, &(i, j)) in pairs.iter().enumerate() {
                        let (x, y) = (out[base + m + q], out[base + m + np + q]);
                        let mag = (x * x + y * y + 1e-12).sqrt();
                        let dd = g[i * m + i].re + g[j * m + j].re;
                        let gs = g_s[i * m + j];
                        d_out[base + m + q] = gs.re + dd * x / mag;
                        d_out[base + m + np + q] = gs.im + dd * y / mag;
                    }
                }
            }
        }
    }

    /// Reverse of [`FastNet::covariances_forward`]: from `ws.r_hat` (gradient of the combined
    /// covariances) to `ws.d_out` (gradient of the raw outputs).
    pub(super) fn covariances_backward(&self, ws: &mut FastWorkspace, task: &FastTask) {
        let (m, k) = (self.m, task.k);
        let mm = m * m;
        let d_o = self.output_dim;
        let one_m_eta = 1.0 - self.eta;
        for kk in 0..k {
            let sc = one_m_eta * task.scales2[kk];
            for z in &mut ws.r_hat[kk * mm..(kk + 1) * mm] {
                *z *= sc;
            }
            let FastWorkspace { out, r_hat, g_s, fac, fac_hat, d_out, .. } = ws;
            self.head_backward(
                &out[kk * d_o..(kk + 1) * d_o],
                &r_hat[kk * mm..(kk + 1) * mm],
                g_s,
                fac,
                fac_hat,
                &mut d_out[kk * d_o..(kk + 1) * d_o],
            );
        }
    }
}
