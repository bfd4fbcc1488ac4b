//! Optimiser set-up for candle graphs: the one place in beamlab where an optimiser meets candle
//! variables.
//!
//! - [`adam`] / [`step`]: candle-nn's `AdamW` with zero weight decay over a whole `VarMap` (the
//!   learning crates' trainers).
//! - [`VarAdam`]: the same update over a list of variables, computed by the workspace's one
//!   flat-slice Adam, [`beamlab_linalg_ops::optim::Adam`], directly in each variable's storage.
//!   For the hot loops that take thousands of tiny steps (GGML solves every problem with fresh
//!   networks): candle-nn's `AdamW` allocates ~14 tensors per variable and step, `VarAdam` none
//!   (the gradient is read into one reused scratch buffer and the variable is updated in place by
//!   a candle in-place op).
//!
//! Arithmetic: on `f64` variables `VarAdam` and `candle_nn::AdamW` (zero decay) agree to the last
//! bit (tested below). On `f32` variables both keep `f32` moments and compute in `f32` (the
//! single-precision networks' update costs half of an `f64` one); the gradient is read in place
//! from its storage when it is a contiguous tensor of the variable's type.

use std::cell::RefCell;

use beamlab_linalg_ops::optim::{Adam, AdamScalar};
use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Storage, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};

use crate::BridgeError;

/// An Adam optimiser over every variable of `vars` (AdamW with zero weight decay, candle's
/// implementation; `β = (0.9, 0.999)`, `ε = 1e-8`, PyTorch's defaults).
///
/// # Errors
/// candle errors.
pub fn adam(vars: &VarMap, lr: f64) -> Result<AdamW, BridgeError> {
    Ok(AdamW::new(vars.all_vars(), ParamsAdamW { lr, weight_decay: 0.0, ..ParamsAdamW::default() })?)
}

/// Runs one optimiser step on the gradient of `loss`.
///
/// # Errors
/// candle errors.
pub fn step(opt: &mut AdamW, loss: &Tensor) -> Result<(), BridgeError> {
    opt.backward_step(loss)?;
    Ok(())
}

/// Adam (`β = (0.9, 0.999)`, `ε = 1e-8`, no weight decay) over a list of `f32` / `f64` CPU
/// variables, each with its own [`beamlab_linalg_ops::optim::Adam`] moments, updated in place
/// without allocating (see the module docs).
///
/// A variable without a gradient in a step is left alone and its step count does not advance
/// (candle-nn advances one count for all; the two agree whenever every variable has a gradient at
/// every step).
///
/// ```
/// use beamlab_candle_bridge::VarAdam;
/// use candle_core::{Device, Var};
/// // Minimise (θ − 3)² from θ = 0.
/// let theta = Var::new(&[0.0f64], &Device::Cpu).unwrap();
/// let mut opt = VarAdam::new(vec![theta.clone()], 0.05).unwrap();
/// for _ in 0..2000 {
///     let loss = (theta.as_tensor() - 3.0).unwrap().sqr().unwrap().sum_all().unwrap();
///     opt.step(&loss.backward().unwrap()).unwrap();
/// }
/// let t: Vec<f64> = theta.as_tensor().to_vec1().unwrap();
/// assert!((t[0] - 3.0).abs() < 1e-3);
/// ```
#[derive(Debug)]
pub struct VarAdam {
    slots: Vec<(Var, Moments)>,
    lr: f64,
    /// A gradient converted to the variable's type when it is not a contiguous tensor of it.
    scratch64: Vec<f64>,
    scratch32: Vec<f32>,
}

/// Moments in the variable's own precision (as candle-nn keeps them).
#[derive(Debug)]
enum Moments {
    F64(Adam<f64>),
    F32(Adam<f32>),
}

impl VarAdam {
    /// Zero moments for `vars`, learning rate `lr`.
    ///
    /// # Errors
    /// [`BridgeError::InvalidLearningRate`] unless `lr` is finite and positive;
    /// [`BridgeError::UnsupportedDType`] for a variable that is neither `f32` nor `f64`.
    pub fn new(vars: Vec<Var>, lr: f64) -> Result<Self, BridgeError> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(BridgeError::InvalidLearningRate(lr));
        }
        let slots = vars
            .into_iter()
            .map(|v| {
                let n = v.elem_count();
                let m = match v.dtype() {
                    DType::F64 => Moments::F64(Adam::new(n)),
                    DType::F32 => Moments::F32(Adam::new(n)),
                    dtype => return Err(BridgeError::UnsupportedDType { what: "VarAdam", dtype }),
                };
                Ok((v, m))
            })
            .collect::<Result<Vec<_>, BridgeError>>()?;
        Ok(Self { slots, lr, scratch64: Vec::new(), scratch32: Vec::new() })
    }

    /// The learning rate.
    #[must_use]
    pub fn learning_rate(&self) -> f64 {
        self.lr
    }

    /// One step on the gradients in `grads` (variables without a gradient are left alone).
    ///
    /// # Errors
    /// [`BridgeError::Shape`] when a gradient's size differs from its variable's; candle errors
    /// (a variable or gradient that is not on the CPU).
    pub fn step(&mut self, grads: &GradStore) -> Result<(), BridgeError> {
        let Self { slots, lr, scratch64, scratch32 } = self;
        for (var, moments) in slots.iter_mut() {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let n = var.elem_count();
            if g.elem_count() != n {
                return Err(BridgeError::Shape(format!(
                    "gradient of a variable of shape {:?} has shape {:?}",
                    var.dims(),
                    g.dims()
                )));
            }
            let g = if g.is_contiguous() { g.clone() } else { g.contiguous()? };
            let (storage, layout) = g.storage_and_layout();
            let (start, end) = layout.contiguous_offsets().unwrap_or((0, n));
            match (moments, &*storage) {
                (Moments::F64(adam), Storage::Cpu(CpuStorage::F64(gv))) => {
                    var.as_tensor().inplace_op1(&AdamInPlace::new(adam, &gv[start..end], *lr))?;
                }
                (Moments::F32(adam), Storage::Cpu(CpuStorage::F32(gv))) => {
                    var.as_tensor().inplace_op1(&AdamInPlace::new(adam, &gv[start..end], *lr))?;
                }
                (Moments::F64(adam), Storage::Cpu(CpuStorage::F32(gv))) => {
                    scratch64.clear();
                    scratch64.extend(gv[start..end].iter().map(|x| f64::from(*x)));
                    var.as_tensor().inplace_op1(&AdamInPlace::new(adam, scratch64, *lr))?;
                }
                (Moments::F32(adam), Storage::Cpu(CpuStorage::F64(gv))) => {
                    scratch32.clear();
                    // Rounding the gradient to the variable's precision is the intent.
                    #[allow(clippy::cast_possible_truncation)]
                    scratch32.extend(gv[start..end].iter().map(|x| *x as f32));
                    var.as_tensor().inplace_op1(&AdamInPlace::new(adam, scratch32, *lr))?;
                }
                _ => return Err(BridgeError::UnsupportedDType { what: "VarAdam gradient", dtype: g.dtype() }),
            }
        }
        Ok(())
    }
}

/// Element types a variable can be updated in, with their candle storage.
trait Element: AdamScalar {
    fn slice_mut(storage: &mut CpuStorage) -> Option<&mut [Self]>;
}

impl Element for f64 {
    fn slice_mut(storage: &mut CpuStorage) -> Option<&mut [Self]> {
        match storage {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
}

impl Element for f32 {
    fn slice_mut(storage: &mut CpuStorage) -> Option<&mut [Self]> {
        match storage {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
}

/// The in-place update of one variable along `grad` (its gradient, in the variable's type).
struct AdamInPlace<'a, T> {
    adam: RefCell<&'a mut Adam<T>>,
    grad: &'a [T],
    lr: f64,
}

impl<'a, T> AdamInPlace<'a, T> {
    fn new(adam: &'a mut Adam<T>, grad: &'a [T], lr: f64) -> Self {
        Self { adam: RefCell::new(adam), grad, lr }
    }
}

impl<T: Element> InplaceOp1 for AdamInPlace<'_, T> {
    fn name(&self) -> &'static str {
        "beamlab-var-adam"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("VarAdam: a variable must be contiguous".into()))?;
        let v = T::slice_mut(dst).ok_or_else(|| candle_core::Error::Msg("VarAdam: variable type changed".into()))?;
        self.adam
            .borrow_mut()
            .step(&mut v[start..end], self.grad, self.lr)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::{Rng, SeedableRng};

    fn vars(dtype: DType, seed: u64) -> Vec<Var> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        [(3, 4), (1, 4), (4, 2)]
            .into_iter()
            .map(|(r, c)| {
                let v: Vec<f64> = (0..r * c).map(|_| rng.random_range(-1.0..1.0)).collect();
                Var::from_tensor(&Tensor::from_vec(v, (r, c), &Device::Cpu).unwrap().to_dtype(dtype).unwrap()).unwrap()
            })
            .collect()
    }

    /// A small non-quadratic loss of all three variables: Σ tanh(x W₁ + b) W₂ squared.
    fn loss(v: &[Var], x: &Tensor) -> Tensor {
        let h = x.matmul(v[0].as_tensor()).unwrap().broadcast_add(v[1].as_tensor()).unwrap().tanh().unwrap();
        h.matmul(v[2].as_tensor()).unwrap().sqr().unwrap().sum_all().unwrap()
    }

    fn values(v: &[Var]) -> Vec<f64> {
        v.iter()
            .flat_map(|v| v.as_tensor().to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap())
            .collect()
    }

    #[test]
    fn f64_steps_equal_candle_adamw_to_the_last_bit() {
        let (a, b) = (vars(DType::F64, 1), vars(DType::F64, 1));
        let x = Tensor::from_vec((0..15).map(|i| (i as f64 * 0.37).sin()).collect::<Vec<_>>(), (5, 3), &Device::Cpu)
            .unwrap();
        let mut ours = VarAdam::new(a.clone(), 0.03).unwrap();
        let mut theirs =
            AdamW::new(b.clone(), ParamsAdamW { lr: 0.03, weight_decay: 0.0, ..ParamsAdamW::default() }).unwrap();
        for _ in 0..25 {
            ours.step(&loss(&a, &x).backward().unwrap()).unwrap();
            theirs.step(&loss(&b, &x).backward().unwrap()).unwrap();
        }
        assert_ne!(values(&a), values(&vars(DType::F64, 1)), "nothing moved");
        assert_eq!(values(&a), values(&b));
    }

    #[test]
    fn f32_steps_equal_candle_adamw_to_the_last_bit() {
        let (a, b) = (vars(DType::F32, 4), vars(DType::F32, 4));
        let x = Tensor::from_vec((0..15).map(|i| (i as f32 * 0.23).sin()).collect::<Vec<_>>(), (5, 3), &Device::Cpu)
            .unwrap();
        let mut ours = VarAdam::new(a.clone(), 0.02).unwrap();
        let mut theirs =
            AdamW::new(b.clone(), ParamsAdamW { lr: 0.02, weight_decay: 0.0, ..ParamsAdamW::default() }).unwrap();
        for _ in 0..25 {
            ours.step(&loss(&a, &x).backward().unwrap()).unwrap();
            theirs.step(&loss(&b, &x).backward().unwrap()).unwrap();
        }
        assert_ne!(values(&a), values(&vars(DType::F32, 4)), "nothing moved");
        assert_eq!(values(&a), values(&b));
    }

    #[test]
    fn f32_steps_follow_the_f64_steps() {
        let (a, b) = (vars(DType::F32, 2), vars(DType::F64, 2));
        let x64 = Tensor::from_vec((0..15).map(|i| (i as f64 * 0.61).cos()).collect::<Vec<_>>(), (5, 3), &Device::Cpu)
            .unwrap();
        let x32 = x64.to_dtype(DType::F32).unwrap();
        let mut oa = VarAdam::new(a.clone(), 0.01).unwrap();
        let mut ob = VarAdam::new(b.clone(), 0.01).unwrap();
        for _ in 0..10 {
            oa.step(&loss(&a, &x32).backward().unwrap()).unwrap();
            ob.step(&loss(&b, &x64).backward().unwrap()).unwrap();
        }
        let (va, vb) = (values(&a), values(&b));
        let worst = va.iter().zip(&vb).map(|(p, q)| (p - q).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-4, "f32 vs f64 trajectories differ by {worst}");
        assert!(va.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn missing_gradients_and_bad_inputs() {
        let v = vars(DType::F64, 3);
        let before = values(&v);
        let mut opt = VarAdam::new(v.clone(), 0.1).unwrap();
        // Only the first variable is in the graph: the others stay put.
        let g = v[0].as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
        opt.step(&g).unwrap();
        let after = values(&v);
        assert_ne!(before[..12], after[..12]);
        assert_eq!(before[12..], after[12..]);
        assert_eq!(opt.learning_rate(), 0.1);
        assert!(matches!(VarAdam::new(vec![], 0.0), Err(BridgeError::InvalidLearningRate(_))));
        assert!(VarAdam::new(vec![], f64::NAN).is_err());
        let ints = Var::from_tensor(&Tensor::new(&[1u32, 2], &Device::Cpu).unwrap()).unwrap();
        assert!(matches!(VarAdam::new(vec![ints], 0.1), Err(BridgeError::UnsupportedDType { .. })));
    }
}
