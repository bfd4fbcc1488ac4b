//! GGML: gradient-guided meta-learning for hybrid precoding (spec `ggml-kan.md` §2; paper
//! "gradient-guided meta-learning … hybrid precoding", Algorithm 1).
//!
//! System model: MU-MISO downlink, `N` antennas, `M` RF chains, `K` single-antenna users; channel
//! rows `h_k: [1 × N]`; analog `F: [N × M]` with `|F_ij| = 1`; digital `D: [M × K]`; power
//! `‖F D‖_F² = P`; rates `R_k = log2(1 + SINR_k)`.
//!
//! Every problem is solved from scratch ("free of training"): two fresh networks, the analog
//! precoding network (APN, `2NM → 2NM`) and the digital one (DPN, `2MK → 2MK`), each with its own
//! Adam. Step `t = 1..L`:
//!
//! 1. `g_F = ∇_F L(F_b, D_{t−1})` (linalg-ops' analytic gradient; PyTorch's convention `2 ∂L/∂F*`);
//!    `F_t = P(F_b + APN(x_F))`, `P` the element-wise unit-modulus projection `z/|z|`;
//! 2. `g_D = ∇_D L(F_t, D_b)`; `D_t = √P D̃/‖F_t D̃‖_F`, `D̃ = D_b + DPN(x_D)`;
//! 3. `L(F_t, D_t)` is back-propagated through both networks, the normalisation and the projection
//!    (its gradient `∂L/∂W*` at `W = F_t D_t` is injected with
//!    [`beamlab_candle_bridge::wirtinger_surrogate`]); one Adam step per network.
//!
//! `F_b, D_b` are the base points ([`StepBase`]: the initial `F_0, D_0` as in the reference code,
//! or the previous iterate) and `x_F, x_D` the flattened (`[Re | Im]` along columns, row-major),
//! optionally accumulated ([`GradientInput`]) and scaled ([`InputScaling`]) gradients. Init:
//! `F_0 = e^{jθ}`, `θ ~ U[0, 2π)`; `D_0` zero-forcing on `H F_0`, scaled to full power.
//! Loss: `L = −Σ_k α_k R_k + β Var(R)` (α the normalised user weights, `1/K` by default; Var the
//! unbiased variance) or the worst-case MMSE loss of GGML-ImCSI ([`Objective`]).
//!
//! Files: this one holds the options (each alternative an enum whose `#[default]` is the
//! reference behaviour), [`GgmlParams`] and the [`Ggml`] beamformer; `ggml/setup.rs` the validated
//! inputs ([`HybridSetup`]), the initialisation and the [`Objective`]; `ggml/solver.rs` the solver
//! loop ([`run_ggml`]) and its candle graph.

use beamlab_core::{Beamformer, CoreError, Diagnostics, Precoder, Problem, Solution};
use candle_core::DType;
use rand::RngCore;
use serde::Deserialize;

use crate::layer::KanConfig;
use crate::net::NetKind;
use crate::{KanError, invalid};

mod setup;
mod solver;
#[cfg(test)]
mod tests;

pub use setup::{HybridSetup, Objective, random_phase_analog, zf_digital};
pub use solver::{GgmlOutput, run_ggml};

/// What the networks see as input at each step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GradientInput {
    /// The reference code's behaviour: the base point's `.grad` is never zeroed, so the input is
    /// the running sum of every inner gradient plus twice (backward is called twice) every outer
    /// loss gradient with respect to the base point.
    #[default]
    Accumulated,
    /// The fresh inner gradient of the current step only.
    Fresh,
}

/// Where each step starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StepBase {
    /// Every step restarts from `F_0, D_0` (the reference code: the network learns the whole
    /// displacement).
    #[default]
    Initial,
    /// Every step starts from the previous iterate (`F_{t−1}, D_{t−1}`, detached).
    Previous,
}

/// Scaling of the network input (a detached scalar, so the scale carries no gradient).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InputScaling {
    /// `MaxAbs` for KAN (its splines live on `[−1, 1]`), `None` for the MLP (reference).
    #[default]
    Auto,
    /// Raw gradients (entries of 5–3000 in the reference setting).
    None,
    /// Divide by the root mean square of the entries.
    Rms,
    /// Divide by the largest absolute entry (inputs in `[−1, 1]`).
    MaxAbs,
}

/// Which iterate `solve` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutputChoice {
    /// The last iterate `(F_L, D_L)`.
    #[default]
    Final,
    /// The iterate with the best objective on the design channel over all steps (what the
    /// reference code reports).
    Best,
}

/// Floating-point type of the networks (the rate maths is always `f64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// `f64`.
    F64,
    /// `f32` (half the memory traffic; the injected gradient is rounded to `f32`).
    #[default]
    F32,
}

impl Precision {
    pub(crate) fn dtype(self) -> DType {
        match self {
            Precision::F64 => DType::F64,
            Precision::F32 => DType::F32,
        }
    }
}

/// Hyper-parameters of [`Ggml`] (defaults: the reference code).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GgmlParams {
    /// Embedded network (default KAN).
    pub net: NetKind,
    /// RF chains `M` (default: the number of users `K`).
    pub n_rf: Option<usize>,
    /// Outer steps `L` (default 500).
    pub n_steps: usize,
    /// Adam learning rate of the DPN (default 1e-3).
    pub lr_digital: f64,
    /// Adam learning rate of the APN (default 1.5e-3).
    pub lr_analog: f64,
    /// Variance penalty `β` (default 0.2).
    pub var_weight: f64,
    /// Hidden width of both networks (default 200).
    pub hidden: usize,
    /// KAN layer configuration (efficient-KAN defaults — grid 5, cubic, range `[−1, 1]` — but
    /// without the standalone spline scaler, which spans the same functions and costs 3× the
    /// time per step, and with the hidden layer's input RMS-normalised onto the grid; see
    /// docs/ggml.md).
    pub kan: KanConfig,
    /// Network input (default: accumulated, as the reference).
    pub gradient_input: GradientInput,
    /// Step base point (default: `F_0, D_0`, as the reference).
    pub step_base: StepBase,
    /// Input scaling (default: auto).
    pub input_scaling: InputScaling,
    /// Returned iterate (default: final).
    pub output: OutputChoice,
    /// Network precision (default `f32`: 2–3× faster for the KAN at equal SE, see docs/ggml.md;
    /// the rate maths, gradients and returned precoders are always `f64`).
    pub precision: Precision,
}

impl Default for GgmlParams {
    fn default() -> Self {
        Self {
            net: NetKind::Kan,
            n_rf: None,
            n_steps: 500,
            lr_digital: 1e-3,
            lr_analog: 1.5e-3,
            var_weight: 0.2,
            hidden: 200,
            kan: KanConfig { standalone_spline_scaler: false, hidden_rms_norm: true, ..KanConfig::default() },
            gradient_input: GradientInput::Accumulated,
            step_base: StepBase::Initial,
            input_scaling: InputScaling::Auto,
            output: OutputChoice::Final,
            precision: Precision::F32,
        }
    }
}

impl GgmlParams {
    /// The reference code's MLP variant.
    #[must_use]
    pub fn mlp() -> Self {
        Self { net: NetKind::Mlp, ..Self::default() }
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`KanError::InvalidParameter`] naming the field.
    pub fn check(&self) -> Result<(), KanError> {
        if self.n_steps == 0 {
            return Err(invalid("n_steps", "must be >= 1"));
        }
        if self.hidden == 0 {
            return Err(invalid("hidden", "must be >= 1"));
        }
        for (n, v) in [("lr_digital", self.lr_digital), ("lr_analog", self.lr_analog)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(n, format!("must be finite and > 0, got {v}")));
            }
        }
        if !(self.var_weight.is_finite() && self.var_weight >= 0.0) {
            return Err(invalid("var_weight", format!("must be finite and >= 0, got {}", self.var_weight)));
        }
        if self.n_rf == Some(0) {
            return Err(invalid("n_rf", "must be >= 1"));
        }
        if self.net == NetKind::Kan {
            self.kan.check()?;
        }
        Ok(())
    }

    pub(crate) fn scaling(&self) -> InputScaling {
        match (self.input_scaling, &self.net) {
            (InputScaling::Auto, NetKind::Kan) => InputScaling::MaxAbs,
            (InputScaling::Auto, NetKind::Mlp) => InputScaling::None,
            (s, _) => s,
        }
    }
}

/// The GGML hybrid precoder as a [`Beamformer`] (perfect-CSI loss, spec §2).
///
/// Returns [`Precoder::Hybrid`] (final iterate by default); `Diagnostics::objective_trace` is the
/// per-user SE `Σ_k R_k/K` on the problem's channel, entry 0 at the initialisation and entry `t`
/// after step `t`; the notes give the best-over-steps SE and its step.
#[derive(Clone, Debug)]
pub struct Ggml {
    params: GgmlParams,
    name: String,
}

impl Ggml {
    /// A GGML beamformer; the name is `GGML-KAN` or `GGML-MLP`.
    ///
    /// # Errors
    /// [`KanError::InvalidParameter`] for bad parameters.
    pub fn new(params: GgmlParams) -> Result<Self, KanError> {
        params.check()?;
        let name = match params.net {
            NetKind::Kan => "GGML-KAN",
            NetKind::Mlp => "GGML-MLP",
        }
        .to_string();
        Ok(Self { params, name })
    }

    /// Replaces the display name.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The parameters.
    #[must_use]
    pub fn params(&self) -> &GgmlParams {
        &self.params
    }
}

pub(crate) fn to_solution(out: GgmlOutput, output: OutputChoice, started: std::time::Instant) -> Solution {
    let best = out.se_trace.get(out.best_step).copied().unwrap_or(f64::NAN);
    let last = out.se_trace.last().copied().unwrap_or(f64::NAN);
    let mut notes = out.notes;
    notes.push(format!("best per-user SE {best:.6} at step {} (final {last:.6})", out.best_step));
    let (f, d) = match output {
        OutputChoice::Final => (out.f_final, out.d_final),
        OutputChoice::Best => (out.f_best, out.d_best),
    };
    Solution {
        precoder: Precoder::Hybrid { f, d },
        diagnostics: Diagnostics {
            n_iterations: out.n_steps_done,
            converged: false,
            objective_trace: out.se_trace,
            elapsed: started.elapsed(),
            notes,
        },
    }
}

pub(crate) fn method_error(name: &str, e: KanError) -> CoreError {
    CoreError::Method { method: name.to_string(), source: Box::new(e) }
}

impl Beamformer for Ggml {
    fn name(&self) -> &str {
        &self.name
    }

    fn solve(&mut self, problem: &Problem, rng: &mut dyn RngCore) -> Result<Solution, CoreError> {
        let started = std::time::Instant::now();
        let setup = HybridSetup::from_problem(problem, self.params.n_rf).map_err(|e| method_error(&self.name, e))?;
        let out = run_ggml(&setup, Objective::Rate { var_weight: self.params.var_weight }, &self.params, rng)
            .map_err(|e| method_error(&self.name, e))?;
        Ok(to_solution(out, self.params.output, started))
    }
}
