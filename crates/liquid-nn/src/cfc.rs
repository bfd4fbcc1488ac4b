//! The wired closed-form continuous-time cell (CfC; Hasani et al. 2022, ncps' `WiredCfCCell`).
//!
//! One CfC layer per [`Layer`] of the wiring, run in sequence within a step: the first layer reads
//! the sensory input, every later layer the *new* state of the layer before it. For a layer with
//! input `u: [batch, n_in]`, state `h: [batch, n]` and `z = [u, h]: [batch, n_in + n]`,
//!
//! ```text
//! ff1 = tanh(z (W1 ∘ M)ᵀ + b1)          W1, W2: [n, n_in + n], M = [input mask ; recurrent]ᵀ
//! ff2 = tanh(z (W2 ∘ M)ᵀ + b2)
//! t_a = z W_aᵀ + b_a,  t_b = z W_bᵀ + b_b     (dense, unmasked)
//! s   = σ(t_a · t + t_b)
//! Default: h′ = ff1 ⊙ (1 − s) + s ⊙ ff2
//! NoGate:  h′ = ff1 + s ⊙ ff2
//! Pure:    h′ = −A ⊙ exp(−t (|w_τ| + |ff1|)) ⊙ ff1 + A      (A, w_τ: [n]; no ff2, t_a, t_b)
//! ```
//!
//! `M` is the layer's input mask (which source feeds which neuron) stacked on a **dense**
//! recurrent block, as ncps' `WiredCfCCell` and the GLNN reference do (the wiring's own recurrent
//! synapses are used by the LTC only). Masked weights are stored dense and count as parameters (as
//! in ncps); their entries where `M = 0` never influence the output and receive zero gradient.
//!
//! Initialisation: Xavier-uniform `U(±√(6 / (fan_in + fan_out)))` for every `W`, zeros for the
//! biases, `A = 1`, `w_τ = 0` (pure mode).

use beamlab_candle_bridge::candle_core::{DType, Tensor};
use beamlab_candle_bridge::candle_nn::{self, Init, VarBuilder};

use crate::LiquidError;
use crate::sequence::{RecurrentCell, check_step_shapes};
use crate::wiring::{Layer, Wiring};

/// The CfC variant (ncps' `mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CfcMode {
    /// Gated interpolation `h′ = ff1 ⊙ (1 − s) + s ⊙ ff2` (ncps `"default"`).
    #[default]
    Default,
    /// `h′ = ff1 + s ⊙ ff2` (ncps `"no_gate"`).
    NoGate,
    /// The direct closed-form solution `h′ = −A ⊙ exp(−t (|w_τ| + |ff1|)) ⊙ ff1 + A` (ncps `"pure"`).
    Pure,
}

/// Mode-specific parameters of one layer.
#[derive(Debug)]
enum Head {
    Gated { ff2_w: Tensor, ff2_b: Tensor, ta_w: Tensor, ta_b: Tensor, tb_w: Tensor, tb_b: Tensor },
    Pure { a: Tensor, w_tau: Tensor },
}

/// One CfC layer.
#[derive(Debug)]
struct CfcLayer {
    n_neurons: usize,
    /// `Mᵀ: [n, n_in + n]` (1 where the synapse exists), constant.
    mask: Tensor,
    ff1_w: Tensor,
    ff1_b: Tensor,
    head: Head,
}

fn xavier(n_out: usize, n_in: usize) -> Init {
    let bound = (6.0 / (n_in + n_out) as f64).sqrt();
    Init::Uniform { lo: -bound, up: bound }
}

impl CfcLayer {
    fn new(layer: &Layer, mode: CfcMode, vb: &VarBuilder) -> Result<Self, LiquidError> {
        let (n_in, n) = (layer.n_sources(), layer.n_neurons());
        let k = n_in + n;
        let mut m = vec![1.0f64; n * k];
        for j in 0..n {
            for i in 0..n_in {
                m[j * k + i] = if layer.input_mask[[i, j]] { 1.0 } else { 0.0 };
            }
        }
        let mask = Tensor::from_vec(m, (n, k), vb.device())?;
        let weight = |name: &str| vb.get_with_hints((n, k), &format!("{name}.weight"), xavier(n, k));
        let bias = |name: &str| vb.get_with_hints(n, &format!("{name}.bias"), Init::Const(0.0));
        let head = match mode {
            CfcMode::Default | CfcMode::NoGate => Head::Gated {
                ff2_w: weight("ff2")?,
                ff2_b: bias("ff2")?,
                ta_w: weight("time_a")?,
                ta_b: bias("time_a")?,
                tb_w: weight("time_b")?,
                tb_b: bias("time_b")?,
            },
            CfcMode::Pure => Head::Pure {
                a: vb.get_with_hints(n, "A", Init::Const(1.0))?,
                w_tau: vb.get_with_hints(n, "w_tau", Init::Const(0.0))?,
            },
        };
        Ok(Self { n_neurons: n, mask, ff1_w: weight("ff1")?, ff1_b: bias("ff1")?, head })
    }

    fn n_parameters(&self) -> usize {
        let n = self.n_neurons;
        let k = self.mask.dims()[1];
        match self.head {
            Head::Gated { .. } => 4 * (n * k + n),
            Head::Pure { .. } => n * k + n + 2 * n,
        }
    }

    /// The layer's weights fused for one elapsed time `t`: `[r, k + 1]` with
    /// `W_fused = [W1 ∘ M ; W2 ∘ M ; t W_a + W_b]` (`r = 3n`; pure mode: `W1 ∘ M`, `r = n`) and the
    /// biases `[b1 ; b2 ; t b_a + b_b]` as the last row, so that `[z, 1] · W_fusedᵀ` gives every
    /// pre-activation of a step in one product (`t_a · t + t_b = z (t W_a + W_b)ᵀ + t b_a + b_b`).
    /// Built inside the graph: gradients reach every parameter and masked entries get zero.
    fn fuse(&self, t: f64) -> Result<Tensor, LiquidError> {
        let ff1 = (&self.ff1_w * &self.mask)?;
        let (w, b) = match &self.head {
            Head::Gated { ff2_w, ff2_b, ta_w, ta_b, tb_w, tb_b } => {
                let ff2 = (ff2_w * &self.mask)?;
                let gate_w = (ta_w.affine(t, 0.0)? + tb_w)?;
                let gate_b = (ta_b.affine(t, 0.0)? + tb_b)?;
                (Tensor::cat(&[&ff1, &ff2, &gate_w], 0)?, Tensor::cat(&[&self.ff1_b, ff2_b, &gate_b], 0)?)
            }
            Head::Pure { .. } => (ff1, self.ff1_b.clone()),
        };
        Ok(Tensor::cat(&[&w, &b.unsqueeze(1)?], 1)?)
    }

    /// One step with the weights of [`fuse`](Self::fuse) (same `t`): `u: [batch, n_in]`,
    /// `h: [batch, n]`, `ones: [batch, 1]` → `h′: [batch, n]`.
    fn forward(
        &self,
        fused: &Tensor,
        u: &Tensor,
        h: &Tensor,
        ones: &Tensor,
        t: f64,
        mode: CfcMode,
    ) -> Result<Tensor, LiquidError> {
        let n = self.n_neurons;
        let z = Tensor::cat(&[u, h, ones], 1)?;
        let pre = if z.dims()[0] == 1 {
            // A matrix-vector product as a broadcast product and a row sum: for these tiny sizes
            // it is much cheaper than candle's matmul (whose CPU path queries the CPU count on
            // every call), here and in the backward pass.
            fused.broadcast_mul(&z)?.sum_keepdim(1)?.reshape((1, fused.dims()[0]))?
        } else {
            z.matmul(&fused.t()?)?
        };
        match &self.head {
            Head::Gated { .. } => {
                let ff = pre.narrow(1, 0, 2 * n)?.tanh()?;
                let ff1 = ff.narrow(1, 0, n)?;
                let ff2 = ff.narrow(1, n, n)?;
                let s = candle_nn::ops::sigmoid(&pre.narrow(1, 2 * n, n)?)?;
                Ok(match mode {
                    CfcMode::NoGate => (ff1 + (&s * &ff2)?)?,
                    // ff1 ⊙ (1 − s) + s ⊙ ff2 = ff1 + s ⊙ (ff2 − ff1).
                    _ => ((&s * (&ff2 - &ff1)?)? + ff1)?,
                })
            }
            Head::Pure { a, w_tau } => {
                let ff1 = pre.tanh()?;
                let decay = ff1.abs()?.broadcast_add(&w_tau.abs()?)?.affine(-t, 0.0)?.exp()?;
                Ok((&ff1 * &decay)?.broadcast_mul(a)?.neg()?.broadcast_add(a)?)
            }
        }
    }
}

/// [`LiquidError::InvalidParameter`] unless `t` is finite.
fn check_time(t: f64) -> Result<(), LiquidError> {
    if t.is_finite() {
        Ok(())
    } else {
        Err(LiquidError::InvalidParameter(format!("elapsed time t = {t} must be finite")))
    }
}

/// A wired CfC cell: one masked CfC layer per wiring layer (see the module docs for the
/// equations).
#[derive(Debug)]
pub struct WiredCfc {
    mode: CfcMode,
    n_inputs: usize,
    n_outputs: usize,
    units: usize,
    layers: Vec<CfcLayer>,
}

impl WiredCfc {
    /// Builds the cell's variables under `vb` (which must be `F64`): for layer `l`, the names
    /// `layer{l}.ff1.weight`, `layer{l}.ff1.bias`, and per mode `ff2` / `time_a` / `time_b` or
    /// `A` / `w_tau`. Existing variables of the right shape are reused (a loaded model).
    ///
    /// # Errors
    /// [`LiquidError::InvalidParameter`] for a non-`F64` builder; candle errors (e.g. an existing
    /// variable of another shape).
    pub fn new(wiring: &Wiring, mode: CfcMode, vb: VarBuilder) -> Result<Self, LiquidError> {
        if vb.dtype() != DType::F64 {
            return Err(LiquidError::InvalidParameter(format!(
                "WiredCfc needs an F64 VarBuilder, got {:?}",
                vb.dtype()
            )));
        }
        let layers = wiring
            .layers()
            .iter()
            .enumerate()
            .map(|(l, layer)| CfcLayer::new(layer, mode, &vb.pp(format!("layer{l}"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { mode, n_inputs: wiring.n_inputs(), n_outputs: wiring.n_outputs(), units: wiring.units(), layers })
    }

    /// One step of elapsed time `t`: `input: [batch, n_inputs]`, `state: [batch, units]` →
    /// `(output: [batch, n_outputs], new state: [batch, units])`. The output is the first
    /// `n_outputs` neurons of the last layer's new state.
    ///
    /// # Errors
    /// [`LiquidError::Shape`] on wrong shapes, [`LiquidError::InvalidParameter`] for a
    /// non-finite `t`; candle errors.
    pub fn step(&self, input: &Tensor, state: &Tensor, t: f64) -> Result<(Tensor, Tensor), LiquidError> {
        check_step_shapes(input, state, self.n_inputs, self.units)?;
        check_time(t)?;
        let fused = self.fuse(t)?;
        let states = self.split_state(state)?;
        let ones = Tensor::ones((input.dims()[0], 1), DType::F64, input.device())?;
        let states = self.advance(&fused, input, &states, &ones, t)?;
        let output = states.last().map_or(Ok(input.clone()), |s| s.narrow(1, 0, self.n_outputs))?;
        Ok((output, Tensor::cat(&states, 1)?))
    }

    /// Every layer's fused weights for elapsed time `t` (see [`CfcLayer::fuse`]).
    fn fuse(&self, t: f64) -> Result<Vec<Tensor>, LiquidError> {
        self.layers.iter().map(|layer| layer.fuse(t)).collect()
    }

    /// One step on per-layer states: returns the new per-layer states.
    fn advance(
        &self,
        fused: &[Tensor],
        input: &Tensor,
        states: &[Tensor],
        ones: &Tensor,
        t: f64,
    ) -> Result<Vec<Tensor>, LiquidError> {
        let mut new_states: Vec<Tensor> = Vec::with_capacity(self.layers.len());
        for ((layer, w), h) in self.layers.iter().zip(fused).zip(states) {
            let u = new_states.last().unwrap_or(input);
            let next = layer.forward(w, u, h, ones, t, self.mode)?;
            new_states.push(next);
        }
        Ok(new_states)
    }

    /// Runs `seq: [T, n_inputs]` (batch 1) from `state: [1, units]` with elapsed time `t` per
    /// step; returns `(outputs [T, n_outputs], final state [1, units])`. Same result as `T` calls
    /// of [`step`](Self::step), with the fused weights built once for the whole sequence.
    ///
    /// # Errors
    /// The per-layer blocks of a packed state `[batch, units]`.
    fn split_state(&self, state: &Tensor) -> Result<Vec<Tensor>, LiquidError> {
        let mut offset = 0;
        let mut states = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            states.push(state.narrow(1, offset, layer.n_neurons)?);
            offset += layer.n_neurons;
        }
        Ok(states)
    }

    /// As [`step`](Self::step).
    pub fn run_sequence(&self, seq: &Tensor, state: &Tensor, t: f64) -> Result<(Tensor, Tensor), LiquidError> {
        let dims = seq.dims();
        if dims.len() != 2 || dims[0] == 0 {
            return Err(LiquidError::Shape(format!("sequence is {dims:?}, expected [T >= 1, n_inputs]")));
        }
        check_step_shapes(&seq.narrow(0, 0, 1)?, state, self.n_inputs, self.units)?;
        check_time(t)?;
        let fused = self.fuse(t)?;
        let mut states = self.split_state(state)?;
        let ones = Tensor::ones((1, 1), DType::F64, seq.device())?;
        let mut last = Vec::with_capacity(dims[0]);
        for k in 0..dims[0] {
            states = self.advance(&fused, &seq.narrow(0, k, 1)?, &states, &ones, t)?;
            if let Some(s) = states.last() {
                last.push(s.clone());
            }
        }
        let outputs =
            if last.is_empty() { seq.clone() } else { Tensor::cat(&last, 0)?.narrow(1, 0, self.n_outputs)? };
        Ok((outputs, Tensor::cat(&states, 1)?))
    }

    /// The state size (total neurons).
    #[must_use]
    pub fn state_size(&self) -> usize {
        self.units
    }

    /// The output size.
    #[must_use]
    pub fn output_size(&self) -> usize {
        self.n_outputs
    }

    /// The mode.
    #[must_use]
    pub fn mode(&self) -> CfcMode {
        self.mode
    }

    /// Trainable scalars, masked weights included (they are stored dense, as in ncps).
    #[must_use]
    pub fn n_parameters(&self) -> usize {
        self.layers.iter().map(CfcLayer::n_parameters).sum()
    }
}

impl RecurrentCell for WiredCfc {
    fn step(&self, input: &Tensor, state: &Tensor, t: f64) -> Result<(Tensor, Tensor), LiquidError> {
        WiredCfc::step(self, input, state, t)
    }

    fn run_sequence(&self, seq: &Tensor, state: &Tensor, t: f64) -> Result<(Tensor, Tensor), LiquidError> {
        WiredCfc::run_sequence(self, seq, state, t)
    }

    fn state_size(&self) -> usize {
        self.units
    }

    fn output_size(&self) -> usize {
        self.n_outputs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{check_gradients, set_var};
    use crate::wiring::{auto_ncp, fully_connected};
    use beamlab_candle_bridge::candle_core::Device;
    use beamlab_candle_bridge::candle_nn::VarMap;
    use beamlab_candle_bridge::seeded_var_builder;

    fn build(wiring: &Wiring, mode: CfcMode, seed: u64) -> (VarMap, WiredCfc) {
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, seed, DType::F64, &Device::Cpu);
        let cell = WiredCfc::new(wiring, mode, vb).unwrap();
        (vm, cell)
    }

    #[test]
    fn glnn_instance_has_2568_parameters() {
        let w = auto_ncp(8, 30, 8, 0.5, 0).unwrap();
        let (vm, cell) = build(&w, CfcMode::Default, 0);
        assert_eq!(cell.n_parameters(), 2568);
        let stored: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(stored, 2568);
        let head = candle_nn::linear(8, 8, seeded_var_builder(&vm, 0, DType::F64, &Device::Cpu).pp("head")).unwrap();
        let _ = head;
        let with_head: usize = vm.all_vars().iter().map(|v| v.elem_count()).sum();
        assert_eq!(with_head, 2640);
        let (_, pure) = build(&w, CfcMode::Pure, 0);
        let stored_pure = 14 * 22 + 3 * 14 + 8 * 22 + 3 * 8 + 8 * 16 + 3 * 8;
        assert_eq!(pure.n_parameters(), stored_pure);
    }

    /// 1 input, fully connected 2 units, 1 output, weights set by hand; `h′` evaluated in plain
    /// f64 for every mode.
    #[test]
    fn hand_computed_step() {
        let w = fully_connected(1, 2, 1).unwrap();
        let ff1 = [[0.3, -0.2, 0.5], [0.1, 0.4, -0.6]];
        let ff2 = [[-0.7, 0.2, 0.1], [0.5, -0.3, 0.2]];
        let ta = [[0.2, 0.1, -0.4], [-0.3, 0.6, 0.2]];
        let tb = [[0.05, -0.1, 0.3], [0.4, 0.2, -0.1]];
        let (b1, b2, bta, btb) = ([0.1, -0.2], [0.3, 0.0], [-0.1, 0.2], [0.05, -0.05]);
        let (a_par, w_tau) = ([1.5, -0.5], [0.2, -0.3]);
        let x = 0.8;
        let h = [0.25, -0.4];
        let t = 0.7;
        let z = [x, h[0], h[1]];
        let lin = |w: &[[f64; 3]; 2], b: &[f64; 2], j: usize| (0..3).map(|i| w[j][i] * z[i]).sum::<f64>() + b[j];
        for mode in [CfcMode::Default, CfcMode::NoGate, CfcMode::Pure] {
            let (vm, cell) = build(&w, mode, 1);
            let m2 = |a: &[[f64; 3]; 2]| Tensor::new(a, &Device::Cpu).unwrap();
            let v1 = |a: &[f64; 2]| Tensor::new(a, &Device::Cpu).unwrap();
            set_var(&vm, "layer0.ff1.weight", &m2(&ff1));
            set_var(&vm, "layer0.ff1.bias", &v1(&b1));
            if mode == CfcMode::Pure {
                set_var(&vm, "layer0.A", &v1(&a_par));
                set_var(&vm, "layer0.w_tau", &v1(&w_tau));
            } else {
                set_var(&vm, "layer0.ff2.weight", &m2(&ff2));
                set_var(&vm, "layer0.ff2.bias", &v1(&b2));
                set_var(&vm, "layer0.time_a.weight", &m2(&ta));
                set_var(&vm, "layer0.time_a.bias", &v1(&bta));
                set_var(&vm, "layer0.time_b.weight", &m2(&tb));
                set_var(&vm, "layer0.time_b.bias", &v1(&btb));
            }
            let expect: Vec<f64> = (0..2)
                .map(|j| {
                    let f1 = lin(&ff1, &b1, j).tanh();
                    let f2 = lin(&ff2, &b2, j).tanh();
                    let s = 1.0 / (1.0 + (-(lin(&ta, &bta, j) * t + lin(&tb, &btb, j))).exp());
                    match mode {
                        CfcMode::Default => f1 * (1.0 - s) + s * f2,
                        CfcMode::NoGate => f1 + s * f2,
                        CfcMode::Pure => -a_par[j] * (-t * (w_tau[j].abs() + f1.abs())).exp() * f1 + a_par[j],
                    }
                })
                .collect();
            let input = Tensor::new(&[[x]], &Device::Cpu).unwrap();
            let state = Tensor::new(&[h], &Device::Cpu).unwrap();
            let (out, new) = cell.step(&input, &state, t).unwrap();
            let new: Vec<Vec<f64>> = new.to_vec2().unwrap();
            let out: Vec<Vec<f64>> = out.to_vec2().unwrap();
            for j in 0..2 {
                assert!((new[0][j] - expect[j]).abs() < 1e-12, "{mode:?} {j}: {} vs {}", new[0][j], expect[j]);
            }
            assert_eq!(out[0], vec![new[0][0]]);
        }
    }

    #[test]
    fn layers_run_in_sequence_and_masks_hold() {
        let w = auto_ncp(3, 8, 2, 0.5, 5).unwrap();
        let (_, cell) = build(&w, CfcMode::Default, 2);
        let input = Tensor::new(&[[0.5, -1.0, 2.0], [0.1, 0.2, 0.3]], &Device::Cpu).unwrap();
        let state = Tensor::zeros((2, 8), DType::F64, &Device::Cpu).unwrap();
        let (out, new) = cell.step(&input, &state, 1.0).unwrap();
        assert_eq!((out.dims(), new.dims()), (&[2, 2][..], &[2, 8][..]));
        let o: Vec<Vec<f64>> = out.to_vec2().unwrap();
        let n: Vec<Vec<f64>> = new.to_vec2().unwrap();
        assert_eq!(o[1], n[1][w.output_offset()..w.output_offset() + 2].to_vec());
        // Shape errors are typed.
        let bad = Tensor::zeros((2, 7), DType::F64, &Device::Cpu).unwrap();
        assert!(matches!(cell.step(&input, &bad, 1.0), Err(LiquidError::Shape(_))));
        assert!(matches!(cell.step(&bad, &state, 1.0), Err(LiquidError::Shape(_))));
        assert!(matches!(cell.step(&input, &state, f64::NAN), Err(LiquidError::InvalidParameter(_))));
    }

    /// Gradients of `Σ out²` after 3 steps against central differences, every mode; masked
    /// weight entries get exactly zero gradient.
    #[test]
    fn gradients_match_finite_differences() {
        let w = auto_ncp(3, 9, 2, 0.5, 11).unwrap();
        for mode in [CfcMode::Default, CfcMode::NoGate, CfcMode::Pure] {
            let (vm, cell) = build(&w, mode, 3);
            if mode == CfcMode::Pure {
                // Move w_τ off the kink of |·| at 0.
                let n = w.layers()[1].n_neurons();
                set_var(&vm, "layer1.w_tau", &Tensor::full(0.3f64, n, &Device::Cpu).unwrap());
            }
            let xs = Tensor::new(&[[0.5, -1.0, 0.7], [0.2, 0.4, -0.3], [-0.6, 0.1, 0.9]], &Device::Cpu).unwrap();
            let loss = || -> Tensor {
                let mut s = Tensor::full(0.1f64, (1, 9), &Device::Cpu).unwrap();
                let mut total = Tensor::zeros((), DType::F64, &Device::Cpu).unwrap();
                for i in 0..3 {
                    let (o, ns) = cell.step(&xs.narrow(0, i, 1).unwrap(), &s, 0.8).unwrap();
                    total = (total + o.sqr().unwrap().sum_all().unwrap()).unwrap();
                    s = ns;
                }
                total
            };
            let mut names = vec!["layer0.ff1.weight", "layer1.ff1.bias", "layer2.ff1.weight"];
            match mode {
                CfcMode::Pure => names.extend(["layer2.A", "layer1.w_tau"]),
                _ => names.extend(["layer1.ff2.weight", "layer2.time_a.weight", "layer0.time_b.bias"]),
            }
            check_gradients(&vm, &names, &loss, 1e-5);
            // Zero gradient at masked entries of the first layer's ff1 weight.
            let grads = loss().backward().unwrap();
            let data = vm.data().lock().unwrap();
            let var = data.get("layer0.ff1.weight").unwrap();
            let g: Vec<Vec<f64>> = grads.get(var.as_tensor()).unwrap().to_vec2().unwrap();
            let mask = &w.layers()[0].input_mask;
            let mut n_masked = 0;
            for (j, row) in g.iter().enumerate() {
                for (i, gi) in row.iter().take(3).enumerate() {
                    if !mask[[i, j]] {
                        assert_eq!(*gi, 0.0);
                        n_masked += 1;
                    }
                }
            }
            assert!(n_masked > 0);
        }
    }
}
