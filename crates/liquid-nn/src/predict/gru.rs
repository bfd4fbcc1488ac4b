//! A gated recurrent unit cell (Cho et al. 2014), PyTorch's `GRUCell`, as a discrete-time baseline.
//!
//! For input `x: [batch, n_in]` and state `h: [batch, H]`, with the gate order `r, z, n`,
//!
//! ```text
//! [a_r | a_z | a_n] = x W_ihᵀ + b_ih         W_ih: [3H, n_in], b_ih: [3H]
//! [c_r | c_z | c_n] = h W_hhᵀ + b_hh         W_hh: [3H, H],    b_hh: [3H]
//! r = σ(a_r + c_r),  z = σ(a_z + c_z),  n = tanh(a_n + r ⊙ c_n)
//! h′ = (1 − z) ⊙ n + z ⊙ h
//! ```
//!
//! The state is `h` and the output is `h′`; the elapsed time `t` is ignored. Initialisation
//! (PyTorch's): every weight and bias `U(−1/√H, 1/√H)`.

use beamlab_candle_bridge::candle_core::Tensor;
use beamlab_candle_bridge::candle_nn::{self, VarBuilder};

use crate::LiquidError;
use crate::lstm::GateWeights;
use crate::sequence::{RecurrentCell, check_step_shapes};

/// A GRU cell (see the module docs for the equations).
#[derive(Clone, Debug)]
pub struct Gru {
    n_inputs: usize,
    hidden: usize,
    w: GateWeights,
}

impl Gru {
    /// Builds the variables under `vb` (`F64`) with PyTorch's names and shapes: `weight_ih:
    /// [3H, n_inputs]`, `weight_hh: [3H, H]`, `bias_ih`, `bias_hh: [3H]`.
    ///
    /// # Errors
    /// [`LiquidError::InvalidParameter`] for zero sizes or a non-`F64` builder; candle errors.
    pub fn new(n_inputs: usize, hidden: usize, vb: VarBuilder) -> Result<Self, LiquidError> {
        Ok(Self { n_inputs, hidden, w: GateWeights::new("Gru", 3, n_inputs, hidden, &vb)? })
    }

    /// One step: `input: [batch, n_inputs]`, `state: [batch, H]` → `(h′, h′)`.
    ///
    /// # Errors
    /// [`LiquidError::Shape`] on wrong shapes or dtypes; candle errors.
    pub fn step(&self, input: &Tensor, state: &Tensor, _t: f64) -> Result<(Tensor, Tensor), LiquidError> {
        let n = self.hidden;
        check_step_shapes(input, state, self.n_inputs, n)?;
        let (a, c) = self.w.pre_activations(input, state)?;
        let r = candle_nn::ops::sigmoid(&(a.narrow(1, 0, n)? + c.narrow(1, 0, n)?)?)?;
        let z = candle_nn::ops::sigmoid(&(a.narrow(1, n, n)? + c.narrow(1, n, n)?)?)?;
        let cand = (a.narrow(1, 2 * n, n)? + (&r * c.narrow(1, 2 * n, n)?)?)?.tanh()?;
        // h′ = n + z ⊙ (h − n).
        let h_new = (&cand + (&z * (state - &cand)?)?)?;
        Ok((h_new.clone(), h_new))
    }

    /// Trainable scalars: `3H (n_inputs + H + 2)`.
    #[must_use]
    pub fn n_parameters(&self) -> usize {
        3 * self.hidden * (self.n_inputs + self.hidden + 2)
    }
}

impl RecurrentCell for Gru {
    fn step(&self, input: &Tensor, state: &Tensor, t: f64) -> Result<(Tensor, Tensor), LiquidError> {
        Gru::step(self, input, state, t)
    }

    fn state_size(&self) -> usize {
        self.hidden
    }

    fn output_size(&self) -> usize {
        self.hidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beamlab_candle_bridge::candle_core::{DType, Device};
    use beamlab_candle_bridge::candle_nn::VarMap;
    use beamlab_candle_bridge::seeded_var_builder;

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn step_matches_scalar_reference() {
        let vm = VarMap::new();
        let gru = Gru::new(3, 2, seeded_var_builder(&vm, 4, DType::F64, &Device::Cpu)).unwrap();
        assert_eq!(gru.n_parameters(), vm.all_vars().iter().map(|v| v.elem_count()).sum::<usize>());
        let x = [[0.3, -0.7, 1.1], [-0.2, 0.5, 0.0]];
        let h = [[0.1, -0.4], [0.6, 0.2]];
        let (out, state) =
            gru.step(&Tensor::new(&x, &Device::Cpu).unwrap(), &Tensor::new(&h, &Device::Cpu).unwrap(), 1.0).unwrap();
        let w_ih: Vec<Vec<f64>> = gru.w.w_ih.to_vec2().unwrap();
        let w_hh: Vec<Vec<f64>> = gru.w.w_hh.to_vec2().unwrap();
        let b_ih: Vec<f64> = gru.w.b_ih.to_vec1().unwrap();
        let b_hh: Vec<f64> = gru.w.b_hh.to_vec1().unwrap();
        let got: Vec<Vec<f64>> = out.to_vec2().unwrap();
        assert_eq!(got, state.to_vec2::<f64>().unwrap());
        for b in 0..2 {
            for j in 0..2 {
                let pre_i = |g: usize| b_ih[g] + (0..3).map(|k| w_ih[g][k] * x[b][k]).sum::<f64>();
                let pre_h = |g: usize| b_hh[g] + (0..2).map(|k| w_hh[g][k] * h[b][k]).sum::<f64>();
                let r = sigmoid(pre_i(j) + pre_h(j));
                let z = sigmoid(pre_i(2 + j) + pre_h(2 + j));
                let n = (pre_i(4 + j) + r * pre_h(4 + j)).tanh();
                let expect = (1.0 - z) * n + z * h[b][j];
                assert!((got[b][j] - expect).abs() < 1e-14);
            }
        }
        assert!(matches!(
            gru.step(
                &Tensor::ones((1, 2), DType::F64, &Device::Cpu).unwrap(),
                &Tensor::ones((1, 2), DType::F64, &Device::Cpu).unwrap(),
                1.0
            ),
            Err(LiquidError::Shape(_))
        ));
        assert!(Gru::new(0, 2, seeded_var_builder(&vm, 4, DType::F64, &Device::Cpu)).is_err());
    }
}
