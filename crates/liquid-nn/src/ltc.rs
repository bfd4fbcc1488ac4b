//! The wired liquid time-constant cell (LTC; Hasani et al. 2021) with ncps' fused semi-implicit
//! ODE solver.
//!
//! Each neuron `j` has a membrane potential `v_j` obeying
//! `c_m dv_j/dt = g_leak (v_leak − v_j) + Σ_i a_ij (E_ij − v_j)` with synaptic activations
//! `a_ij = w_ij σ(σ_ij (v_i − μ_ij))` over presynaptic neurons and sensory inputs. One step of
//! elapsed time `Δt` takes `ode_unfolds` fused semi-implicit Euler sub-steps of `Δt / ode_unfolds`:
//!
//! ```text
//! x̃    = x ⊙ input_w + input_b                                     x: [batch, n_inputs]
//! a_s   = softplus(sensory_w) ⊙ σ((x̃_i − sensory_mu) ⊙ sensory_sigma) ∘ sensory_mask   [batch, I, N]
//! num_s = Σ_i a_s ⊙ sensory_erev,   den_s = Σ_i a_s                                 [batch, N]
//! cm_t  = softplus(cm) / (Δt / ode_unfolds)
//! repeat ode_unfolds times:
//!   a   = softplus(w) ⊙ σ((v_i − mu) ⊙ sigma) ∘ mask                                [batch, N, N]
//!   num = cm_t ⊙ v + softplus(gleak) ⊙ vleak + Σ_i a ⊙ erev + num_s
//!   den = cm_t + softplus(gleak) + Σ_i a + den_s
//!   v   ← num / (den + ε)
//! output = v[motor] ⊙ output_w + output_b
//! ```
//!
//! `mask: [N, N]` is the wiring's neuron adjacency `(pre, post)` (feed-forward layer masks plus the
//! recurrent synapses, e.g. NCP's command → command ones), `sensory_mask: [I, N]` its sensory
//! adjacency. Positive quantities (`w`, `sensory_w`, `gleak`, `cm`) go through
//! `softplus(x) = max(x, 0) + ln(1 + e^{−|x|})` (ncps' `implicit_param_constraints`).
//!
//! Initialisation (ncps' ranges, raw values before softplus): `gleak ~ U(0.001, 1)`,
//! `vleak ~ U(−0.2, 0.2)`, `cm ~ U(0.4, 0.6)`, `sigma ~ U(3, 8)`, `mu ~ U(0.3, 0.8)`,
//! `w ~ U(0.001, 1)`, the same for the sensory synapses, `input_w = output_w = 1`,
//! `input_b = output_b = 0`. Reversal potentials `erev, sensory_erev ~ U(−1, 1)` (ncps draws ±1
//! polarities in the wiring; polarity is not part of our wiring).

use beamlab_candle_bridge::candle_core::{DType, Tensor};
use beamlab_candle_bridge::candle_nn::{self, Init, VarBuilder};
use ndarray::Array2;

use crate::LiquidError;
use crate::sequence::{RecurrentCell, check_step_shapes};
use crate::wiring::Wiring;

/// Solver settings of the LTC.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LtcConfig {
    /// Semi-implicit sub-steps per step (ncps default 6).
    pub ode_unfolds: usize,
    /// Added to the denominator (ncps default 1e-8).
    pub epsilon: f64,
}

impl Default for LtcConfig {
    fn default() -> Self {
        Self { ode_unfolds: 6, epsilon: 1e-8 }
    }
}

/// `softplus(x) = max(x, 0) + ln(1 + e^{−|x|})` (overflow-free, differentiable).
fn softplus(x: &Tensor) -> Result<Tensor, LiquidError> {
    Ok((x.relu()? + x.abs()?.neg()?.exp()?.affine(1.0, 1.0)?.log()?)?)
}

fn mask_tensor(m: &Array2<bool>, vb: &VarBuilder) -> Result<Tensor, LiquidError> {
    let v: Vec<f64> = m.iter().map(|b| if *b { 1.0 } else { 0.0 }).collect();
    Ok(Tensor::from_vec(v, m.dim(), vb.device())?)
}

/// A wired LTC cell (see the module docs for the equations).
#[derive(Debug)]
pub struct WiredLtc {
    config: LtcConfig,
    n_inputs: usize,
    units: usize,
    n_outputs: usize,
    output_offset: usize,
    gleak: Tensor,
    vleak: Tensor,
    cm: Tensor,
    sigma: Tensor,
    mu: Tensor,
    w: Tensor,
    erev: Tensor,
    sensory_sigma: Tensor,
    sensory_mu: Tensor,
    sensory_w: Tensor,
    sensory_erev: Tensor,
    input_w: Tensor,
    input_b: Tensor,
    output_w: Tensor,
    output_b: Tensor,
    mask: Tensor,
    sensory_mask: Tensor,
}

impl WiredLtc {
    /// Builds the cell's variables under `vb` (`F64`), named as the fields of the equations
    /// (`gleak`, `vleak`, `cm`: `[N]`; `sigma`, `mu`, `w`, `erev`: `[N, N]`; `sensory_*`: `[I, N]`;
    /// `input_w`, `input_b`: `[I]`; `output_w`, `output_b`: `[n_outputs]`).
    ///
    /// # Errors
    /// [`LiquidError::InvalidParameter`] for a non-`F64` builder, `ode_unfolds = 0` or a negative /
    /// non-finite `epsilon`; candle errors.
    pub fn new(wiring: &Wiring, config: LtcConfig, vb: VarBuilder) -> Result<Self, LiquidError> {
        if vb.dtype() != DType::F64 {
            return Err(LiquidError::InvalidParameter(format!(
                "WiredLtc needs an F64 VarBuilder, got {:?}",
                vb.dtype()
            )));
        }
        if config.ode_unfolds == 0 || !(config.epsilon >= 0.0 && config.epsilon.is_finite()) {
            return Err(LiquidError::InvalidParameter(format!(
                "LtcConfig needs ode_unfolds >= 1 and a finite epsilon >= 0: {config:?}"
            )));
        }
        let (i, n, o) = (wiring.n_inputs(), wiring.units(), wiring.n_outputs());
        let u = |lo: f64, up: f64| Init::Uniform { lo, up };
        Ok(Self {
            config,
            n_inputs: i,
            units: n,
            n_outputs: o,
            output_offset: wiring.output_offset(),
            gleak: vb.get_with_hints(n, "gleak", u(0.001, 1.0))?,
            vleak: vb.get_with_hints(n, "vleak", u(-0.2, 0.2))?,
            cm: vb.get_with_hints(n, "cm", u(0.4, 0.6))?,
            sigma: vb.get_with_hints((n, n), "sigma", u(3.0, 8.0))?,
            mu: vb.get_with_hints((n, n), "mu", u(0.3, 0.8))?,
            w: vb.get_with_hints((n, n), "w", u(0.001, 1.0))?,
            erev: vb.get_with_hints((n, n), "erev", u(-1.0, 1.0))?,
            sensory_sigma: vb.get_with_hints((i, n), "sensory_sigma", u(3.0, 8.0))?,
            sensory_mu: vb.get_with_hints((i, n), "sensory_mu", u(0.3, 0.8))?,
            sensory_w: vb.get_with_hints((i, n), "sensory_w", u(0.001, 1.0))?,
            sensory_erev: vb.get_with_hints((i, n), "sensory_erev", u(-1.0, 1.0))?,
            input_w: vb.get_with_hints(i, "input_w", Init::Const(1.0))?,
            input_b: vb.get_with_hints(i, "input_b", Init::Const(0.0))?,
            output_w: vb.get_with_hints(o, "output_w", Init::Const(1.0))?,
            output_b: vb.get_with_hints(o, "output_b", Init::Const(0.0))?,
            mask: mask_tensor(&wiring.adjacency(), &vb)?,
            sensory_mask: mask_tensor(&wiring.sensory_adjacency(), &vb)?,
        })
    }

    /// `(Σ_pre a ⊙ erev, Σ_pre a)` for `a = w_pos ⊙ σ((pre − mu) ⊙ sigma)`, `pre: [batch, P]`,
    /// `w_pos` already masked.
    fn synapses(
        pre: &Tensor,
        mu: &Tensor,
        sigma: &Tensor,
        w_pos: &Tensor,
        erev: &Tensor,
    ) -> Result<(Tensor, Tensor), LiquidError> {
        let a = candle_nn::ops::sigmoid(&pre.unsqueeze(2)?.broadcast_sub(mu)?.broadcast_mul(sigma)?)?
            .broadcast_mul(w_pos)?;
        Ok((a.broadcast_mul(erev)?.sum(1)?, a.sum(1)?))
    }

    /// One step of elapsed time `dt` (see the module docs): `input: [batch, n_inputs]`,
    /// `state: [batch, units]` → `(output: [batch, n_outputs], new state: [batch, units])`.
    ///
    /// # Errors
    /// [`LiquidError::Shape`] on wrong shapes, [`LiquidError::InvalidParameter`] unless
    /// `dt > 0` is finite; candle errors.
    pub fn step(&self, input: &Tensor, state: &Tensor, dt: f64) -> Result<(Tensor, Tensor), LiquidError> {
        check_step_shapes(input, state, self.n_inputs, self.units)?;
        if !(dt > 0.0 && dt.is_finite()) {
            return Err(LiquidError::InvalidParameter(format!("elapsed time dt = {dt} must be positive and finite")));
        }
        let x = input.broadcast_mul(&self.input_w)?.broadcast_add(&self.input_b)?;
        let sensory_w = (softplus(&self.sensory_w)? * &self.sensory_mask)?;
        let (num_s, den_s) = Self::synapses(&x, &self.sensory_mu, &self.sensory_sigma, &sensory_w, &self.sensory_erev)?;
        let cm_t = softplus(&self.cm)?.affine(self.config.ode_unfolds as f64 / dt, 0.0)?;
        let w = (softplus(&self.w)? * &self.mask)?;
        let gleak = softplus(&self.gleak)?;
        let leak = (&gleak * &self.vleak)?;
        let den_const = (&cm_t + &gleak)?.broadcast_add(&den_s)?.affine(1.0, self.config.epsilon)?;
        let num_const = num_s.broadcast_add(&leak)?;
        let mut v = state.clone();
        for _ in 0..self.config.ode_unfolds {
            let (num_r, den_r) = Self::synapses(&v, &self.mu, &self.sigma, &w, &self.erev)?;
            let num = (v.broadcast_mul(&cm_t)? + &num_const)?.add(&num_r)?;
            let den = (den_r + &den_const)?;
            v = (num / den)?;
        }
        let output = v
            .narrow(1, self.output_offset, self.n_outputs)?
            .broadcast_mul(&self.output_w)?
            .broadcast_add(&self.output_b)?;
        Ok((output, v))
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

    /// The solver settings.
    #[must_use]
    pub fn config(&self) -> LtcConfig {
        self.config
    }

    /// Trainable scalars: `3N + 4N² + 4IN + 2I + 2·n_outputs` (masked entries included).
    #[must_use]
    pub fn n_parameters(&self) -> usize {
        let (i, n, o) = (self.n_inputs, self.units, self.n_outputs);
        3 * n + 4 * n * n + 4 * i * n + 2 * i + 2 * o
    }
}

impl RecurrentCell for WiredLtc {
    fn step(&self, input: &Tensor, state: &Tensor, t: f64) -> Result<(Tensor, Tensor), LiquidError> {
        WiredLtc::step(self, input, state, t)
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
    use crate::test_util::{check_gradients, var_values};
    use crate::wiring::{auto_ncp, fully_connected};
    use beamlab_candle_bridge::candle_core::Device;
    use beamlab_candle_bridge::candle_nn::VarMap;
    use beamlab_candle_bridge::seeded_var_builder;

    fn build(wiring: &Wiring, seed: u64) -> (VarMap, WiredLtc) {
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, seed, DType::F64, &Device::Cpu);
        let cell = WiredLtc::new(wiring, LtcConfig::default(), vb).unwrap();
        (vm, cell)
    }

    fn sp(x: f64) -> f64 {
        (1.0 + x.exp()).ln()
    }

    fn sig(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    /// The same equations in plain f64 loops, on the (random) initial parameters of a small NCP.
    #[test]
    fn step_matches_plain_loops() {
        let wiring = auto_ncp(2, 6, 2, 0.5, 4).unwrap();
        let (vm, cell) = build(&wiring, 9);
        // Make the affine maps non-trivial.
        crate::test_util::set_var(&vm, "input_w", &Tensor::new(&[1.3, -0.7], &Device::Cpu).unwrap());
        crate::test_util::set_var(&vm, "input_b", &Tensor::new(&[0.1, 0.2], &Device::Cpu).unwrap());
        crate::test_util::set_var(&vm, "output_w", &Tensor::new(&[0.9, 1.1], &Device::Cpu).unwrap());
        crate::test_util::set_var(&vm, "output_b", &Tensor::new(&[-0.05, 0.3], &Device::Cpu).unwrap());
        let p = |name: &str| var_values(&vm, name);
        let (n, ni) = (6, 2);
        let (adj, sadj) = (wiring.adjacency(), wiring.sensory_adjacency());
        let x = [0.4, -0.9];
        let v0 = [0.1, -0.2, 0.3, 0.05, -0.4, 0.25];
        let dt = 0.7;
        let unfolds = 6.0;
        let (iw, ib) = (p("input_w"), p("input_b"));
        let xt: Vec<f64> = (0..ni).map(|i| x[i] * iw[i] + ib[i]).collect();
        let (s_sigma, s_mu, s_w, s_erev) = (p("sensory_sigma"), p("sensory_mu"), p("sensory_w"), p("sensory_erev"));
        let (sigma, mu, w, erev) = (p("sigma"), p("mu"), p("w"), p("erev"));
        let (gleak, vleak, cm) = (p("gleak"), p("vleak"), p("cm"));
        let mut num_s = vec![0.0; n];
        let mut den_s = vec![0.0; n];
        for i in 0..ni {
            for j in 0..n {
                if sadj[[i, j]] {
                    let k = i * n + j;
                    let a = sp(s_w[k]) * sig((xt[i] - s_mu[k]) * s_sigma[k]);
                    num_s[j] += a * s_erev[k];
                    den_s[j] += a;
                }
            }
        }
        let mut v = v0.to_vec();
        for _ in 0..6 {
            let mut next = vec![0.0; n];
            for j in 0..n {
                let cm_t = sp(cm[j]) / (dt / unfolds);
                let (mut num, mut den) =
                    (cm_t * v[j] + sp(gleak[j]) * vleak[j] + num_s[j], cm_t + sp(gleak[j]) + den_s[j]);
                for i in 0..n {
                    if adj[[i, j]] {
                        let k = i * n + j;
                        let a = sp(w[k]) * sig((v[i] - mu[k]) * sigma[k]);
                        num += a * erev[k];
                        den += a;
                    }
                }
                next[j] = num / (den + 1e-8);
            }
            v = next;
        }
        let (ow, ob) = (p("output_w"), p("output_b"));
        let off = wiring.output_offset();
        let input = Tensor::new(&[x], &Device::Cpu).unwrap();
        let state = Tensor::new(&[v0], &Device::Cpu).unwrap();
        let (out, new) = cell.step(&input, &state, dt).unwrap();
        let new: Vec<Vec<f64>> = new.to_vec2().unwrap();
        let out: Vec<Vec<f64>> = out.to_vec2().unwrap();
        for j in 0..n {
            assert!((new[0][j] - v[j]).abs() < 1e-12, "neuron {j}: {} vs {}", new[0][j], v[j]);
        }
        for k in 0..2 {
            assert!((out[0][k] - (v[off + k] * ow[k] + ob[k])).abs() < 1e-12);
        }
        assert_eq!(cell.n_parameters(), vm.all_vars().iter().map(|v| v.elem_count()).sum::<usize>());
    }

    #[test]
    fn gradients_match_finite_differences_and_masks_are_inert() {
        let wiring = auto_ncp(3, 8, 2, 0.5, 2).unwrap();
        let (vm, cell) = build(&wiring, 5);
        let xs = Tensor::new(&[[0.5, -1.0, 0.7], [0.2, 0.4, -0.3], [-0.6, 0.1, 0.9]], &Device::Cpu).unwrap();
        let loss = || -> Tensor {
            let mut s = Tensor::full(0.1f64, (1, 8), &Device::Cpu).unwrap();
            let mut total = Tensor::zeros((), DType::F64, &Device::Cpu).unwrap();
            for i in 0..3 {
                let (o, ns) = cell.step(&xs.narrow(0, i, 1).unwrap(), &s, 0.5).unwrap();
                total = (total + o.sqr().unwrap().sum_all().unwrap()).unwrap();
                s = ns;
            }
            total
        };
        check_gradients(
            &vm,
            &["w", "erev", "sensory_w", "sensory_mu", "gleak", "cm", "vleak", "input_w", "output_b", "sigma"],
            &loss,
            1e-5,
        );
        let grads = loss().backward().unwrap();
        let data = vm.data().lock().unwrap();
        let g: Vec<Vec<f64>> = grads.get(data.get("w").unwrap().as_tensor()).unwrap().to_vec2().unwrap();
        let adj = wiring.adjacency();
        assert!(adj.indexed_iter().filter(|(_, b)| !**b).all(|((i, j), _)| g[i][j] == 0.0));
        let gs: Vec<Vec<f64>> = grads.get(data.get("sensory_w").unwrap().as_tensor()).unwrap().to_vec2().unwrap();
        let sadj = wiring.sensory_adjacency();
        assert!(sadj.indexed_iter().filter(|(_, b)| !**b).all(|((i, j), _)| gs[i][j] == 0.0));
    }

    #[test]
    fn bad_settings_are_errors() {
        let wiring = fully_connected(1, 2, 1).unwrap();
        let vm = VarMap::new();
        let vb = seeded_var_builder(&vm, 0, DType::F64, &Device::Cpu);
        let bad = LtcConfig { ode_unfolds: 0, ..LtcConfig::default() };
        assert!(matches!(WiredLtc::new(&wiring, bad, vb.clone()), Err(LiquidError::InvalidParameter(_))));
        let cell = WiredLtc::new(&wiring, LtcConfig::default(), vb).unwrap();
        let x = Tensor::zeros((1, 1), DType::F64, &Device::Cpu).unwrap();
        let s = Tensor::zeros((1, 2), DType::F64, &Device::Cpu).unwrap();
        assert!(matches!(cell.step(&x, &s, 0.0), Err(LiquidError::InvalidParameter(_))));
        assert!(cell.step(&x, &s, 1.0).is_ok());
        let vm32 = VarMap::new();
        let vb32 = seeded_var_builder(&vm32, 0, DType::F32, &Device::Cpu);
        assert!(matches!(WiredLtc::new(&wiring, LtcConfig::default(), vb32), Err(LiquidError::InvalidParameter(_))));
    }
}
