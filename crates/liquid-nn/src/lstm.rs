//! A standard long short-term memory cell (Hochreiter & Schmidhuber 1997), as a discrete-time
//! baseline for the liquid cells.
//!
//! PyTorch's `LSTMCell` with the gate order `i, f, g, o`: for input `x: [batch, n_in]` and state
//! `(h, c)`, each `[batch, H]`,
//!
//! ```text
//! a  = x W_ihᵀ + b_ih + h W_hhᵀ + b_hh      W_ih: [4H, n_in], W_hh: [4H, H], b_ih, b_hh: [4H]
//! [a_i | a_f | a_g | a_o] = a                (four blocks of width H, in this order)
//! i = σ(a_i),  f = σ(a_f),  g = tanh(a_g),  o = σ(a_o)
//! c′ = f ⊙ c + i ⊙ g
//! h′ = o ⊙ tanh(c′)
//! ```
//!
//! As a [`RecurrentCell`] the state is packed as `[h | c]: [batch, 2H]` and the output is `h′`.
//! The LSTM has no notion of elapsed time: the `t` argument of [`Lstm::step`] is ignored.
//!
//! Initialisation (PyTorch's): every weight and bias `U(−1/√H, 1/√H)`.
//!
//! The step is composed from basic candle ops with verified backward (matmul, broadcast add,
//! narrow, cat, sigmoid, tanh, products), one matmul per weight matrix.

use beamlab_candle_bridge::candle_core::{DType, Tensor};
use beamlab_candle_bridge::candle_nn::{self, Init, VarBuilder};

use crate::LiquidError;
use crate::sequence::{RecurrentCell, check_step_shapes};

/// A standard LSTM cell (see the module docs for the equations).
///
/// Cloning is cheap and shares the variables (the clone trains the same parameters).
#[derive(Clone, Debug)]
pub struct Lstm {
    n_inputs: usize,
    hidden: usize,
    /// `W_ih: [4H, n_inputs]`, `W_hh: [4H, H]`, `b_ih, b_hh: [4H]`.
    w: GateWeights,
}

/// The input and recurrent weights of a gated RNN cell in PyTorch's layout and names, shared by
/// the LSTM (4 gates) and the GRU (3 gates): `weight_ih: [G·H, n_inputs]`, `weight_hh: [G·H, H]`,
/// `bias_ih`, `bias_hh: [G·H]`, all initialised `U(−1/√H, 1/√H)` (PyTorch's default); existing
/// variables of the right shape are reused (a loaded model).
#[derive(Clone, Debug)]
pub(crate) struct GateWeights {
    pub(crate) w_ih: Tensor,
    pub(crate) w_hh: Tensor,
    pub(crate) b_ih: Tensor,
    pub(crate) b_hh: Tensor,
}

impl GateWeights {
    /// Builds (or loads) the weights of `cell` with `n_gates` gates under `vb` (`F64`).
    pub(crate) fn new(
        cell: &str,
        n_gates: usize,
        n_inputs: usize,
        hidden: usize,
        vb: &VarBuilder,
    ) -> Result<Self, LiquidError> {
        if n_inputs == 0 || hidden == 0 {
            return Err(LiquidError::InvalidParameter(format!(
                "{cell} needs n_inputs >= 1 and hidden >= 1, got {n_inputs} and {hidden}"
            )));
        }
        if vb.dtype() != DType::F64 {
            return Err(LiquidError::InvalidParameter(format!("{cell} needs an F64 VarBuilder, got {:?}", vb.dtype())));
        }
        let bound = 1.0 / (hidden as f64).sqrt();
        let init = Init::Uniform { lo: -bound, up: bound };
        let g = n_gates * hidden;
        Ok(Self {
            w_ih: vb.get_with_hints((g, n_inputs), "weight_ih", init)?,
            w_hh: vb.get_with_hints((g, hidden), "weight_hh", init)?,
            b_ih: vb.get_with_hints(g, "bias_ih", init)?,
            b_hh: vb.get_with_hints(g, "bias_hh", init)?,
        })
    }

    /// Gate pre-activations of the input part, `x W_ihᵀ + b_ih`, and of the recurrent part,
    /// `h W_hhᵀ + b_hh` (`[batch, G·H]` each).
    pub(crate) fn pre_activations(&self, x: &Tensor, h: &Tensor) -> Result<(Tensor, Tensor), LiquidError> {
        let a = x.matmul(&self.w_ih.t()?)?.broadcast_add(&self.b_ih)?;
        let c = h.matmul(&self.w_hh.t()?)?.broadcast_add(&self.b_hh)?;
        Ok((a, c))
    }
}

impl Lstm {
    /// Builds the cell's variables under `vb` (which must be `F64`), with PyTorch's names and
    /// shapes: `weight_ih: [4H, n_inputs]`, `weight_hh: [4H, H]`, `bias_ih: [4H]`,
    /// `bias_hh: [4H]` (rows in the gate order `i, f, g, o`), all initialised `U(−1/√H, 1/√H)`.
    /// Existing variables of the right shape are reused (a loaded model).
    ///
    /// # Errors
    /// [`LiquidError::InvalidParameter`] for zero sizes or a non-`F64` builder; candle errors
    /// (e.g. an existing variable of another shape).
    pub fn new(n_inputs: usize, hidden: usize, vb: VarBuilder) -> Result<Self, LiquidError> {
        Ok(Self { n_inputs, hidden, w: GateWeights::new("Lstm", 4, n_inputs, hidden, &vb)? })
    }

    /// One step: `input: [batch, n_inputs]`, `state = [h | c]: [batch, 2H]` →
    /// `(h′: [batch, H], [h′ | c′]: [batch, 2H])`. `t` is ignored (discrete-time cell).
    ///
    /// # Errors
    /// [`LiquidError::Shape`] on wrong shapes or dtypes; candle errors.
    pub fn step(&self, input: &Tensor, state: &Tensor, _t: f64) -> Result<(Tensor, Tensor), LiquidError> {
        let n = self.hidden;
        check_step_shapes(input, state, self.n_inputs, 2 * n)?;
        let h = state.narrow(1, 0, n)?;
        let c = state.narrow(1, n, n)?;
        let (from_input, from_state) = self.w.pre_activations(input, &h)?;
        let pre = from_input.add(&from_state)?;
        let i = candle_nn::ops::sigmoid(&pre.narrow(1, 0, n)?)?;
        let f = candle_nn::ops::sigmoid(&pre.narrow(1, n, n)?)?;
        let g = pre.narrow(1, 2 * n, n)?.tanh()?;
        let o = candle_nn::ops::sigmoid(&pre.narrow(1, 3 * n, n)?)?;
        let c_new = ((&f * &c)? + (&i * &g)?)?;
        let h_new = (&o * c_new.tanh()?)?;
        let new_state = Tensor::cat(&[&h_new, &c_new], 1)?;
        Ok((h_new, new_state))
    }

    /// The input width.
    #[must_use]
    pub fn n_inputs(&self) -> usize {
        self.n_inputs
    }

    /// The hidden size `H`.
    #[must_use]
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// The state size `2H` (`[h | c]`).
    #[must_use]
    pub fn state_size(&self) -> usize {
        2 * self.hidden
    }

    /// The output size `H`.
    #[must_use]
    pub fn output_size(&self) -> usize {
        self.hidden
    }

    /// Trainable scalars: `4H (n_inputs + H + 2)`.
    #[must_use]
    pub fn n_parameters(&self) -> usize {
        4 * self.hidden * (self.n_inputs + self.hidden + 2)
    }
}

impl RecurrentCell for Lstm {
    fn step(&self, input: &Tensor, state: &Tensor, t: f64) -> Result<(Tensor, Tensor), LiquidError> {
        Lstm::step(self, input, state, t)
    }

    fn state_size(&self) -> usize {
        2 * self.hidden
    }

    fn output_size(&self) -> usize {
        self.hidden
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::SequenceRunner;
    use crate::test_util::{check_gradients, set_var, var_values};
    use beamlab_candle_bridge::candle_core::Device;
    use beamlab_candle_bridge::candle_nn::VarMap;
    use beamlab_candle_bridge::seeded_var_builder;

    fn build(n_inputs: usize, hidden: usize, seed: u64) -> (VarMap, Lstm) {
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, seed, DType::F64, &Device::Cpu);
        let cell = Lstm::new(n_inputs, hidden, vb).unwrap();
        (vm, cell)
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn variables_shapes_and_init() {
        let (vm, cell) = build(3, 5, 4);
        assert_eq!((cell.n_inputs(), cell.hidden(), cell.state_size(), cell.output_size()), (3, 5, 10, 5));
        assert_eq!(cell.n_parameters(), 4 * 5 * (3 + 5 + 2));
        let stored: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(stored, cell.n_parameters());
        let bound = 1.0 / 5f64.sqrt();
        for (name, len) in [("weight_ih", 60), ("weight_hh", 100), ("bias_ih", 20), ("bias_hh", 20)] {
            let v = var_values(&vm, name);
            assert_eq!(v.len(), len, "{name}");
            assert!(v.iter().all(|x| x.abs() <= bound), "{name} outside U(±1/√H)");
            // Not a constant fill.
            assert!(v.iter().any(|x| (x - v[0]).abs() > 1e-6), "{name} is constant");
        }
        // Bad arguments are typed errors.
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, 0, DType::F64, &Device::Cpu);
        assert!(matches!(Lstm::new(0, 2, vb.clone()), Err(LiquidError::InvalidParameter(_))));
        assert!(matches!(Lstm::new(2, 0, vb), Err(LiquidError::InvalidParameter(_))));
        let vb32 = seeded_var_builder(&vm, 0, DType::F32, &Device::Cpu);
        assert!(matches!(Lstm::new(2, 2, vb32), Err(LiquidError::InvalidParameter(_))));
    }

    /// `I = 1`, `H = 2`, all weights set by hand; the step evaluated in plain f64.
    #[test]
    fn hand_computed_step() {
        let (vm, cell) = build(1, 2, 1);
        // Rows in gate order i, f, g, o (two rows each).
        let w_ih = [[0.3], [-0.2], [0.5], [0.1], [-0.7], [0.4], [0.2], [-0.6]];
        let w_hh =
            [[0.1, -0.3], [0.2, 0.4], [-0.5, 0.6], [0.3, 0.1], [0.7, -0.2], [-0.4, 0.5], [0.6, 0.3], [-0.1, -0.8]];
        let b_ih = [0.05, -0.1, 0.2, 0.3, -0.25, 0.15, 0.0, 0.1];
        let b_hh = [-0.05, 0.2, 0.1, -0.3, 0.35, 0.05, -0.2, 0.4];
        set_var(&vm, "weight_ih", &Tensor::new(&w_ih, &Device::Cpu).unwrap());
        set_var(&vm, "weight_hh", &Tensor::new(&w_hh, &Device::Cpu).unwrap());
        set_var(&vm, "bias_ih", &Tensor::new(&b_ih, &Device::Cpu).unwrap());
        set_var(&vm, "bias_hh", &Tensor::new(&b_hh, &Device::Cpu).unwrap());
        let x = 0.8;
        let (h, c) = ([0.25, -0.4], [0.6, -0.3]);
        let a = |r: usize| w_ih[r][0] * x + b_ih[r] + w_hh[r][0] * h[0] + w_hh[r][1] * h[1] + b_hh[r];
        let mut h_new = [0.0; 2];
        let mut c_new = [0.0; 2];
        for j in 0..2 {
            let i = sigmoid(a(j));
            let f = sigmoid(a(2 + j));
            let g = a(4 + j).tanh();
            let o = sigmoid(a(6 + j));
            c_new[j] = f * c[j] + i * g;
            h_new[j] = o * c_new[j].tanh();
        }
        let input = Tensor::new(&[[x]], &Device::Cpu).unwrap();
        let state = Tensor::new(&[[h[0], h[1], c[0], c[1]]], &Device::Cpu).unwrap();
        let (out, new) = RecurrentCell::step(&cell, &input, &state, 123.0).unwrap();
        let out: Vec<Vec<f64>> = out.to_vec2().unwrap();
        let new: Vec<Vec<f64>> = new.to_vec2().unwrap();
        let expect_state = [h_new[0], h_new[1], c_new[0], c_new[1]];
        assert_eq!(new[0].len(), 4);
        for k in 0..4 {
            assert!((new[0][k] - expect_state[k]).abs() < 1e-12, "state {k}: {} vs {}", new[0][k], expect_state[k]);
        }
        for j in 0..2 {
            assert!((out[0][j] - h_new[j]).abs() < 1e-12, "out {j}: {} vs {}", out[0][j], h_new[j]);
        }
        // `t` is ignored.
        let (out2, _) = cell.step(&input, &state, 0.0).unwrap();
        assert_eq!(out2.to_vec2::<f64>().unwrap(), out);
        // A batch of two rows: each row is the same step independently.
        let inputs = Tensor::new(&[[x], [-0.3]], &Device::Cpu).unwrap();
        let states = Tensor::new(&[[h[0], h[1], c[0], c[1]], [0.1, 0.2, -0.5, 0.9]], &Device::Cpu).unwrap();
        let (_, batch) = cell.step(&inputs, &states, 1.0).unwrap();
        let (_, row1) = cell.step(&inputs.narrow(0, 1, 1).unwrap(), &states.narrow(0, 1, 1).unwrap(), 1.0).unwrap();
        assert!(
            max_diff(&batch.narrow(0, 0, 1).unwrap(), &Tensor::new(&[expect_state], &Device::Cpu).unwrap()) < 1e-12
        );
        assert!(max_diff(&batch.narrow(0, 1, 1).unwrap(), &row1) < 1e-15);
    }

    #[test]
    fn bad_shapes_are_typed_errors() {
        let (_, cell) = build(3, 2, 2);
        let input = Tensor::zeros((2, 3), DType::F64, &Device::Cpu).unwrap();
        let state = Tensor::zeros((2, 4), DType::F64, &Device::Cpu).unwrap();
        assert!(cell.step(&input, &state, 1.0).is_ok());
        // State of width H instead of 2H.
        let half = Tensor::zeros((2, 2), DType::F64, &Device::Cpu).unwrap();
        assert!(matches!(cell.step(&input, &half, 1.0), Err(LiquidError::Shape(_))));
        // Wrong input width, batch mismatch, rank 1, F32.
        let wide = Tensor::zeros((2, 4), DType::F64, &Device::Cpu).unwrap();
        assert!(matches!(cell.step(&wide, &state, 1.0), Err(LiquidError::Shape(_))));
        let one_row = Tensor::zeros((1, 4), DType::F64, &Device::Cpu).unwrap();
        assert!(matches!(cell.step(&input, &one_row, 1.0), Err(LiquidError::Shape(_))));
        let flat = Tensor::zeros(3, DType::F64, &Device::Cpu).unwrap();
        assert!(matches!(cell.step(&flat, &state, 1.0), Err(LiquidError::Shape(_))));
        let f32_in = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        assert!(matches!(cell.step(&f32_in, &state, 1.0), Err(LiquidError::Shape(_))));
        // Through the runner: wrong sequence width, and a state of the wrong size.
        let mut runner = SequenceRunner::new(cell).unwrap();
        assert!(matches!(
            runner.run(&Tensor::ones((2, 4), DType::F64, &Device::Cpu).unwrap(), 1.0),
            Err(LiquidError::Shape(_))
        ));
        assert!(matches!(
            runner.set_state(&Tensor::ones((1, 2), DType::F64, &Device::Cpu).unwrap()),
            Err(LiquidError::Shape(_))
        ));
    }

    /// One 2-row call equals two 1-row calls; the carried state is `[h | c]`, detached.
    #[test]
    fn runner_carries_state_across_calls() {
        let (_, cell) = build(3, 4, 6);
        let seq = Tensor::new(&[[0.5, -1.0, 0.3], [0.9, 0.2, -0.4]], &Device::Cpu).unwrap();
        let mut one = SequenceRunner::new(cell.clone()).unwrap();
        let all = one.run(&seq, 1.0).unwrap();
        let mut two = SequenceRunner::new(cell.clone()).unwrap();
        let a = two.run(&seq.narrow(0, 0, 1).unwrap(), 1.0).unwrap();
        let b = two.run(&seq.narrow(0, 1, 1).unwrap(), 1.0).unwrap();
        let split = Tensor::cat(&[a, b], 0).unwrap();
        assert_eq!(all.dims(), &[2, 4]);
        assert_eq!(one.state().dims(), &[1, 8]);
        assert!(max_diff(&all, &split) < 1e-14);
        assert!(max_diff(one.state(), two.state()) < 1e-14);
        // The state really carries: a fresh runner on the second row alone differs.
        let mut fresh = SequenceRunner::new(cell.clone()).unwrap();
        let b_fresh = fresh.run(&seq.narrow(0, 1, 1).unwrap(), 1.0).unwrap();
        assert!(max_diff(&b_fresh, &all.narrow(0, 1, 1).unwrap()) > 1e-6);
        // The output is the h half of the state; the c half is non-zero too.
        assert!(max_diff(&all.narrow(0, 1, 1).unwrap(), &one.state().narrow(1, 0, 4).unwrap()) < 1e-15);
        let zeros = Tensor::zeros((1, 4), DType::F64, &Device::Cpu).unwrap();
        assert!(max_diff(&one.state().narrow(1, 4, 4).unwrap(), &zeros) > 0.0);
        assert!(!one.state().track_op());
    }

    /// Gradients of `Σ out²` over a 3-step sequence through [`SequenceRunner`] (from a non-zero
    /// initial `[h | c]`) against central differences.
    #[test]
    fn gradients_match_finite_differences() {
        let (vm, cell) = build(3, 4, 3);
        let xs = Tensor::new(&[[0.5, -1.0, 0.7], [0.2, 0.4, -0.3], [-0.6, 0.1, 0.9]], &Device::Cpu).unwrap();
        let s0 = Tensor::new(&[[0.1, -0.2, 0.3, 0.05, 0.4, -0.1, 0.2, -0.3]], &Device::Cpu).unwrap();
        let loss = || -> Tensor {
            let mut runner = SequenceRunner::new(cell.clone()).unwrap();
            runner.set_state(&s0).unwrap();
            let out = runner.run(&xs, 1.0).unwrap();
            assert_eq!(out.dims(), &[3, 4]);
            out.sqr().unwrap().sum_all().unwrap()
        };
        check_gradients(&vm, &["weight_ih", "weight_hh", "bias_ih", "bias_hh"], &loss, 1e-5);
    }
}
