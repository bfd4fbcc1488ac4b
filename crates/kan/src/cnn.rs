//! An offline-trained CNN hybrid precoder: a documented stand-in for the attention-based CNN of
//! Jiang, Lu, Li, Wang, Zhou and Dai (ITW 2021), the "CNN" baseline of the GGML paper (whose code
//! and exact architecture are not public).
//!
//! System model as [`crate::ggml`]: `H: [K × N]`, `F: [N × M]` unit modulus, `D: [M × K]`,
//! `‖FD‖_F² = P`. Network (input: `H` as a `[2 × K × N]` real image, divided by its RMS):
//! `Conv(2→c, 3×3) → ReLU → Conv(c→c, 3×3) → ReLU → channel attention` (squeeze-and-excitation:
//! per-channel mean → `Linear(c, c/2)` → ReLU → `Linear(c/2, c)` → sigmoid, multiplying each
//! channel) `→ flatten → Linear(c K N, h) → ReLU → Linear(h, NM (+ 2MK))`. The first `NM` outputs
//! are phase corrections `Δθ` to the matched-filter prior `θ⁰[n, j] = −arg h_{j mod K}[n]`,
//! `F = e^{j(θ⁰ + Δθ)}`; `D` is zero-forcing on `HF` ([`CnnDigital::ZeroForcing`], default) or the
//! remaining outputs (`[Re | Im]` rows, [`CnnDigital::Learned`]), normalised to full power.
//! Training is unsupervised on Saleh–Valenzuela channels: the loss is GGML's
//! `−Σ α_k R_k + β Var(R)` (with `β` a parameter, default 0), its analytic gradient injected at
//! `W = F D` (learned `D`) or at `F` with `D` held fixed (zero-forcing `D`) and back-propagated
//! through the normalisation, `e^{jθ}` and the network.

use std::path::Path;

use beamlab_candle_bridge::{
    ComplexTensor, VarAdam, load_checkpoint, save_checkpoint, seeded_var_builder, wirtinger_surrogate,
};
use beamlab_channel::{SvParams, saleh_valenzuela};
use beamlab_core::{Beamformer, CoreError, Diagnostics, MethodKind, Precoder, Problem, Solution};
use beamlab_linalg_ops::c64;
use candle_core::{D, DType, Device, Module, Tensor, Var};
use candle_nn::{Conv2dConfig, VarMap};
use ndarray::Array2;
use rand::RngCore;
use serde::Deserialize;

use crate::ggml::{HybridSetup, Objective, method_error, zf_digital};
use crate::{KanError, invalid};

/// Sizes, training set-up and architecture of [`CnnHybrid`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CnnParams {
    /// Antennas `N` (default 64).
    pub n_tx: usize,
    /// RF chains `M` (default 4).
    pub n_rf: usize,
    /// Users `K` (default 4).
    pub n_users: usize,
    /// Training SNR in dB (`P = 1`, default 10).
    pub snr_db: f64,
    /// Convolution channels `c` (default 16).
    pub n_channels: usize,
    /// Hidden width `h` of the dense head (default 256).
    pub hidden: usize,
    /// Training channels (default 4000).
    pub n_train: usize,
    /// Epochs (default 20).
    pub n_epochs: usize,
    /// Mini-batch size (default 32).
    pub batch_size: usize,
    /// Adam learning rate (default 1e-3).
    pub lr: f64,
    /// Variance penalty `β` of the training loss (default 0: sum rate).
    pub var_weight: f64,
    /// Draw `n_train` new channels every epoch instead of reusing one set (default true: with a
    /// fixed set of 4000 channels the first, prior-free version over-fitted: training SE 2.1 vs test
    /// SE 0.94).
    pub fresh_channels: bool,
    /// How the digital precoder is formed (default zero-forcing on `H F`).
    pub digital: CnnDigital,
}

/// The digital part of the CNN precoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CnnDigital {
    /// The network outputs only the phases; `D` is zero-forcing on `H F`, scaled to full power.
    /// Training uses `∂L/∂F*` at fixed `D` (the dependence of `D` on `F` is not differentiated).
    #[default]
    ZeroForcing,
    /// The network also outputs `D` (normalised to full power in the graph).
    Learned,
}

impl Default for CnnParams {
    fn default() -> Self {
        Self {
            n_tx: 64,
            n_rf: 4,
            n_users: 4,
            snr_db: 10.0,
            n_channels: 16,
            hidden: 256,
            n_train: 4000,
            n_epochs: 20,
            batch_size: 32,
            lr: 1e-3,
            var_weight: 0.0,
            fresh_channels: true,
            digital: CnnDigital::ZeroForcing,
        }
    }
}

impl CnnParams {
    /// Checks the values.
    ///
    /// # Errors
    /// [`KanError::InvalidParameter`], [`KanError::TooFewRfChains`], [`KanError::TooManyRfChains`].
    pub fn check(&self) -> Result<(), KanError> {
        for (name, v) in [("n_tx", self.n_tx), ("n_users", self.n_users), ("hidden", self.hidden)] {
            if v == 0 {
                return Err(invalid(name, "must be >= 1"));
            }
        }
        if self.n_channels < 2 {
            return Err(invalid("n_channels", format!("must be >= 2, got {}", self.n_channels)));
        }
        if self.n_rf < self.n_users {
            return Err(KanError::TooFewRfChains { n_rf: self.n_rf, n_users: self.n_users });
        }
        if self.n_rf > self.n_tx {
            return Err(KanError::TooManyRfChains { n_rf: self.n_rf, n_tx: self.n_tx });
        }
        for (name, v) in [("n_train", self.n_train), ("n_epochs", self.n_epochs), ("batch_size", self.batch_size)] {
            if v == 0 {
                return Err(invalid(name, "must be >= 1"));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(invalid("lr", format!("must be finite and > 0, got {}", self.lr)));
        }
        if !self.snr_db.is_finite() {
            return Err(invalid("snr_db", format!("must be finite, got {}", self.snr_db)));
        }
        if !(self.var_weight.is_finite() && self.var_weight >= 0.0) {
            return Err(invalid("var_weight", "must be finite and >= 0"));
        }
        Ok(())
    }
}

/// The trained CNN hybrid precoder (a [`Beamformer`] of kind [`MethodKind::Offline`]).
pub struct CnnHybrid {
    params: CnnParams,
    vars: VarMap,
    conv1: candle_nn::Conv2d,
    conv2: candle_nn::Conv2d,
    att1: candle_nn::Linear,
    att2: candle_nn::Linear,
    fc1: candle_nn::Linear,
    fc2: candle_nn::Linear,
    /// Mean training loss per epoch.
    pub training_curve: Vec<f64>,
}

impl std::fmt::Debug for CnnHybrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CnnHybrid").field("params", &self.params).field("training_curve", &self.training_curve).finish()
    }
}

fn channel_image(h: &[Array2<c64>]) -> Vec<f64> {
    let (k, n) = (h.len(), h[0].ncols());
    let rms = (h.iter().flat_map(|b| b.iter()).map(|z| z.norm_sqr()).sum::<f64>() / (k * n) as f64).sqrt().max(1e-300);
    let mut v = vec![0.0; 2 * k * n];
    for (u, b) in h.iter().enumerate() {
        for (j, z) in b.row(0).iter().enumerate() {
            v[u * n + j] = z.re / rms;
            v[k * n + u * n + j] = z.im / rms;
        }
    }
    v
}

impl CnnHybrid {
    /// An untrained network with weights drawn from `seed`.
    ///
    /// # Errors
    /// Parameter and candle errors.
    pub fn new(params: &CnnParams, seed: u64) -> Result<Self, KanError> {
        params.check()?;
        let vars = VarMap::new();
        let vb = seeded_var_builder(&vars, seed, DType::F32, &Device::Cpu);
        let c = params.n_channels;
        let cfg = Conv2dConfig { padding: 1, ..Conv2dConfig::default() };
        let n_out = params.n_tx * params.n_rf
            + if params.digital == CnnDigital::Learned { 2 * params.n_rf * params.n_users } else { 0 };
        Ok(Self {
            conv1: candle_nn::conv2d(2, c, 3, cfg, vb.pp("conv1"))?,
            conv2: candle_nn::conv2d(c, c, 3, cfg, vb.pp("conv2"))?,
            att1: candle_nn::linear(c, c / 2, vb.pp("att1"))?,
            att2: candle_nn::linear(c / 2, c, vb.pp("att2"))?,
            fc1: candle_nn::linear(c * params.n_users * params.n_tx, params.hidden, vb.pp("fc1"))?,
            fc2: candle_nn::linear(params.hidden, n_out, vb.pp("fc2"))?,
            params: params.clone(),
            vars,
            training_curve: Vec::new(),
        })
    }

    /// Trains a new network on `params.n_train` Saleh–Valenzuela channels drawn from `rng`.
    ///
    /// # Errors
    /// Parameter, channel, linear-algebra and candle errors.
    pub fn train(params: &CnnParams, rng: &mut dyn RngCore) -> Result<Self, KanError> {
        let mut net = Self::new(params, rng.next_u64())?;
        let _span = tracing::info_span!("cnn_train", n_train = params.n_train, n_epochs = params.n_epochs).entered();
        let noise = 10f64.powf(-params.snr_db / 10.0);
        let draw = |rng: &mut dyn RngCore| -> Result<Vec<Vec<Array2<c64>>>, KanError> {
            (0..params.n_train)
                .map(|_| {
                    saleh_valenzuela(&SvParams::default(), params.n_users, params.n_tx, rng)
                        .map(|h| h.blocks().to_vec())
                        .map_err(KanError::from)
                })
                .collect()
        };
        let mut data = draw(rng)?;
        let mut opt = VarAdam::new(net.vars.all_vars(), params.lr)?;
        let alpha = vec![1.0 / params.n_users as f64; params.n_users];
        let noise_v = vec![noise; params.n_users];
        let objective = Objective::Rate { var_weight: params.var_weight };
        let mut order: Vec<usize> = (0..params.n_train).collect();
        for epoch in 0..params.n_epochs {
            if params.fresh_channels && epoch > 0 {
                data = draw(rng)?;
            }
            // Fisher–Yates with the injected rng.
            for i in (1..order.len()).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                order.swap(i, j);
            }
            let mut total = 0.0;
            for chunk in order.chunks(params.batch_size) {
                let batch: Vec<&Vec<Array2<c64>>> = chunk.iter().map(|&i| &data[i]).collect();
                let (fs, _, ws) = net.forward_batch(&batch)?;
                let mut surrogate: Option<Tensor> = None;
                for (b, h) in batch.iter().enumerate() {
                    let scale = 1.0 / batch.len() as f64;
                    let s = match params.digital {
                        CnnDigital::Learned => {
                            let w = ws[b].to_array()?;
                            let r = beamlab_linalg_ops::user_rates(h, w.view(), &noise_v)?;
                            let (loss, c) = objective.value_and_rate_derivative(r.as_slice().unwrap_or(&[]), &alpha);
                            total += loss;
                            let (_, g) = beamlab_linalg_ops::rate_gradient(h, w.view(), &noise_v, &c)?;
                            wirtinger_surrogate(&ws[b], &g.mapv(|z| z * scale))?
                        }
                        CnnDigital::ZeroForcing => {
                            let f = fs[b].to_array()?;
                            let d = zf_digital(&beamlab_linalg_ops::stack_blocks(h)?, &f, 1.0)?;
                            let r = beamlab_linalg_ops::hybrid_user_rates(h, f.view(), d.view(), &noise_v)?;
                            let (loss, c) = objective.value_and_rate_derivative(r.as_slice().unwrap_or(&[]), &alpha);
                            total += loss;
                            let (_, g_f, _) =
                                beamlab_linalg_ops::hybrid_rate_gradient(h, f.view(), d.view(), &noise_v, &c)?;
                            wirtinger_surrogate(&fs[b], &g_f.mapv(|z| z * scale))?
                        }
                    };
                    surrogate = Some(match surrogate {
                        None => s,
                        Some(acc) => (acc + s)?,
                    });
                }
                if let Some(s) = surrogate {
                    opt.step(&s.backward()?)?;
                }
            }
            net.training_curve.push(total / params.n_train as f64);
        }
        Ok(net)
    }

    /// Forward pass for a batch of channels: per sample `(F, D, W)` as graph tensors.
    #[allow(clippy::type_complexity)]
    fn forward_batch(
        &self,
        batch: &[&Vec<Array2<c64>>],
    ) -> Result<(Vec<ComplexTensor>, Vec<ComplexTensor>, Vec<ComplexTensor>), KanError> {
        let p = &self.params;
        let (k, n, m) = (p.n_users, p.n_tx, p.n_rf);
        let img: Vec<f32> = batch.iter().flat_map(|h| channel_image(h)).map(|v| v as f32).collect();
        let x = Tensor::from_vec(img, (batch.len(), 2, k, n), &Device::Cpu)?;
        let y = self.conv1.forward(&x)?.relu()?;
        let y = self.conv2.forward(&y)?.relu()?;
        // Channel attention (squeeze-and-excitation).
        let s = y.mean(D::Minus1)?.mean(D::Minus1)?;
        let s = candle_nn::ops::sigmoid(&self.att2.forward(&self.att1.forward(&s)?.relu()?)?)?;
        let y = y.broadcast_mul(&s.unsqueeze(2)?.unsqueeze(3)?)?;
        let y = y.flatten_from(1)?;
        let out = self.fc2.forward(&self.fc1.forward(&y)?.relu()?)?.to_dtype(DType::F64)?;
        let (mut fs, mut ds, mut ws) = (Vec::new(), Vec::new(), Vec::new());
        for (b, h) in batch.iter().enumerate() {
            let o = out.get(b)?;
            // Phases relative to the matched-filter prior θ⁰[n, j] = −arg h_{j mod K}[n].
            let prior: Vec<f64> = (0..n * m).map(|idx| -h[(idx % m) % k][[0, idx / m]].arg()).collect();
            let prior = Tensor::from_vec(prior, (n, m), &Device::Cpu)?;
            let theta = (o.narrow(0, 0, n * m)?.reshape((n, m))? + prior)?;
            let f = ComplexTensor::new(theta.cos()?, theta.sin()?)?;
            if p.digital == CnnDigital::ZeroForcing {
                fs.push(f);
                continue;
            }
            let dd = o.narrow(0, n * m, 2 * m * k)?.reshape((m, 2 * k))?;
            let d_raw = ComplexTensor::new(dd.narrow(1, 0, k)?, dd.narrow(1, k, k)?)?;
            let w_raw = f.matmul(&d_raw)?;
            let inv = w_raw.norm_sqr()?.sqrt()?.recip()?;
            ds.push(d_raw.scale(&inv)?);
            ws.push(w_raw.scale(&inv)?);
            fs.push(f);
        }
        Ok((fs, ds, ws))
    }

    /// Writes the weights to a safetensors file.
    ///
    /// # Errors
    /// IO and candle errors.
    pub fn save(&self, path: &Path) -> Result<(), KanError> {
        Ok(save_checkpoint(&self.vars, path)?)
    }

    /// Loads weights saved by [`CnnHybrid::save`] for the same parameters (strict).
    ///
    /// # Errors
    /// [`KanError::Bridge`] on any mismatch.
    pub fn load(&mut self, path: &Path) -> Result<(), KanError> {
        Ok(load_checkpoint(&self.vars, path)?)
    }

    /// The variables (for inspection).
    #[must_use]
    pub fn vars(&self) -> Vec<Var> {
        self.vars.all_vars()
    }
}

impl Beamformer for CnnHybrid {
    fn name(&self) -> &str {
        "CNN (hybrid)"
    }

    fn kind(&self) -> MethodKind {
        MethodKind::Offline
    }

    fn solve(&mut self, problem: &Problem, _rng: &mut dyn RngCore) -> Result<Solution, CoreError> {
        let started = std::time::Instant::now();
        let p = &self.params;
        let setup = HybridSetup::from_problem(problem, Some(p.n_rf)).map_err(|e| method_error("CNN", e))?;
        if problem.n_tx() != p.n_tx || problem.n_users() != p.n_users {
            return Err(method_error(
                "CNN",
                KanError::Shape(format!(
                    "trained for N = {}, K = {}; problem has N = {}, K = {}",
                    p.n_tx,
                    p.n_users,
                    problem.n_tx(),
                    problem.n_users()
                )),
            ));
        }
        let (fs, ds, _) = self.forward_batch(&[&setup.h]).map_err(|e| method_error("CNN", e))?;
        let conv = |t: &ComplexTensor| t.to_array().map_err(|e| method_error("CNN", e.into()));
        let f = conv(&fs[0])?.mapv(|z| z / z.norm());
        let mut d = match ds.first() {
            Some(d) => conv(d)?,
            None => zf_digital(&problem.channel.stacked(), &f, setup.power).map_err(|e| method_error("CNN", e))?,
        };
        let pw = beamlab_linalg_ops::total_power(f.dot(&d).view());
        d.mapv_inplace(|z| z * (setup.power / pw).sqrt());
        let se = Precoder::Hybrid { f: f.clone(), d: d.clone() }.rates(&problem.channel, &problem.noise_power)?.sum()
            / p.n_users as f64;
        Ok(Solution {
            precoder: Precoder::Hybrid { f, d },
            diagnostics: Diagnostics {
                n_iterations: 1,
                converged: true,
                objective_trace: vec![se],
                elapsed: started.elapsed(),
                notes: vec![],
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn cnn_trains_solves_and_round_trips() {
        let params = CnnParams {
            n_tx: 8,
            n_rf: 2,
            n_users: 2,
            n_channels: 4,
            hidden: 32,
            n_train: 64,
            n_epochs: 6,
            batch_size: 16,
            lr: 3e-3,
            ..CnnParams::default()
        };
        for digital in [CnnDigital::ZeroForcing, CnnDigital::Learned] {
            check_cnn(&CnnParams { digital, ..params.clone() });
        }
    }

    fn check_cnn(params: &CnnParams) {
        let params = params.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut net = CnnHybrid::train(&params, &mut rng).unwrap();
        let c = &net.training_curve;
        assert_eq!(c.len(), 6);
        assert!(c[5] < c[0], "training loss did not decrease: {c:?}");
        let h = saleh_valenzuela(&SvParams::default(), 2, 8, &mut rng).unwrap();
        let p = Problem::new(h, 0.1, 1.0).unwrap();
        let sol = net.solve(&p, &mut rng).unwrap();
        let Precoder::Hybrid { f, .. } = &sol.precoder else { panic!("not hybrid") };
        assert!(f.iter().all(|z| (z.norm() - 1.0).abs() < 1e-12));
        assert!((sol.precoder.total_power().unwrap() - 1.0).abs() < 1e-10);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cnn.safetensors");
        net.save(&path).unwrap();
        let mut other = CnnHybrid::new(&params, 99).unwrap();
        other.load(&path).unwrap();
        assert_eq!(other.solve(&p, &mut rng).unwrap().precoder, sol.precoder);
        let wrong = Problem::new(saleh_valenzuela(&SvParams::default(), 2, 16, &mut rng).unwrap(), 0.1, 1.0).unwrap();
        assert!(net.solve(&wrong, &mut rng).is_err());
        assert!(CnnHybrid::new(&CnnParams { n_rf: 1, ..params }, 0).is_err());
    }
}
