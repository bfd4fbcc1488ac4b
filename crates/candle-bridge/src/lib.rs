//! # beamlab-candle-bridge
//!
//! The single place where beamlab's learning crates (`liquid-nn`, `kan`, `gnn-unroll`,
//! `meta-learn`) meet candle. Nothing else in the workspace converts between ndarray and candle,
//! injects gradients or writes checkpoints.
//!
//! - [`ComplexTensor`]: candle has no complex dtype, so a complex matrix is a pair of real `f64`
//!   tensors `(re, im)` with the few operations the beamformers need (product, adjoint, scaling,
//!   squared Frobenius norm) built from ops whose backward pass candle implements.
//! - [`wirtinger_surrogate`]: feeds an analytic gradient from `linalg-ops` into a candle graph.
//!   For a real loss `L(W)` with Wirtinger gradient `G = ∂L/∂W*`, the gradient with respect to the
//!   real coordinates is `(∂L/∂Re W, ∂L/∂Im W) = (2 Re G, 2 Im G)`; the scalar
//!   `s = Σ 2 (Re G ⊙ Re W + Im G ⊙ Im W)` with `G` held constant has exactly that gradient, so
//!   back-propagating `s` gives every parameter upstream of `W` its true `∂L/∂θ` (no autograd
//!   through LAPACK).
//! - [`adam`] (candle-nn's AdamW over a `VarMap`) and [`VarAdam`] (the workspace's flat-slice
//!   Adam applied in place to candle variables): the only optimiser set-up for candle graphs in
//!   the workspace; [`save_checkpoint`] / [`load_checkpoint`]: safetensors with a
//!   strict name-and-shape check (a load that does not match is an error, never a partial load).
//!
//! ```
//! use beamlab_candle_bridge::{ComplexTensor, wirtinger_surrogate};
//! use beamlab_linalg_ops::c64;
//! use candle_core::{Device, Var};
//! use ndarray::array;
//! // W = x (a 1×1 complex "network output"), L(W) = |W|², so G = ∂L/∂W* = W.
//! let x_re = Var::new(&[[3.0f64]], &Device::Cpu).unwrap();
//! let x_im = Var::new(&[[-1.0f64]], &Device::Cpu).unwrap();
//! let w = ComplexTensor::new(x_re.as_tensor().clone(), x_im.as_tensor().clone()).unwrap();
//! let g = array![[c64::new(3.0, -1.0)]];
//! let grads = wirtinger_surrogate(&w, &g).unwrap().backward().unwrap();
//! // ∂L/∂Re x = 2 Re x = 6, ∂L/∂Im x = 2 Im x = −2.
//! let d_re: Vec<Vec<f64>> = grads.get(&x_re).unwrap().to_vec2().unwrap();
//! let d_im: Vec<Vec<f64>> = grads.get(&x_im).unwrap().to_vec2().unwrap();
//! assert_eq!((d_re[0][0], d_im[0][0]), (6.0, -2.0));
//! ```

use std::collections::HashMap;
use std::path::Path;

use beamlab_linalg_ops::c64;
use candle_core::{DType, Device, Tensor};
use candle_nn::{Init, VarBuilder, VarMap};
use ndarray::Array2;

pub use candle_core;
pub use candle_nn;
pub use optim::{VarAdam, adam, step};

mod optim;

/// Errors of the bridge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// An error from candle.
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// Shapes do not agree.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A learning rate that is not finite and positive.
    #[error("learning rate must be finite and > 0, got {0}")]
    InvalidLearningRate(f64),
    /// A tensor of a dtype the operation does not support.
    #[error("{what}: unsupported dtype {dtype:?} (f32 and f64 only)")]
    UnsupportedDType {
        /// The operation.
        what: &'static str,
        /// The dtype found.
        dtype: DType,
    },
    /// A checkpoint does not match the model.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file.
        path: String,
        /// What does not match.
        message: String,
    },
}

/// A complex matrix as a pair of real `f64` tensors of equal shape.
#[derive(Clone, Debug)]
pub struct ComplexTensor {
    /// Real part.
    pub re: Tensor,
    /// Imaginary part.
    pub im: Tensor,
}

impl ComplexTensor {
    /// Pairs two real tensors.
    ///
    /// # Errors
    /// [`BridgeError::Shape`] when the shapes differ.
    pub fn new(re: Tensor, im: Tensor) -> Result<Self, BridgeError> {
        if re.dims() != im.dims() {
            return Err(BridgeError::Shape(format!("re {:?} vs im {:?}", re.dims(), im.dims())));
        }
        Ok(Self { re, im })
    }

    /// A constant complex tensor from an ndarray matrix (no gradient tracking).
    ///
    /// # Errors
    /// candle errors.
    pub fn from_array(a: &Array2<c64>, device: &Device) -> Result<Self, BridgeError> {
        let (r, c) = a.dim();
        let re: Vec<f64> = a.iter().map(|z| z.re).collect();
        let im: Vec<f64> = a.iter().map(|z| z.im).collect();
        Ok(Self { re: Tensor::from_vec(re, (r, c), device)?, im: Tensor::from_vec(im, (r, c), device)? })
    }

    /// Back to an ndarray matrix.
    ///
    /// # Errors
    /// [`BridgeError::Shape`] unless the tensors are 2-D; candle errors.
    pub fn to_array(&self) -> Result<Array2<c64>, BridgeError> {
        let dims = self.re.dims().to_vec();
        if dims.len() != 2 {
            return Err(BridgeError::Shape(format!("expected a matrix, got {dims:?}")));
        }
        let re: Vec<f64> = self.re.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let im: Vec<f64> = self.im.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        Array2::from_shape_vec((dims[0], dims[1]), re.iter().zip(&im).map(|(r, i)| c64::new(*r, *i)).collect())
            .map_err(|e| BridgeError::Shape(e.to_string()))
    }

    /// Matrix product `self · other`.
    ///
    /// # Errors
    /// candle errors (incompatible shapes).
    pub fn matmul(&self, other: &Self) -> Result<Self, BridgeError> {
        let re = (self.re.matmul(&other.re)? - self.im.matmul(&other.im)?)?;
        let im = (self.re.matmul(&other.im)? + self.im.matmul(&other.re)?)?;
        Ok(Self { re, im })
    }

    /// Conjugate transpose.
    ///
    /// # Errors
    /// candle errors.
    pub fn adjoint(&self) -> Result<Self, BridgeError> {
        Ok(Self { re: self.re.t()?.contiguous()?, im: self.im.t()?.neg()?.contiguous()? })
    }

    /// Sum `self + other`.
    ///
    /// # Errors
    /// candle errors.
    pub fn add(&self, other: &Self) -> Result<Self, BridgeError> {
        Ok(Self { re: (&self.re + &other.re)?, im: (&self.im + &other.im)? })
    }

    /// Multiplies by a real scalar tensor (shape `[]` or broadcastable).
    ///
    /// # Errors
    /// candle errors.
    pub fn scale(&self, s: &Tensor) -> Result<Self, BridgeError> {
        Ok(Self { re: self.re.broadcast_mul(s)?, im: self.im.broadcast_mul(s)? })
    }

    /// `‖self‖_F²` as a scalar tensor.
    ///
    /// # Errors
    /// candle errors.
    pub fn norm_sqr(&self) -> Result<Tensor, BridgeError> {
        Ok((self.re.sqr()?.sum_all()? + self.im.sqr()?.sum_all()?)?)
    }

    /// Scales to `‖W‖_F² = power` inside the graph (differentiable; the normalisation the power
    /// constraint requires, `√P · W / ‖W‖_F`).
    ///
    /// # Errors
    /// candle errors.
    pub fn normalize_power(&self, power: f64) -> Result<Self, BridgeError> {
        let inv = self.norm_sqr()?.sqrt()?.recip()?.affine(power.sqrt(), 0.0)?;
        self.scale(&inv)
    }
}

/// The surrogate scalar whose gradient injects an analytic Wirtinger gradient `G = ∂L/∂W*` at the
/// graph node `W`: `s = Σ 2 (Re G ⊙ Re W + Im G ⊙ Im W)`, `G` constant (see the crate docs).
///
/// # Errors
/// [`BridgeError::Shape`] when `G` and `W` differ in shape.
pub fn wirtinger_surrogate(w: &ComplexTensor, g: &Array2<c64>) -> Result<Tensor, BridgeError> {
    if w.re.dims() != [g.nrows(), g.ncols()] {
        return Err(BridgeError::Shape(format!("W is {:?}, gradient is {:?}", w.re.dims(), g.dim())));
    }
    let device = w.re.device();
    let gt = ComplexTensor::from_array(&g.mapv(|z| z * 2.0), device)?;
    let gt_re = gt.re.to_dtype(w.re.dtype())?;
    let gt_im = gt.im.to_dtype(w.im.dtype())?;
    Ok(((&w.re * &gt_re)?.sum_all()? + (&w.im * &gt_im)?.sum_all()?)?)
}

/// Writes every variable of `vars` to a safetensors file.
///
/// # Errors
/// candle IO errors.
pub fn save_checkpoint(vars: &VarMap, path: &Path) -> Result<(), BridgeError> {
    vars.save(path)?;
    Ok(())
}

/// Loads a safetensors file into `vars`. The file must hold exactly the variables of `vars`, with
/// the same shapes; otherwise nothing is loaded and the error lists every difference.
///
/// # Errors
/// [`BridgeError::Checkpoint`] on any mismatch; candle IO errors.
pub fn load_checkpoint(vars: &VarMap, path: &Path) -> Result<(), BridgeError> {
    let shown = path.display().to_string();
    let tensors: HashMap<String, Tensor> = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| BridgeError::Checkpoint { path: shown.clone(), message: e.to_string() })?;
    let data = vars
        .data()
        .lock()
        .map_err(|_| BridgeError::Checkpoint { path: shown.clone(), message: "variable map lock poisoned".into() })?;
    let mut problems = Vec::new();
    for (name, var) in data.iter() {
        match tensors.get(name) {
            None => problems.push(format!("missing `{name}`")),
            Some(t) if t.dims() != var.dims() => {
                problems.push(format!("`{name}` has shape {:?}, model expects {:?}", t.dims(), var.dims()))
            }
            Some(_) => {}
        }
    }
    for name in tensors.keys() {
        if !data.contains_key(name) {
            problems.push(format!("unexpected `{name}`"));
        }
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(BridgeError::Checkpoint { path: shown, message: problems.join("; ") });
    }
    for (name, var) in data.iter() {
        if let Some(t) = tensors.get(name) {
            var.set(&t.to_dtype(var.dtype())?)?;
        }
    }
    Ok(())
}

/// A `VarBuilder` whose new variables are drawn from a seeded generator instead of candle's
/// unseeded one, so that the same seed gives the same network. Each variable's values depend only
/// on `(seed, name, shape, init)`, not on creation order. Variables are stored in `vars`
/// (trainable, checkpointable). Supports every `candle_nn::Init`.
#[must_use]
pub fn seeded_var_builder(vars: &VarMap, seed: u64, dtype: DType, device: &Device) -> VarBuilder<'static> {
    VarBuilder::from_backend(Box::new(SeededBackend { vars: vars.clone(), seed }), dtype, device.clone())
}

struct SeededBackend {
    vars: VarMap,
    seed: u64,
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn draw(init: Init, shape: &candle_core::Shape, seed: u64) -> Vec<f64> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, StandardNormal, Uniform};
    let n = shape.elem_count();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let uniform = |lo: f64, up: f64, rng: &mut rand_chacha::ChaCha8Rng| -> Vec<f64> {
        match Uniform::new(lo, up) {
            Ok(d) => (0..n).map(|_| d.sample(rng)).collect(),
            Err(_) => vec![lo; n],
        }
    };
    match init {
        Init::Const(c) => vec![c; n],
        Init::Randn { mean, stdev } => (0..n)
            .map(|_| mean + stdev * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng))
            .collect(),
        Init::Uniform { lo, up } => uniform(lo, up, &mut rng),
        Init::Kaiming { dist, fan, non_linearity } => {
            let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
            match dist {
                candle_nn::init::NormalOrUniform::Uniform => {
                    let b = 3f64.sqrt() * std;
                    uniform(-b, b, &mut rng)
                }
                candle_nn::init::NormalOrUniform::Normal => (0..n)
                    .map(|_| std * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng))
                    .collect(),
            }
        }
    }
}

impl candle_nn::var_builder::SimpleBackend for SeededBackend {
    fn get(
        &self,
        s: candle_core::Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data =
            self.vars.data().lock().map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
        if let Some(v) = data.get(name) {
            if v.shape() != &s {
                return Err(candle_core::Error::Msg(format!("shape mismatch on {name}: {s:?} <> {:?}", v.shape())));
            }
            return Ok(v.as_tensor().clone());
        }
        let values = draw(h, &s, self.seed ^ fnv1a(name.as_bytes()).rotate_left(17));
        let var = candle_core::Var::from_tensor(&Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> candle_core::Result<Tensor> {
        let data = self.vars.data().lock().map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
        data.get(name)
            .map(|v| v.as_tensor().clone())
            .ok_or_else(|| candle_core::Error::Msg(format!("no variable named {name}")))
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars.data().lock().map(|d| d.contains_key(name)).unwrap_or(false)
    }
}

/// Deep copies of every variable (for rolling back a diverged optimiser step).
///
/// # Errors
/// candle errors.
pub fn snapshot(vars: &VarMap) -> Result<Vec<(String, Tensor)>, BridgeError> {
    let data = vars.data().lock().map_err(|_| BridgeError::Shape("variable map lock poisoned".into()))?;
    let mut out = Vec::with_capacity(data.len());
    for (name, var) in data.iter() {
        out.push((name.clone(), var.as_tensor().copy()?));
    }
    Ok(out)
}

/// Restores a [`snapshot`].
///
/// # Errors
/// candle errors, or a name missing from `vars`.
pub fn restore(vars: &VarMap, snap: &[(String, Tensor)]) -> Result<(), BridgeError> {
    let data = vars.data().lock().map_err(|_| BridgeError::Shape("variable map lock poisoned".into()))?;
    for (name, t) in snap {
        let var = data.get(name).ok_or_else(|| BridgeError::Shape(format!("no variable named {name}")))?;
        var.set(t)?;
    }
    Ok(())
}

/// Whether every variable is finite.
///
/// # Errors
/// candle errors.
pub fn all_finite(vars: &VarMap) -> Result<bool, BridgeError> {
    for v in vars.all_vars() {
        let vals: Vec<f64> = v.as_tensor().to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        if vals.iter().any(|x| !x.is_finite()) {
            return Ok(false);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::{Init, VarBuilder};

    fn rand_c(r: usize, c: usize, seed: u64) -> Array2<c64> {
        // Small deterministic pseudo-random values (no RNG dependency needed).
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        Array2::from_shape_fn((r, c), |_| {
            let mut next = || {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            };
            c64::new(next(), next())
        })
    }

    #[test]
    fn complex_ops_match_ndarray() {
        let a = rand_c(3, 4, 1);
        let b = rand_c(4, 2, 2);
        let ta = ComplexTensor::from_array(&a, &Device::Cpu).unwrap();
        let tb = ComplexTensor::from_array(&b, &Device::Cpu).unwrap();
        let p = ta.matmul(&tb).unwrap().to_array().unwrap();
        let expect = a.dot(&b);
        assert!((&p - &expect).iter().map(|z| z.norm()).fold(0.0, f64::max) < 1e-12);
        let ah = ta.adjoint().unwrap().to_array().unwrap();
        assert_eq!(ah, a.t().mapv(|z| z.conj()));
        let n: f64 = ta.normalize_power(2.5).unwrap().norm_sqr().unwrap().to_scalar().unwrap();
        assert!((n - 2.5).abs() < 1e-12);
    }

    /// Gradient injection through a small real network equals the chain rule computed by hand:
    /// W = H^H X with X = θ (re, im parameters), L = WSR-like function from linalg-ops.
    #[test]
    fn injected_gradient_matches_finite_differences() {
        let h = vec![rand_c(2, 5, 3), rand_c(2, 5, 4)];
        let hs = beamlab_linalg_ops::stack_blocks(&h).unwrap();
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F64, &Device::Cpu);
        let x_re = vb.get_with_hints((4, 2), "x_re", Init::Randn { mean: 0.0, stdev: 1.0 }).unwrap();
        let x_im = vb.get_with_hints((4, 2), "x_im", Init::Randn { mean: 0.0, stdev: 1.0 }).unwrap();
        let hh = ComplexTensor::from_array(&hs.t().mapv(|z| z.conj()), &Device::Cpu).unwrap();
        let x = ComplexTensor::new(x_re.clone(), x_im.clone()).unwrap();
        let w = hh.matmul(&x).unwrap().normalize_power(3.0).unwrap();
        let loss = beamlab_linalg_ops::PenalisedLoss::glnn();
        let noise = [1.0, 1.0];
        let w_nd = w.to_array().unwrap();
        let lg = beamlab_linalg_ops::penalised_loss_gradient(&h, w_nd.view(), &noise, &loss).unwrap();
        let grads = wirtinger_surrogate(&w, &lg.grad).unwrap().backward().unwrap();
        let g_re: Vec<Vec<f64>> = grads.get(&x_re).unwrap().to_vec2().unwrap();
        // Finite differences on the real part of X[1, 0].
        let x0: Array2<c64> = x.to_array().unwrap();
        let f = |xx: &Array2<c64>| {
            let w = hs.t().mapv(|z| z.conj()).dot(xx);
            let w = beamlab_linalg_ops::normalize_total_power(w.view(), 3.0).unwrap();
            let r = beamlab_linalg_ops::user_rates(&h, w.view(), &noise).unwrap();
            loss.value_and_rate_derivative(r.as_slice().unwrap()).0
        };
        let t = 1e-6;
        let mut xp = x0.clone();
        xp[[1, 0]] += c64::new(t, 0.0);
        let mut xm = x0.clone();
        xm[[1, 0]] -= c64::new(t, 0.0);
        let fd = (f(&xp) - f(&xm)) / (2.0 * t);
        assert!((fd - g_re[1][0]).abs() < 1e-6 * fd.abs().max(1.0), "fd {fd} vs injected {}", g_re[1][0]);
    }

    #[test]
    fn seeded_builder_is_deterministic_and_order_free() {
        let build = |order: [&str; 2], seed: u64| {
            let vm = VarMap::new();
            let vb = seeded_var_builder(&vm, seed, DType::F64, &Device::Cpu);
            for name in order {
                candle_nn::linear(3, 2, vb.pp(name)).unwrap();
            }
            let mut d: Vec<(String, Vec<f64>)> = vm
                .data()
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()))
                .collect();
            d.sort_by(|a, b| a.0.cmp(&b.0));
            d
        };
        let a = build(["l1", "l2"], 5);
        assert_eq!(a, build(["l2", "l1"], 5));
        assert_ne!(a, build(["l1", "l2"], 6));
        // The requested distribution is honoured.
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, 9, DType::F64, &Device::Cpu);
        let u = vb.get_with_hints((100, 50), "u", Init::Uniform { lo: -0.5, up: 0.5 }).unwrap();
        let v: Vec<f64> = u.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| (-0.5..0.5).contains(x)));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.02 && (var - 1.0 / 12.0).abs() < 0.005, "mean {mean} var {var}");
    }

    #[test]
    fn snapshot_restores_after_divergence() {
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, 1, DType::F64, &Device::Cpu);
        let _ = candle_nn::linear(2, 2, vb).unwrap();
        let snap = snapshot(&vm).unwrap();
        for v in vm.all_vars() {
            v.set(&v.as_tensor().affine(0.0, f64::NAN).unwrap()).unwrap();
        }
        assert!(!all_finite(&vm).unwrap());
        restore(&vm, &snap).unwrap();
        assert!(all_finite(&vm).unwrap());
    }

    #[test]
    fn checkpoints_round_trip_and_reject_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let make = |shape: (usize, usize)| {
            let vm = VarMap::new();
            let vb = VarBuilder::from_varmap(&vm, DType::F64, &Device::Cpu);
            vb.get_with_hints(shape, "layer.w", Init::Randn { mean: 0.0, stdev: 1.0 }).unwrap();
            vm
        };
        let a = make((2, 3));
        save_checkpoint(&a, &path).unwrap();
        let b = make((2, 3));
        load_checkpoint(&b, &path).unwrap();
        let va: Vec<Vec<f64>> = a.all_vars()[0].to_vec2().unwrap();
        let vb: Vec<Vec<f64>> = b.all_vars()[0].to_vec2().unwrap();
        assert_eq!(va, vb);
        let c = make((3, 2));
        let e = load_checkpoint(&c, &path).unwrap_err().to_string();
        assert!(e.contains("layer.w") && e.contains("shape"), "{e}");
        let missing = dir.path().join("none.safetensors");
        assert!(load_checkpoint(&b, &missing).is_err());
    }
}

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
