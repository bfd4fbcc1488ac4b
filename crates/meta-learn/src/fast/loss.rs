//! The sum-rate losses of the fast path: `−Σ_n WSR(ĥ_n, V)` (support, spec (22)) or
//! `−WSR(h, V)` (query, spec (30)), with their gradient with respect to the final precoder.

// Index loops over several parallel buffers are the clearest form of these kernels.
#![allow(clippy::needless_range_loop)]

use beamlab_linalg_ops::c64;
use beamlab_linalg_ops::small::split::cdot_conj;

use super::workspace::FastWorkspace;
use super::{FastNet, FastTask};
use crate::MetaLearnError;
use crate::covnet::LossKind;

impl FastNet {
    /// Negative WSR of the final precoder on the channel columns `(hr, hi)` (`[K × M]`, split),
    /// accumulating `∂/∂V` into `ws.sv.vh_*` if `grad`.
    fn wsr_loss(&self, ws: &mut FastWorkspace, task: &FastTask, hc: &(Vec<f64>, Vec<f64>), grad: bool) -> f64 {
        let (m, k) = (self.m, task.k);
        let km = k * m;
        let sv = &mut ws.sv;
        let off = self.n_unroll * km;
        let sys = &task.sys;
        let ln2 = std::f64::consts::LN_2;
        let mut loss = 0.0;
        for kk in 0..k {
            let (hr, hi) = (&hc.0[kk * m..(kk + 1) * m], &hc.1[kk * m..(kk + 1) * m]);
            let mut total = 0.0;
            for i in 0..k {
                let (re, im) = cdot_conj(
                    hr,
                    hi,
                    &sv.v_re[off + i * m..off + (i + 1) * m],
                    &sv.v_im[off + i * m..off + (i + 1) * m],
                );
                sv.gl[i] = c64::new(re, im);
                total += re * re + im * im;
            }
            let signal = sv.gl[kk].norm_sqr();
            let interference = (total - signal) + sys.noise[kk];
            let om = sys.weights[kk];
            loss -= om * (signal / interference + 1.0).ln() / ln2;
            if grad {
                let tk = signal + interference;
                for i in 0..k {
                    let dl = if i == kk { -om / (tk * ln2) } else { om * signal / (interference * tk * ln2) };
                    let gh = sv.gl[i] * (2.0 * dl);
                    let (nr, ni) = (&mut sv.vh_re[i * m..(i + 1) * m], &mut sv.vh_im[i * m..(i + 1) * m]);
                    for row in 0..m {
                        nr[row] += gh.re * hr[row] - gh.im * hi[row];
                        ni[row] += gh.re * hi[row] + gh.im * hr[row];
                    }
                }
            }
        }
        loss
    }

    /// The support loss (summed over the samples) or the query loss of the final precoder.
    pub(super) fn loss_terms(
        &self,
        ws: &mut FastWorkspace,
        task: &FastTask,
        kind: LossKind,
        grad: bool,
    ) -> Result<f64, MetaLearnError> {
        if grad {
            ws.sv.vh_re.fill(0.0);
            ws.sv.vh_im.fill(0.0);
        }
        match kind {
            LossKind::Support => {
                let mut total = 0.0;
                for s in &task.samples {
                    total += self.wsr_loss(ws, task, s, grad);
                }
                Ok(total)
            }
            LossKind::Query => {
                let h = task.h_true.as_ref().ok_or(MetaLearnError::MissingTrueChannels)?;
                Ok(self.wsr_loss(ws, task, h, grad))
            }
        }
    }
}
