//! Running a recurrent cell over a sequence with a carried state.
//!
//! [`RecurrentCell`] is the one-step interface both cells implement; a [`SequenceRunner`] feeds a
//! sequence `[T, n_inputs]` to it one row per time step (batch 1), as the GLNN reference feeds the
//! `N` rows of its gradient matrix, and carries the state `[1, units]` across calls.

use beamlab_candle_bridge::candle_core::{DType, Device, Tensor};

use crate::LiquidError;

/// A recurrent cell advanced one step at a time.
pub trait RecurrentCell {
    /// One step of elapsed time `t`: `input: [batch, n_inputs]`, `state: [batch, state_size]` →
    /// `(output: [batch, output_size], new state: [batch, state_size])`.
    ///
    /// # Errors
    /// Wrong shapes, a bad `t`, candle errors.
    fn step(&self, input: &Tensor, state: &Tensor, t: f64) -> Result<(Tensor, Tensor), LiquidError>;

    /// Runs `seq: [T, n_inputs]` (batch 1) from `state: [1, state_size]`, elapsed time `t` per
    /// step: `(outputs [T, output_size], final state [1, state_size])`. The default calls
    /// [`step`](Self::step) once per row; a cell may override it with a faster equivalent.
    ///
    /// # Errors
    /// Wrong shapes, a bad `t`, candle errors.
    fn run_sequence(&self, seq: &Tensor, state: &Tensor, t: f64) -> Result<(Tensor, Tensor), LiquidError> {
        let n_steps = seq.dim(0)?;
        let mut state = state.clone();
        let mut outputs = Vec::with_capacity(n_steps);
        for k in 0..n_steps {
            let (out, next) = self.step(&seq.narrow(0, k, 1)?, &state, t)?;
            outputs.push(out);
            state = next;
        }
        Ok((Tensor::cat(&outputs, 0)?, state))
    }

    /// The state size.
    fn state_size(&self) -> usize;

    /// The output size.
    fn output_size(&self) -> usize;
}

/// A boxed cell is a cell (so that a model can choose its cell at run time).
impl RecurrentCell for Box<dyn RecurrentCell + Send + Sync> {
    fn step(&self, input: &Tensor, state: &Tensor, t: f64) -> Result<(Tensor, Tensor), LiquidError> {
        self.as_ref().step(input, state, t)
    }

    fn run_sequence(&self, seq: &Tensor, state: &Tensor, t: f64) -> Result<(Tensor, Tensor), LiquidError> {
        self.as_ref().run_sequence(seq, state, t)
    }

    fn state_size(&self) -> usize {
        self.as_ref().state_size()
    }

    fn output_size(&self) -> usize {
        self.as_ref().output_size()
    }
}

/// Checks `input: [batch, n_inputs]` and `state: [batch, units]`.
pub(crate) fn check_step_shapes(
    input: &Tensor,
    state: &Tensor,
    n_inputs: usize,
    units: usize,
) -> Result<(), LiquidError> {
    let (i, s) = (input.dims(), state.dims());
    if i.len() != 2 || i[1] != n_inputs {
        return Err(LiquidError::Shape(format!("input is {i:?}, expected [batch, {n_inputs}]")));
    }
    if s != [i[0], units] {
        return Err(LiquidError::Shape(format!("state is {s:?}, expected [{}, {units}]", i[0])));
    }
    if input.dtype() != DType::F64 || state.dtype() != DType::F64 {
        return Err(LiquidError::Shape(format!(
            "input and state must be F64, got {:?} / {:?}",
            input.dtype(),
            state.dtype()
        )));
    }
    Ok(())
}

/// A cell plus its carried state `[1, state_size]` (zeros initially).
///
/// [`run`](Self::run) keeps the autograd graph of the outputs (so a loss on them trains the cell)
/// but stores the final state **detached**: gradients never flow into an earlier call (truncated
/// back-propagation at call boundaries, as the GLNN reference does).
#[derive(Debug)]
pub struct SequenceRunner<C: RecurrentCell> {
    cell: C,
    state: Tensor,
}

impl<C: RecurrentCell> SequenceRunner<C> {
    /// A runner with a zero state.
    ///
    /// # Errors
    /// candle errors.
    pub fn new(cell: C) -> Result<Self, LiquidError> {
        let state = Tensor::zeros((1, cell.state_size()), DType::F64, &Device::Cpu)?;
        Ok(Self { cell, state })
    }

    /// Feeds `seq: [T, n_inputs]` row by row with elapsed time `t` per step and returns the outputs
    /// `[T, output_size]` (graph kept); the final state is stored detached.
    ///
    /// # Errors
    /// [`LiquidError::Shape`] unless `seq` is a non-empty matrix of the cell's input width; the
    /// cell's errors. On error the carried state is unchanged.
    pub fn run(&mut self, seq: &Tensor, t: f64) -> Result<Tensor, LiquidError> {
        let dims = seq.dims();
        if dims.len() != 2 || dims[0] == 0 {
            return Err(LiquidError::Shape(format!("sequence is {dims:?}, expected [T >= 1, n_inputs]")));
        }
        let (outputs, state) = self.cell.run_sequence(seq, &self.state, t)?;
        self.state = state.detach();
        Ok(outputs)
    }

    /// Sets the carried state back to zeros.
    ///
    /// # Errors
    /// candle errors.
    pub fn reset(&mut self) -> Result<(), LiquidError> {
        self.state = Tensor::zeros((1, self.cell.state_size()), DType::F64, &Device::Cpu)?;
        Ok(())
    }

    /// The carried state `[1, state_size]`.
    #[must_use]
    pub fn state(&self) -> &Tensor {
        &self.state
    }

    /// Replaces the carried state (stored detached).
    ///
    /// # Errors
    /// [`LiquidError::Shape`] unless `state` is `[1, state_size]` in `F64`.
    pub fn set_state(&mut self, state: &Tensor) -> Result<(), LiquidError> {
        if state.dims() != [1, self.cell.state_size()] || state.dtype() != DType::F64 {
            return Err(LiquidError::Shape(format!(
                "state is {:?} {:?}, expected [1, {}] F64",
                state.dims(),
                state.dtype(),
                self.cell.state_size()
            )));
        }
        self.state = state.detach();
        Ok(())
    }

    /// The cell.
    #[must_use]
    pub fn cell(&self) -> &C {
        &self.cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfc::{CfcMode, WiredCfc};
    use crate::ltc::{LtcConfig, WiredLtc};
    use crate::wiring::auto_ncp;
    use beamlab_candle_bridge::candle_nn::VarMap;
    use beamlab_candle_bridge::seeded_var_builder;

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
    }

    fn carries_state<C: RecurrentCell>(make: impl Fn() -> C) {
        let seq = Tensor::new(&[[0.5, -1.0, 0.3], [0.9, 0.2, -0.4]], &Device::Cpu).unwrap();
        let mut one = SequenceRunner::new(make()).unwrap();
        let all = one.run(&seq, 0.5).unwrap();
        let mut two = SequenceRunner::new(make()).unwrap();
        let a = two.run(&seq.narrow(0, 0, 1).unwrap(), 0.5).unwrap();
        let b = two.run(&seq.narrow(0, 1, 1).unwrap(), 0.5).unwrap();
        let split = Tensor::cat(&[a, b], 0).unwrap();
        assert_eq!(all.dims(), &[2, 2]);
        assert!(max_diff(&all, &split) < 1e-14);
        assert!(max_diff(one.state(), two.state()) < 1e-14);
        assert!(max_diff(one.state(), &Tensor::zeros((1, 9), DType::F64, &Device::Cpu).unwrap()) > 0.0);
        // The stored state is detached: it is not tracked by autograd.
        assert!(!one.state().track_op());
        one.reset().unwrap();
        assert_eq!(max_diff(one.state(), &Tensor::zeros((1, 9), DType::F64, &Device::Cpu).unwrap()), 0.0);
        two.set_state(&Tensor::ones((1, 9), DType::F64, &Device::Cpu).unwrap()).unwrap();
        assert!(matches!(
            two.set_state(&Tensor::ones((2, 9), DType::F64, &Device::Cpu).unwrap()),
            Err(LiquidError::Shape(_))
        ));
        assert!(matches!(
            two.run(&Tensor::ones((2, 4), DType::F64, &Device::Cpu).unwrap(), 0.5),
            Err(LiquidError::Shape(_))
        ));
        assert!(matches!(
            two.run(&Tensor::ones(3, DType::F64, &Device::Cpu).unwrap(), 0.5),
            Err(LiquidError::Shape(_))
        ));
    }

    #[test]
    fn runner_carries_state_across_calls() {
        let wiring = auto_ncp(3, 9, 2, 0.5, 1).unwrap();
        let vm = VarMap::new();
        carries_state(|| {
            WiredCfc::new(&wiring, CfcMode::Default, seeded_var_builder(&vm, 1, DType::F64, &Device::Cpu)).unwrap()
        });
        let vm = VarMap::new();
        carries_state(|| {
            WiredLtc::new(&wiring, LtcConfig::default(), seeded_var_builder(&vm, 1, DType::F64, &Device::Cpu)).unwrap()
        });
    }
}
