//! The test oracle: the composed candle graph of the whole model (network → head → fusion →
//! unrolled robust WMMSE → sum-rate loss) with candle's autograd. The production path
//! ([`crate::fast`]) is checked against it, value and every gradient entry, to 1e-9 relative;
//! the graph itself is checked against finite differences and against the classical robust
//! WMMSE of [`crate::wmmse`]. Compiled for tests only.

mod solve;
pub(crate) mod unrolled;

use beamlab_candle_bridge::ComplexTensor;
use beamlab_linalg_ops::c64;
use candle_core::{Device, Tensor, Var};
use ndarray::Array2;

use crate::MetaLearnError;
use crate::covnet::{CovHead, CovNet, CovNetConfig, LossKind, Params, Task};
use unrolled::{ComplexBatch, columns_tensor, negative_wsr, unrolled_robust_wmmse};

/// A block as graph constants.
struct TaskGraph {
    h_bar: ComplexTensor,
    v0: ComplexTensor,
    sample_cov: ComplexBatch,
    samples: Vec<ComplexTensor>,
    h_true: Option<ComplexTensor>,
    noise: Tensor,
    weights: Tensor,
}

impl TaskGraph {
    fn new(task: &Task, device: &Device) -> Result<Self, MetaLearnError> {
        let n = task.n_samples();
        let samples = (0..n)
            .map(|i| columns_tensor(&task.samples.iter().map(|s| s[i].clone()).collect::<Vec<_>>(), device))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            h_bar: columns_tensor(&task.h_bar, device)?,
            v0: ComplexTensor::from_array(&crate::wmmse::mrt_start(&task.h_bar, task.sys.power)?, device)?,
            sample_cov: ComplexBatch::from_arrays(&task.sample_cov, device)?,
            samples,
            h_true: task.h_true.as_deref().map(|h| columns_tensor(h, device)).transpose()?,
            noise: Tensor::new(task.sys.noise.as_slice(), device)?,
            weights: Tensor::new(task.sys.weights.as_slice(), device)?,
        })
    }
}

fn softplus(x: &Tensor) -> Result<Tensor, MetaLearnError> {
    // relu(x) + log(1 + exp(−|x|)), stable for large |x|.
    let pos = x.relu()?;
    let abs = (&pos + x.neg()?.relu()?)?;
    Ok((pos + (abs.neg()?.exp()? + 1.0)?.log()?)?)
}

/// The candle graph of a [`CovNet`] with the head's selection matrices.
pub(crate) struct Oracle<'a> {
    net: &'a CovNet,
    /// `P_diag [M, M²]`; full rank `P_low [L, M²]`; SALR `(P_sym [P, M²], P_anti [P, M²], P_abs [P, M])`.
    p_diag: Tensor,
    p_low: Option<Tensor>,
    salr: Option<(Tensor, Tensor, Tensor)>,
}

impl<'a> Oracle<'a> {
    pub(crate) fn new(net: &'a CovNet) -> Result<Self, MetaLearnError> {
        let m = net.config().n_tx;
        let device = net.device();
        let mut p_diag = vec![0.0; m * m * m];
        for i in 0..m {
            p_diag[i * m * m + i * m + i] = 1.0;
        }
        let p_diag = Tensor::from_vec(p_diag, (m, m * m), device)?;
        let (mut p_low, mut salr) = (None, None);
        match net.config().head {
            CovHead::FullRank => {
                let pairs: Vec<(usize, usize)> = (0..m).flat_map(|i| (0..i).map(move |j| (i, j))).collect();
                let mut p = vec![0.0; pairs.len() * m * m];
                for (q, &(i, j)) in pairs.iter().enumerate() {
                    p[q * m * m + i * m + j] = 1.0;
                }
                p_low = Some(Tensor::from_vec(p, (pairs.len(), m * m), device)?);
            }
            CovHead::Salr { density, .. } if density > 0.0 => {
                let pairs = net.mask_pairs();
                let np = pairs.len().max(1);
                let (mut sym, mut anti, mut abs) = (vec![0.0; np * m * m], vec![0.0; np * m * m], vec![0.0; np * m]);
                for (q, &(i, j)) in pairs.iter().enumerate() {
                    sym[q * m * m + i * m + j] = 1.0;
                    sym[q * m * m + j * m + i] = 1.0;
                    anti[q * m * m + i * m + j] = 1.0;
                    anti[q * m * m + j * m + i] = -1.0;
                    abs[q * m + i] = 1.0;
                    abs[q * m + j] = 1.0;
                }
                salr = Some((
                    Tensor::from_vec(sym, (np, m * m), device)?,
                    Tensor::from_vec(anti, (np, m * m), device)?,
                    Tensor::from_vec(abs, (np, m), device)?,
                ));
            }
            CovHead::Salr { .. } => {}
        }
        Ok(Self { net, p_diag, p_low, salr })
    }

    fn config(&self) -> &CovNetConfig {
        self.net.config()
    }

    /// Raw MLP output `[K, D_o]` for inputs `x: [K, 2M]`.
    fn mlp(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor, MetaLearnError> {
        let mut h = x.clone();
        let mut idx = 0;
        let n_hidden = self.config().hidden.len();
        for l in 0..=n_hidden {
            h = h.matmul(&params[idx])?.broadcast_add(&params[idx + 1])?;
            idx += 2;
            if l < n_hidden {
                if self.config().batch_norm {
                    let mean = h.mean_keepdim(0)?;
                    let centred = h.broadcast_sub(&mean)?;
                    let var = centred.sqr()?.mean_keepdim(0)?;
                    h = centred.broadcast_div(&(var + 1e-5)?.sqrt()?)?;
                    h = h.broadcast_mul(&params[idx])?.broadcast_add(&params[idx + 1])?;
                    idx += 2;
                }
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    /// Predicted covariances `R_net,k` (scale-equivariant, Hermitian PSD), `[K, M, M]`.
    fn predict_graph(&self, params: &[Tensor], task: &Task, g: &TaskGraph) -> Result<ComplexBatch, MetaLearnError> {
        let m = self.config().n_tx;
        let k = task.n_users();
        let device = self.net.device();
        let inv_s = Tensor::from_vec(task.scales.iter().map(|s| 1.0 / s).collect::<Vec<_>>(), (k, 1), device)?;
        let x = Tensor::cat(&[&g.h_bar.re.t()?, &g.h_bar.im.t()?], 1)?.broadcast_mul(&inv_s)?;
        let out = self.mlp(params, &x)?;
        let (re, im) = self.head(&out, k)?;
        let s2 = Tensor::from_vec(task.scales.iter().map(|s| s * s).collect::<Vec<_>>(), (k, 1, 1), device)?;
        let _ = m;
        Ok(ComplexBatch { re: re.broadcast_mul(&s2)?, im: im.broadcast_mul(&s2)? })
    }

    /// Head: raw outputs `[K, D_o]` → `(Re R, Im R)`, each `[K, M, M]`.
    fn head(&self, out: &Tensor, k: usize) -> Result<(Tensor, Tensor), MetaLearnError> {
        let m = self.config().n_tx;
        let gram = |lr: &Tensor, li: &Tensor| -> Result<(Tensor, Tensor), MetaLearnError> {
            // (L Lᴴ): re = Lr Lrᵀ + Li Liᵀ, im = Li Lrᵀ − Lr Liᵀ.
            let (lrt, lit) = (lr.transpose(1, 2)?, li.transpose(1, 2)?);
            let re = (lr.matmul(&lrt)? + li.matmul(&lit)?)?;
            let im = (li.matmul(&lrt)? - lr.matmul(&lit)?)?;
            Ok((re, im))
        };
        match self.config().head {
            CovHead::FullRank => {
                let n_low = m * (m - 1) / 2;
                let d = softplus(&out.narrow(1, 0, m)?)?;
                let p_low = self.p_low.as_ref().ok_or(MetaLearnError::Empty { what: "full-rank selection matrix" })?;
                let lr = (d.matmul(&self.p_diag)? + out.narrow(1, m, n_low)?.matmul(p_low)?)?.reshape((k, m, m))?;
                let li = out.narrow(1, m + n_low, n_low)?.matmul(p_low)?.reshape((k, m, m))?;
                gram(&lr, &li)
            }
            CovHead::Salr { rank, .. } => {
                let ar = out.narrow(1, 0, rank * m)?.reshape((k, m, rank))?;
                let ai = out.narrow(1, rank * m, rank * m)?.reshape((k, m, rank))?;
                let (mut re, mut im) = gram(&ar, &ai)?;
                if let Some((sym, anti, abs_map)) = &self.salr {
                    let base = 2 * rank * m;
                    let np = self.net.mask_pairs().len();
                    let d = softplus(&out.narrow(1, base, m)?)?;
                    let mut diag = d;
                    if np > 0 {
                        let x = out.narrow(1, base + m, np)?;
                        let y = out.narrow(1, base + m + np, np)?;
                        let mag = ((x.sqr()? + y.sqr()?)? + 1e-12)?.sqrt()?;
                        diag = (diag + mag.matmul(abs_map)?)?;
                        re = (re + x.matmul(sym)?.reshape((k, m, m))?)?;
                        im = (im + y.matmul(anti)?.reshape((k, m, m))?)?;
                    }
                    re = (re + diag.matmul(&self.p_diag)?.reshape((k, m, m))?)?;
                }
                Ok((re, im))
            }
        }
    }

    /// Precoder `V: [M × K]`: network → fusion `η R^S + (1 − η) R_net` → `T` unrolled iterations.
    fn precoder_graph(&self, params: &[Tensor], task: &Task, g: &TaskGraph) -> Result<ComplexTensor, MetaLearnError> {
        let eta = self.config().fusion_eta;
        let cov = g.sample_cov.affine_mix(eta, &self.predict_graph(params, task, g)?, 1.0 - eta)?;
        let n_unroll = self.config().n_unroll;
        unrolled_robust_wmmse(&g.h_bar, &cov, &g.v0, &g.noise, &g.weights, task.sys.power, n_unroll)
    }

    /// The precoder as a matrix.
    pub(crate) fn precoder(&self, params: &[Tensor], task: &Task) -> Result<Array2<c64>, MetaLearnError> {
        let g = TaskGraph::new(task, self.net.device())?;
        Ok(self.precoder_graph(params, task, &g)?.to_array()?)
    }

    /// Predicted covariances (before the fusion with `R^S`) as matrices.
    pub(crate) fn predict_arrays(&self, params: &[Tensor], task: &Task) -> Result<Vec<Array2<c64>>, MetaLearnError> {
        let g = TaskGraph::new(task, self.net.device())?;
        self.predict_graph(params, task, &g)?.to_arrays()
    }

    fn loss_graph(&self, params: &[Tensor], task: &Task, kind: LossKind) -> Result<Tensor, MetaLearnError> {
        let g = TaskGraph::new(task, self.net.device())?;
        let v = self.precoder_graph(params, task, &g)?;
        match kind {
            LossKind::Support => {
                let mut total: Option<Tensor> = None;
                for s in &g.samples {
                    let l = negative_wsr(s, &v, &g.noise, &g.weights)?;
                    total = Some(match total {
                        None => l,
                        Some(t) => (t + l)?,
                    });
                }
                total.ok_or(MetaLearnError::Empty { what: "samples" })
            }
            LossKind::Query => {
                let h = g.h_true.as_ref().ok_or(MetaLearnError::MissingTrueChannels)?;
                negative_wsr(h, &v, &g.noise, &g.weights)
            }
        }
    }

    /// Loss of a task.
    pub(crate) fn loss(&self, params: &[Tensor], task: &Task, kind: LossKind) -> Result<f64, MetaLearnError> {
        Ok(self.loss_graph(params, task, kind)?.to_scalar::<f64>()?)
    }

    /// Loss value and its gradient with respect to every parameter tensor (candle autograd).
    pub(crate) fn loss_and_grad(
        &self,
        params: &[Tensor],
        task: &Task,
        kind: LossKind,
    ) -> Result<(f64, Params), MetaLearnError> {
        let vars: Vec<Var> = params.iter().map(Var::from_tensor).collect::<Result<_, _>>()?;
        let ts: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let loss = self.loss_graph(&ts, task, kind)?;
        let value = loss.to_scalar::<f64>()?;
        let grads = loss.backward()?;
        let g = ts
            .iter()
            .map(|t| match grads.get(t) {
                Some(g) => Ok(g.detach()),
                None => t.zeros_like(),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((value, g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::covnet::combine;
    use crate::covnet::tests::task;
    use crate::wmmse::SystemParams;
    use beamlab_channel::unknown_error::{haar_unitary, sample_error_block};
    use beamlab_channel::{UnknownErrorParams, rayleigh};
    use beamlab_linalg_ops::self_adjoint_eigen;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Every predicted covariance of both heads is Hermitian with min eigenvalue ≥ 0 (to
    /// round-off) over random inputs and random (large) parameters.
    #[test]
    fn predicted_covariances_are_hermitian_psd() {
        let dev = Device::Cpu;
        for (head, scale) in [
            (CovHead::FullRank, 1.0),
            (CovHead::Salr { rank: 2, density: 0.3 }, 1.0),
            (CovHead::Salr { rank: 1, density: 0.5 }, 30.0),
            (CovHead::Salr { rank: 2, density: 0.0 }, 1.0),
        ] {
            let cfg = CovNetConfig { n_tx: 8, hidden: vec![16, 16], head, ..Default::default() };
            let net = CovNet::new(cfg, &dev).unwrap();
            for seed in 0..5 {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let params: Params =
                    net.init_params(&mut rng).unwrap().into_iter().map(|t| (t * scale).unwrap()).collect();
                let t = task(8, 3, 100 + seed);
                for r in Oracle::new(&net).unwrap().predict_arrays(&params, &t).unwrap() {
                    let herm = r.iter().zip(r.t().iter()).map(|(a, b)| (a - b.conj()).norm()).fold(0.0, f64::max);
                    let scale_r = r.iter().map(|z| z.norm()).fold(0.0, f64::max);
                    assert!(herm <= 1e-12 * scale_r.max(1.0), "{head:?}: {herm}");
                    let (ev, _) = self_adjoint_eigen(r.view()).unwrap();
                    let min = ev.iter().copied().fold(f64::INFINITY, f64::min);
                    assert!(min >= -1e-10 * scale_r.max(1.0), "{head:?}: min eigenvalue {min}");
                }
            }
        }
    }

    /// Scale equivariance: scaling every sample by c scales R_net by c².
    #[test]
    fn prediction_is_scale_equivariant() {
        let dev = Device::Cpu;
        let cfg = CovNetConfig { n_tx: 6, hidden: vec![8], head: CovHead::FullRank, ..Default::default() };
        let net = CovNet::new(cfg, &dev).unwrap();
        let p = net.init_params(&mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let h = rayleigh(3, 1, 6, &mut rng).unwrap();
        let q = haar_unitary(6, &mut rng).unwrap();
        let b = sample_error_block(&h, &q, &UnknownErrorParams::default(), &mut rng).unwrap();
        let s1: Vec<_> = b.iter().map(|u| u.samples.clone()).collect();
        let s3: Vec<Vec<_>> = s1.iter().map(|v| v.iter().map(|x| x.mapv(|z| z * 3.0)).collect()).collect();
        let sys = SystemParams::uniform(3, 0.01, 1.0);
        let oracle = Oracle::new(&net).unwrap();
        let r1 = oracle.predict_arrays(&p, &Task::new(&s1, None, &sys).unwrap()).unwrap();
        let r3 = oracle.predict_arrays(&p, &Task::new(&s3, None, &sys).unwrap()).unwrap();
        for (a, b) in r1.iter().zip(&r3) {
            let err = a.iter().zip(b.iter()).map(|(x, y)| (x * 9.0 - y).norm()).fold(0.0, f64::max);
            assert!(err < 1e-9 * b.iter().map(|z| z.norm()).fold(0.0, f64::max));
        }
    }

    /// Finite-difference check of the full network → fusion → unrolled WMMSE → loss gradient
    /// along a random parameter direction (directional derivative).
    #[test]
    fn network_gradient_matches_finite_differences() {
        let dev = Device::Cpu;
        for head in [CovHead::FullRank, CovHead::Salr { rank: 2, density: 0.4 }] {
            let cfg = CovNetConfig { n_tx: 4, hidden: vec![6, 5], head, n_unroll: 3, ..Default::default() };
            let net = CovNet::new(cfg, &dev).unwrap();
            let oracle = Oracle::new(&net).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(9);
            let p: Params = net.init_params(&mut rng).unwrap().into_iter().map(|t| (t * 5.0).unwrap()).collect();
            let dir = net.init_params(&mut rng).unwrap();
            let t = task(4, 3, 77);
            for kind in [LossKind::Support, LossKind::Query] {
                let (_, g) = oracle.loss_and_grad(&p, &t, kind).unwrap();
                let analytic: f64 = g
                    .iter()
                    .zip(&dir)
                    .map(|(a, b)| (a * b).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap())
                    .sum();
                let eps = 1e-5;
                let at = |s: f64| oracle.loss(&combine(&[&p, &dir], &[1.0, s]).unwrap(), &t, kind).unwrap();
                let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                assert!(
                    (fd - analytic).abs() < 1e-5 * (1.0 + fd.abs()),
                    "{head:?} {kind:?}: fd {fd}, autograd {analytic}"
                );
            }
        }
    }

    /// N = 1: the sample covariance is zero (documented fallback) and everything still runs.
    #[test]
    fn single_sample_blocks_work() {
        let dev = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let h = rayleigh(3, 1, 4, &mut rng).unwrap();
        let q = haar_unitary(4, &mut rng).unwrap();
        let p1 = UnknownErrorParams { n_samples: 1, ..Default::default() };
        let b = sample_error_block(&h, &q, &p1, &mut rng).unwrap();
        let samples: Vec<_> = b.iter().map(|u| u.samples.clone()).collect();
        let t = Task::new(&samples, None, &SystemParams::uniform(3, 0.01, 1.0)).unwrap();
        assert!(t.sample_cov.iter().all(|r| r.iter().all(|z| z.norm() == 0.0)));
        let net = CovNet::new(CovNetConfig { n_tx: 4, hidden: vec![4], ..Default::default() }, &dev).unwrap();
        let p = net.init_params(&mut rng).unwrap();
        let (l, _) = Oracle::new(&net).unwrap().loss_and_grad(&p, &t, LossKind::Support).unwrap();
        assert!(l.is_finite() && l < 0.0);
    }
}
