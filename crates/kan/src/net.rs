//! Networks that map a flattened gradient to an update of the same size: a multi-layer
//! [`KanNet`] and the reference code's [`Mlp`] (`Linear(n, h) → ReLU → Linear(h, n)`), behind
//! one object-safe trait, [`GradientNet`]. Their optimiser is
//! [`beamlab_candle_bridge::VarAdam`] (the workspace's flat Adam, in place on the variables).
//!
//! Shapes: inputs and outputs are `[n_batch × n_in]` / `[n_batch × n_out]` real tensors (GGML uses
//! `n_batch = 1` and `n_out = n_in`). Every network owns a `VarMap`, so it can be checkpointed with
//! [`beamlab_candle_bridge::save_checkpoint`] (see [`GradientNet::save`] / [`GradientNet::load`]).

use std::path::Path;

use beamlab_candle_bridge::{load_checkpoint, save_checkpoint, seeded_var_builder};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Init, VarMap};
use serde::Deserialize;

use crate::layer::{KanConfig, KanLayer};
use crate::{KanError, invalid};

/// A trainable map from gradients to updates.
pub trait GradientNet: Send {
    /// The output for `x: [n_batch × n_in]`.
    ///
    /// # Errors
    /// Shape and candle errors.
    fn forward(&self, x: &Tensor) -> Result<Tensor, KanError>;

    /// Variables the optimiser updates.
    fn trainable_vars(&self) -> Vec<Var>;

    /// Every variable (trainable or not), for checkpoints.
    fn varmap(&self) -> &VarMap;

    /// Input width.
    fn n_in(&self) -> usize;

    /// Output width.
    fn n_out(&self) -> usize;

    /// For KANs: per layer, the fraction of the layer's inputs (for network input `x`) that lie
    /// inside the layer's inner grid range, where the splines are active; `None` for other nets.
    ///
    /// # Errors
    /// Shape and candle errors.
    fn spline_coverage(&self, _x: &Tensor) -> Result<Option<Vec<f64>>, KanError> {
        Ok(None)
    }

    /// Number of trainable scalars.
    fn n_parameters(&self) -> usize {
        self.trainable_vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Writes every variable to a safetensors file.
    ///
    /// # Errors
    /// IO and candle errors.
    fn save(&self, path: &Path) -> Result<(), KanError> {
        Ok(save_checkpoint(self.varmap(), path)?)
    }

    /// Loads a checkpoint written by [`GradientNet::save`] for a network of the same shape
    /// (strict: nothing is loaded on any mismatch).
    ///
    /// # Errors
    /// [`KanError::Bridge`] on a mismatch or IO failure.
    fn load(&mut self, path: &Path) -> Result<(), KanError> {
        Ok(load_checkpoint(self.varmap(), path)?)
    }
}

/// Which network GGML embeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NetKind {
    /// A KAN `[n, hidden, n]` (the paper's choice).
    #[default]
    Kan,
    /// The reference code's MLP `Linear(n, hidden) → ReLU → Linear(hidden, n)`.
    Mlp,
}

/// A multi-layer KAN with widths `[n_0, n_1, …, n_L]`.
pub struct KanNet {
    layers: Vec<KanLayer>,
    vars: VarMap,
}

impl KanNet {
    /// Builds a KAN with the given widths; weights are drawn deterministically from `seed`.
    ///
    /// # Errors
    /// [`KanError::InvalidParameter`] for fewer than two widths, a zero width or a bad config.
    pub fn new(widths: &[usize], config: &KanConfig, seed: u64, dtype: DType) -> Result<Self, KanError> {
        if widths.len() < 2 {
            return Err(invalid("widths", format!("a KAN needs at least 2 widths, got {widths:?}")));
        }
        let vars = VarMap::new();
        let vb = seeded_var_builder(&vars, seed, dtype, &Device::Cpu);
        let layers = widths
            .windows(2)
            .enumerate()
            .map(|(l, w)| KanLayer::new(w[0], w[1], config, &vars, vb.pp(format!("layer{l}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { layers, vars })
    }

    /// The layers.
    #[must_use]
    pub fn layers(&self) -> &[KanLayer] {
        &self.layers
    }

    /// Grid update of every layer from a batch `x: [n_batch × n_0]`, layer by layer (each layer's
    /// data is the previous, already updated, layer's output).
    ///
    /// # Errors
    /// As [`KanLayer::update_grid`].
    pub fn update_grid(&mut self, x: &Tensor) -> Result<(), KanError> {
        let mut h = x.detach();
        for l in 0..self.layers.len() {
            h = self.layer_input(l, h)?;
            self.layers[l].update_grid(&h)?;
            h = self.layers[l].forward(&h)?.detach();
        }
        Ok(())
    }
}

/// `h / (3 RMS(h_row) + 1e-12)` row by row, from ops with a backward pass.
fn hidden_norm(h: &Tensor) -> Result<Tensor, KanError> {
    let rms = h.sqr()?.mean_keepdim(1)?.sqrt()?.affine(3.0, 1e-12)?;
    Ok(h.broadcast_div(&rms)?)
}

impl KanNet {
    fn layer_input(&self, l: usize, h: Tensor) -> Result<Tensor, KanError> {
        if l > 0 && self.layers[l].config().hidden_rms_norm { hidden_norm(&h) } else { Ok(h) }
    }
}

impl GradientNet for KanNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor, KanError> {
        let mut h = x.clone();
        for (l, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&self.layer_input(l, h)?)?;
        }
        Ok(h)
    }

    fn trainable_vars(&self) -> Vec<Var> {
        self.layers.iter().flat_map(KanLayer::trainable_vars).collect()
    }

    fn varmap(&self) -> &VarMap {
        &self.vars
    }

    fn n_in(&self) -> usize {
        self.layers.first().map_or(0, KanLayer::n_in)
    }

    fn n_out(&self) -> usize {
        self.layers.last().map_or(0, KanLayer::n_out)
    }

    fn spline_coverage(&self, x: &Tensor) -> Result<Option<Vec<f64>>, KanError> {
        let mut h = x.detach();
        let mut out = Vec::with_capacity(self.layers.len());
        for (l, layer) in self.layers.iter().enumerate() {
            h = self.layer_input(l, h)?;
            out.push(layer.in_grid_fraction(&h)?);
            h = layer.forward(&h)?.detach();
        }
        Ok(Some(out))
    }

    fn load(&mut self, path: &Path) -> Result<(), KanError> {
        load_checkpoint(&self.vars, path)?;
        for layer in &mut self.layers {
            layer.refresh_grid()?;
        }
        Ok(())
    }
}

/// `Linear(n_in, hidden) → ReLU → Linear(hidden, n_out)` with PyTorch's default initialisation
/// (weights and biases `U(±1/√fan_in)`), as in the GGML reference code. Weights are stored
/// input-major (`l1.weight: [n_in × hidden]`, `l2.weight: [hidden × n_out]`), the transpose of
/// PyTorch's layout, so that no pass needs a transpose.
pub struct Mlp {
    w1: Var,
    b1: Var,
    w2: Var,
    b2: Var,
    vars: VarMap,
}

impl Mlp {
    /// Builds the MLP; weights are drawn deterministically from `seed`.
    ///
    /// # Errors
    /// [`KanError::InvalidParameter`] for a zero width; candle errors.
    pub fn new(n_in: usize, hidden: usize, n_out: usize, seed: u64, dtype: DType) -> Result<Self, KanError> {
        if n_in == 0 || hidden == 0 || n_out == 0 {
            return Err(invalid("widths", format!("MLP widths must be >= 1, got {n_in}/{hidden}/{n_out}")));
        }
        let vars = VarMap::new();
        let vb = seeded_var_builder(&vars, seed, dtype, &Device::Cpu);
        let u = |fan_in: usize| {
            let b = 1.0 / (fan_in as f64).sqrt();
            Init::Uniform { lo: -b, up: b }
        };
        vb.get_with_hints((n_in, hidden), "l1.weight", u(n_in))?;
        vb.get_with_hints(hidden, "l1.bias", u(n_in))?;
        vb.get_with_hints((hidden, n_out), "l2.weight", u(hidden))?;
        vb.get_with_hints(n_out, "l2.bias", u(hidden))?;
        let get = |n: &str| -> Result<Var, KanError> {
            let d = vars.data().lock().map_err(|_| KanError::Shape("variable map lock poisoned".into()))?;
            d.get(n).cloned().ok_or_else(|| KanError::Shape(format!("no variable {n}")))
        };
        Ok(Self { w1: get("l1.weight")?, b1: get("l1.bias")?, w2: get("l2.weight")?, b2: get("l2.bias")?, vars })
    }
}

impl GradientNet for Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor, KanError> {
        let (_, n) = x.dims2()?;
        if n != self.n_in() {
            return Err(KanError::InputWidth { what: "MLP", expected: self.n_in(), found: n });
        }
        let h = x.matmul(self.w1.as_tensor())?.broadcast_add(self.b1.as_tensor())?.relu()?;
        Ok(h.matmul(self.w2.as_tensor())?.broadcast_add(self.b2.as_tensor())?)
    }

    fn trainable_vars(&self) -> Vec<Var> {
        vec![self.w1.clone(), self.b1.clone(), self.w2.clone(), self.b2.clone()]
    }

    fn varmap(&self) -> &VarMap {
        &self.vars
    }

    fn n_in(&self) -> usize {
        self.w1.dims()[0]
    }

    fn n_out(&self) -> usize {
        self.w2.dims()[1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beamlab_candle_bridge::VarAdam;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn dev() -> Device {
        Device::Cpu
    }

    fn rand_tensor(r: usize, c: usize, lo: f64, hi: f64, seed: u64) -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<f64> = (0..r * c).map(|_| rng.random_range(lo..hi)).collect();
        Tensor::from_vec(v, (r, c), &dev()).unwrap()
    }

    fn scalar(t: &Tensor) -> f64 {
        t.to_scalar::<f64>().unwrap()
    }

    /// Autograd gradients (inputs and every kind of parameter) of a 2-layer KAN against central
    /// finite differences in f64; inputs straddle the grid edges so both the spline and the
    /// outside-the-grid (SiLU only) regimes are exercised.
    #[test]
    fn kan_autograd_matches_finite_differences() {
        for cfg in [KanConfig::default(), KanConfig { hidden_rms_norm: true, ..KanConfig::default() }] {
            kan_autograd_case(&cfg);
        }
    }

    fn kan_autograd_case(cfg: &KanConfig) {
        let net = KanNet::new(&[3, 4, 2], cfg, 11, DType::F64).unwrap();
        let x0 = rand_tensor(5, 3, -1.3, 1.3, 1);
        let proj = rand_tensor(5, 2, -1.0, 1.0, 2);
        let xv = Var::from_tensor(&x0).unwrap();
        let loss = |n: &KanNet, x: &Tensor| scalar(&(n.forward(x).unwrap() * &proj).unwrap().sum_all().unwrap());
        let out = (net.forward(xv.as_tensor()).unwrap() * &proj).unwrap().sum_all().unwrap();
        let grads = out.backward().unwrap();
        let e = 1e-6;
        // Input gradient.
        let gx: Vec<f64> = grads.get(xv.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let xs: Vec<f64> = x0.flatten_all().unwrap().to_vec1().unwrap();
        for idx in [0usize, 4, 7, 14] {
            let mut p = xs.clone();
            p[idx] += e;
            let mut m = xs.clone();
            m[idx] -= e;
            let fp = loss(&net, &Tensor::from_vec(p, (5, 3), &dev()).unwrap());
            let fm = loss(&net, &Tensor::from_vec(m, (5, 3), &dev()).unwrap());
            let fd = (fp - fm) / (2.0 * e);
            assert!((fd - gx[idx]).abs() < 1e-6 * (1.0 + fd.abs()), "dx[{idx}]: fd {fd} vs {}", gx[idx]);
        }
        // Parameter gradients.
        for var in net.trainable_vars() {
            let g: Vec<f64> = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            for idx in [0usize, g.len() / 2, g.len() - 1] {
                let set = |delta: f64| {
                    let mut b = base.clone();
                    b[idx] += delta;
                    var.set(&Tensor::from_vec(b, var.shape(), &dev()).unwrap()).unwrap();
                    loss(&net, &x0)
                };
                let fd = (set(e) - set(-e)) / (2.0 * e);
                set(0.0);
                assert!((fd - g[idx]).abs() < 1e-6 * (1.0 + fd.abs()), "param {idx}: fd {fd} vs {}", g[idx]);
            }
        }
    }

    /// A 1→1 KAN (G = 10, cubic) fitted by Adam to sin(πx) on [−1, 1] reaches RMSE < 0.02.
    #[test]
    fn kan_fits_a_sine() {
        let cfg = KanConfig { grid_size: 10, ..KanConfig::default() };
        let net = KanNet::new(&[1, 1], &cfg, 3, DType::F64).unwrap();
        let n = 101;
        let xs: Vec<f64> = (0..n).map(|i| -1.0 + 2.0 * i as f64 / (n - 1) as f64).collect();
        let ys: Vec<f64> = xs.iter().map(|x| (std::f64::consts::PI * x).sin()).collect();
        let x = Tensor::from_vec(xs, (n, 1), &dev()).unwrap();
        let y = Tensor::from_vec(ys, (n, 1), &dev()).unwrap();
        let mut opt = VarAdam::new(net.trainable_vars(), 0.05).unwrap();
        let mse = |net: &KanNet| (net.forward(&x).unwrap() - &y).unwrap().sqr().unwrap().mean_all().unwrap();
        let initial = scalar(&mse(&net));
        for _ in 0..1500 {
            let l = mse(&net);
            opt.step(&l.backward().unwrap()).unwrap();
        }
        let rmse = scalar(&mse(&net)).sqrt();
        assert!(rmse < 0.02, "RMSE {rmse} (initial MSE {initial})");
    }

    /// After a grid update from skewed data the layer's function is preserved on the old range:
    /// max deviation below 2 % of the function's range on 400 points of [−1, 1].
    #[test]
    fn grid_update_preserves_the_function() {
        let mut net = KanNet::new(&[2, 3], &KanConfig::default(), 5, DType::F64).unwrap();
        // Make the splines matter: larger coefficients than the initial noise.
        for var in net.trainable_vars() {
            let t = var.as_tensor();
            var.set(&(t * 20.0).unwrap()).unwrap();
        }
        let grid_pts: Vec<f64> = (0..400)
            .flat_map(|i| {
                let x = -1.0 + 2.0 * (i as f64 + 0.5) / 400.0;
                [x, -x]
            })
            .collect();
        let probe = Tensor::from_vec(grid_pts, (400, 2), &dev()).unwrap();
        let before: Vec<f64> = net.forward(&probe).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        // Skewed data over [−1, 1]: x = u³ clusters near 0 (new knots are non-uniform).
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let data: Vec<f64> = (0..512)
            .map(|_| {
                let u: f64 = rng.random_range(-1.0..1.0);
                u.powi(3)
            })
            .collect();
        let mut d = data.clone();
        d.extend([-1.0, 1.0, -1.0, 1.0]);
        let x = Tensor::from_vec(d, (258, 2), &dev()).unwrap();
        let old_knots = net.layers()[0].knots().to_vec();
        net.update_grid(&x).unwrap();
        assert_ne!(old_knots, net.layers()[0].knots().to_vec(), "grid did not move");
        let after: Vec<f64> = net.forward(&probe).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let range = before.iter().copied().fold(f64::MIN, f64::max) - before.iter().copied().fold(f64::MAX, f64::min);
        let worst = before.iter().zip(&after).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(worst < 0.02 * range, "max deviation {worst} vs range {range}");
        assert!(net.update_grid(&Tensor::zeros((1, 2), DType::F64, &dev()).unwrap()).is_err());
    }

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kan.safetensors");
        let cfg = KanConfig { hidden_rms_norm: true, ..KanConfig::default() };
        let mut a = KanNet::new(&[4, 3, 4], &cfg, 1, DType::F64).unwrap();
        let x = rand_tensor(16, 4, -0.9, 0.9, 4);
        a.update_grid(&x).unwrap();
        a.save(&path).unwrap();
        let mut b = KanNet::new(&[4, 3, 4], &cfg, 2, DType::F64).unwrap();
        let cov = a.spline_coverage(&x).unwrap().unwrap();
        assert_eq!(cov.len(), 2);
        assert!(cov.iter().all(|c| (0.0..=1.0).contains(c)));
        let ya: Vec<f64> = a.forward(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let yb0: Vec<f64> = b.forward(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_ne!(ya, yb0);
        b.load(&path).unwrap();
        let yb: Vec<f64> = b.forward(&x).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(ya, yb);
        assert_eq!(a.layers()[1].knots(), b.layers()[1].knots());
        let mut c = KanNet::new(&[4, 5, 4], &KanConfig::default(), 2, DType::F64).unwrap();
        assert!(c.load(&path).is_err());
        // MLP round trip.
        let m1 = Mlp::new(4, 8, 4, 1, DType::F64).unwrap();
        let mut m2 = Mlp::new(4, 8, 4, 2, DType::F64).unwrap();
        let p2 = dir.path().join("mlp.safetensors");
        m1.save(&p2).unwrap();
        m2.load(&p2).unwrap();
        assert_eq!(
            m1.forward(&x).unwrap().to_vec2::<f64>().unwrap(),
            m2.forward(&x).unwrap().to_vec2::<f64>().unwrap()
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(KanNet::new(&[3], &KanConfig::default(), 0, DType::F64).is_err());
        assert!(KanNet::new(&[3, 0], &KanConfig::default(), 0, DType::F64).is_err());
        let bad = KanConfig { grid_range: [1.0, -1.0], ..KanConfig::default() };
        assert!(KanNet::new(&[3, 2], &bad, 0, DType::F64).is_err());
        let net = KanNet::new(&[3, 2], &KanConfig::default(), 0, DType::F64).unwrap();
        assert!(net.forward(&Tensor::zeros((1, 4), DType::F64, &dev()).unwrap()).is_err());
        assert!(Mlp::new(0, 2, 2, 0, DType::F64).is_err());
    }
}
