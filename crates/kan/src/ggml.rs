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

use beamlab_candle_bridge::{ComplexTensor, VarAdam, wirtinger_surrogate};
use beamlab_core::{Beamformer, CoreError, Diagnostics, Precoder, Problem, Solution};
use beamlab_linalg_ops::{c64, hybrid_rate_gradient, hybrid_user_rates, inverse};
use candle_core::{DType, Device, Tensor, Var};
use ndarray::Array2;
use rand::{Rng, RngCore};
use serde::Deserialize;

use crate::KanError;
use crate::layer::KanConfig;
use crate::net::{GradientNet, KanNet, Mlp, NetKind};

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
    fn dtype(self) -> DType {
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
        let bad = |m: String| Err(KanError::InvalidParameter(m));
        if self.n_steps == 0 {
            return bad("n_steps must be >= 1".into());
        }
        if self.hidden == 0 {
            return bad("hidden must be >= 1".into());
        }
        for (n, v) in [("lr_digital", self.lr_digital), ("lr_analog", self.lr_analog)] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{n} must be finite and > 0, got {v}"));
            }
        }
        if !(self.var_weight.is_finite() && self.var_weight >= 0.0) {
            return bad(format!("var_weight must be finite and >= 0, got {}", self.var_weight));
        }
        if self.n_rf == Some(0) {
            return bad("n_rf must be >= 1".into());
        }
        if self.net == NetKind::Kan {
            self.kan.check()?;
        }
        Ok(())
    }

    fn scaling(&self) -> InputScaling {
        match (self.input_scaling, &self.net) {
            (InputScaling::Auto, NetKind::Kan) => InputScaling::MaxAbs,
            (InputScaling::Auto, NetKind::Mlp) => InputScaling::None,
            (s, _) => s,
        }
    }
}

/// The loss GGML minimises, as a function of the per-user rates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Objective {
    /// `L = −Σ_k α_k R_k + β Var(R)` (GGML).
    Rate {
        /// `β`.
        var_weight: f64,
    },
    /// `L = Π_k e_k^{α_k} + β Var(e)`, `e_k = 2^{−R_k} = 1/(1 + SINR_k)` the MMSE of user `k` on
    /// the (worst-case) design channel (GGML-ImCSI, paper eqs. (32)–(34)).
    WorstCaseMmse {
        /// `β`.
        var_weight: f64,
    },
}

fn unbiased_var(v: &[f64]) -> (f64, f64) {
    let n = v.len();
    let mean = v.iter().sum::<f64>() / n as f64;
    let var = if n > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
    (mean, var)
}

impl Objective {
    /// The loss value and `∂L/∂R_k` for rates `rates` and weights `alpha` (summing to 1).
    #[must_use]
    pub fn value_and_rate_derivative(&self, rates: &[f64], alpha: &[f64]) -> (f64, Vec<f64>) {
        let n = rates.len();
        match *self {
            Objective::Rate { var_weight } => {
                let (mean, var) = unbiased_var(rates);
                let value = -rates.iter().zip(alpha).map(|(r, a)| r * a).sum::<f64>() + var_weight * var;
                let d = rates
                    .iter()
                    .zip(alpha)
                    .map(|(r, a)| -a + if n > 1 { var_weight * 2.0 * (r - mean) / (n - 1) as f64 } else { 0.0 })
                    .collect();
                (value, d)
            }
            Objective::WorstCaseMmse { var_weight } => {
                let ln2 = std::f64::consts::LN_2;
                let e: Vec<f64> = rates.iter().map(|r| (-r * ln2).exp()).collect();
                let prod = e.iter().zip(alpha).map(|(ek, a)| ek.powf(*a)).product::<f64>();
                let (mean, var) = unbiased_var(&e);
                let value = prod + var_weight * var;
                let d = e
                    .iter()
                    .zip(alpha)
                    .map(|(ek, a)| {
                        let dv = if n > 1 { var_weight * 2.0 * (ek - mean) / (n - 1) as f64 } else { 0.0 };
                        // ∂e_k/∂R_k = −ln 2 · e_k; ∂Π/∂e_k = α_k Π / e_k.
                        -ln2 * (a * prod + dv * ek)
                    })
                    .collect();
                (value, d)
            }
        }
    }
}

/// Everything one GGML run produces.
#[derive(Clone, Debug)]
pub struct GgmlOutput {
    /// Final analog precoder `F_L: [N × M]`.
    pub f_final: Array2<c64>,
    /// Final digital precoder `D_L: [M × K]`.
    pub d_final: Array2<c64>,
    /// Best iterate's analog precoder (best objective on the design channel).
    pub f_best: Array2<c64>,
    /// Best iterate's digital precoder.
    pub d_best: Array2<c64>,
    /// Step of the best iterate (0 = the initialisation).
    pub best_step: usize,
    /// Per-user SE `Σ_k R_k / K` on the design channel: entry 0 at `(F_0, D_0)`, entry `t` after
    /// step `t`.
    pub se_trace: Vec<f64>,
    /// The same on [`HybridSetup::score_channel`] when one is given (experiments only).
    pub score_trace: Option<Vec<f64>>,
    /// Loss after each step (entry 0 at the initialisation).
    pub loss_trace: Vec<f64>,
    /// Steps completed (less than `n_steps` only after a non-finite iterate, which stops the run).
    pub n_steps_done: usize,
    /// Remarks (a non-finite stop, the input-scaling statistics).
    pub notes: Vec<String>,
}

/// Random-phase `F_0: [N × M]`, `|F_ij| = 1`.
pub fn random_phase_analog(n_tx: usize, n_rf: usize, rng: &mut dyn RngCore) -> Array2<c64> {
    Array2::from_shape_fn((n_tx, n_rf), |_| c64::from_polar(1.0, rng.random_range(0.0..std::f64::consts::TAU)))
}

/// Zero-forcing digital precoder on the effective channel `H F: [K × M]`,
/// `D = (HF)^H (HF (HF)^H)^{-1}`, scaled to `‖F D‖_F² = power`.
///
/// # Errors
/// [`KanError::Linalg`] when `HF (HF)^H` is singular; [`KanError::Numerical`] for a zero result.
pub fn zf_digital(h_stacked: &Array2<c64>, f: &Array2<c64>, power: f64) -> Result<Array2<c64>, KanError> {
    let hf = h_stacked.dot(f);
    let hfh = hf.t().mapv(|z| z.conj());
    let d = hfh.dot(&inverse(hf.dot(&hfh).view())?);
    let w = f.dot(&d);
    let n2: f64 = w.iter().map(|z| z.norm_sqr()).sum();
    if !(n2.is_finite() && n2 > 0.0) {
        return Err(KanError::Numerical("zero-forcing init has zero or non-finite power".into()));
    }
    Ok(d.mapv(|z| z * (power / n2).sqrt()))
}

/// Validated inputs of one GGML run.
#[derive(Clone, Debug)]
pub struct HybridSetup {
    /// Design channel rows `h_k: [1 × N]`.
    pub h: Vec<Array2<c64>>,
    /// Noise powers.
    pub noise: Vec<f64>,
    /// Power budget `P`.
    pub power: f64,
    /// Normalised user weights `α_k` (sum 1).
    pub alpha: Vec<f64>,
    /// RF chains `M`.
    pub n_rf: usize,
    /// A channel on which every iterate is additionally scored (for convergence experiments with
    /// imperfect CSI, where it is the true channel). Never used by the method's decisions and
    /// never set by a [`Beamformer`].
    pub score_channel: Option<Vec<Array2<c64>>>,
}

impl HybridSetup {
    /// Checks a problem for hybrid MISO precoding with `n_rf` RF chains (default `K`).
    ///
    /// # Errors
    /// [`KanError::InvalidProblem`] for non-MISO users, zero weights or a non-finite channel;
    /// [`KanError::TooFewRfChains`] / [`KanError::TooManyRfChains`] unless `K ≤ M ≤ N`.
    pub fn from_problem(problem: &Problem, n_rf: Option<usize>) -> Result<Self, KanError> {
        problem.validate()?;
        let h = problem.channel.blocks().to_vec();
        if h.iter().any(|b| b.nrows() != 1) {
            return Err(KanError::InvalidProblem("GGML handles single-antenna users only".into()));
        }
        if h.iter().flat_map(|b| b.iter()).any(|z| !(z.re.is_finite() && z.im.is_finite())) {
            return Err(KanError::InvalidProblem("non-finite channel entry".into()));
        }
        let (n_users, n_tx) = (problem.n_users(), problem.n_tx());
        let n_rf = n_rf.unwrap_or(n_users);
        if n_rf < n_users {
            return Err(KanError::TooFewRfChains { n_rf, n_users });
        }
        if n_rf > n_tx {
            return Err(KanError::TooManyRfChains { n_rf, n_tx });
        }
        let total: f64 = problem.weights.iter().sum();
        if !(total > 0.0) {
            return Err(KanError::InvalidProblem("user weights sum to zero".into()));
        }
        Ok(Self {
            h,
            noise: problem.noise_power.clone(),
            power: problem.power_budget,
            alpha: problem.weights.iter().map(|w| w / total).collect(),
            n_rf,
            score_channel: None,
        })
    }
}

fn build_net(params: &GgmlParams, n: usize, seed: u64) -> Result<Box<dyn GradientNet>, KanError> {
    let dt = params.precision.dtype();
    Ok(match params.net {
        NetKind::Kan => Box::new(KanNet::new(&[n, params.hidden, n], &params.kan, seed, dt)?),
        NetKind::Mlp => Box::new(Mlp::new(n, params.hidden, n, seed, dt)?),
    })
}

/// `[Re | Im]` flattening along columns, row-major: row `i` holds `Re a[i, :]` then `Im a[i, :]`.
fn flatten(a: &Array2<c64>, scale: f64, out: &mut Vec<f64>) {
    out.clear();
    for row in a.rows() {
        out.extend(row.iter().map(|z| z.re * scale));
        out.extend(row.iter().map(|z| z.im * scale));
    }
}

fn input_scale(a: &Array2<c64>, s: InputScaling) -> f64 {
    let m = match s {
        InputScaling::None | InputScaling::Auto => return 1.0,
        InputScaling::Rms => (a.iter().map(|z| z.norm_sqr()).sum::<f64>() / (2 * a.len()) as f64).sqrt(),
        InputScaling::MaxAbs => a.iter().map(|z| z.re.abs().max(z.im.abs())).fold(0.0, f64::max),
    };
    if m > 0.0 && m.is_finite() { 1.0 / m } else { 1.0 }
}

/// A base point as a candle leaf (so its gradient can be read for the accumulated input).
fn leaf(a: &Array2<c64>, dt: DType) -> Result<(Var, Var), KanError> {
    let c = ComplexTensor::from_array(a, &Device::Cpu)?;
    Ok((Var::from_tensor(&c.re.to_dtype(dt)?)?, Var::from_tensor(&c.im.to_dtype(dt)?)?))
}

fn leaf_grad(grads: &candle_core::backprop::GradStore, re: &Var, im: &Var) -> Result<Option<Array2<c64>>, KanError> {
    match (grads.get(re.as_tensor()), grads.get(im.as_tensor())) {
        (Some(gr), Some(gi)) => Ok(Some(ComplexTensor::new(gr.clone(), gi.clone())?.to_array()?)),
        _ => Ok(None),
    }
}

/// Network update `Δ` as a complex `[rows × cols]` tensor pair, from input `x` (`[1 × 2 rows cols]`).
fn net_update(
    net: &dyn GradientNet,
    x: &[f64],
    rows: usize,
    cols: usize,
    dt: DType,
) -> Result<ComplexTensor, KanError> {
    let xt = Tensor::from_slice(x, (1, x.len()), &Device::Cpu)?.to_dtype(dt)?;
    let y = net.forward(&xt)?.reshape((rows, 2 * cols))?;
    Ok(ComplexTensor::new(y.narrow(1, 0, cols)?, y.narrow(1, cols, cols)?)?)
}

fn coverage_note(net: &dyn GradientNet, which: &str, x: &[f64], notes: &mut Vec<String>) -> Result<(), KanError> {
    let xt = Tensor::from_slice(x, (1, x.len()), &Device::Cpu)?;
    let xt = xt.to_dtype(net.trainable_vars().first().map_or(DType::F64, |v| v.dtype()))?;
    if let Some(c) = net.spline_coverage(&xt)? {
        let shown: Vec<String> = c.iter().map(|v| format!("{v:.3}")).collect();
        notes.push(format!("{which} final-step spline coverage per layer: [{}]", shown.join(", ")));
    }
    Ok(())
}

/// `F_t = P(F_b + APN(x))` in the graph (`F_b` given as `(re, im)` leaves `[N × M]`).
fn analog_forward(
    apn: &dyn GradientNet,
    x: &[f64],
    fb_re: &Var,
    fb_im: &Var,
    dt: DType,
) -> Result<ComplexTensor, KanError> {
    let (n_tx, n_rf) = fb_re.dims2()?;
    let delta = net_update(apn, x, n_tx, n_rf, dt)?;
    let f_raw = ComplexTensor::new(fb_re.as_tensor().clone(), fb_im.as_tensor().clone())?.add(&delta)?;
    let mag = (f_raw.re.sqr()? + f_raw.im.sqr()?)?.sqrt()?;
    Ok(ComplexTensor::new(f_raw.re.div(&mag)?, f_raw.im.div(&mag)?)?)
}

/// `D_t = √P D̃/‖F_t D̃‖_F`, `D̃ = D_b + DPN(x)`, and `W_t = F_t D_t`, in the graph.
fn digital_forward(
    dpn: &dyn GradientNet,
    x: &[f64],
    db_re: &Var,
    db_im: &Var,
    f_t: &ComplexTensor,
    power_sqrt: f64,
    dt: DType,
) -> Result<(ComplexTensor, ComplexTensor), KanError> {
    let (n_rf, n_users) = db_re.dims2()?;
    let delta = net_update(dpn, x, n_rf, n_users, dt)?;
    let d_raw = ComplexTensor::new(db_re.as_tensor().clone(), db_im.as_tensor().clone())?.add(&delta)?;
    let w_raw = f_t.matmul(&d_raw)?;
    let inv = w_raw.norm_sqr()?.sqrt()?.recip()?.affine(power_sqrt, 0.0)?;
    Ok((d_raw.scale(&inv)?, w_raw.scale(&inv)?))
}

/// Runs GGML on a validated setup. `objective` is the loss; the networks' seeds and `F_0` are
/// drawn from `rng`.
///
/// # Errors
/// [`KanError::InvalidParameter`] for bad parameters; linear-algebra and candle errors. A
/// non-finite iterate is not an error: the run stops and says so in [`GgmlOutput::notes`].
pub fn run_ggml(
    setup: &HybridSetup,
    objective: Objective,
    params: &GgmlParams,
    rng: &mut dyn RngCore,
) -> Result<GgmlOutput, KanError> {
    params.check()?;
    let _span = tracing::debug_span!("ggml", n_steps = params.n_steps, net = ?params.net).entered();
    let (h, noise, alpha) = (&setup.h, &setup.noise, &setup.alpha);
    let n_users = h.len();
    let n_tx = h[0].ncols();
    let n_rf = setup.n_rf;
    let dt = params.precision.dtype();
    let hs = beamlab_linalg_ops::stack_blocks(h)?;
    let f0 = random_phase_analog(n_tx, n_rf, rng);
    let d0 = zf_digital(&hs, &f0, setup.power)?;
    let apn = build_net(params, 2 * n_tx * n_rf, rng.next_u64())?;
    let dpn = build_net(params, 2 * n_rf * n_users, rng.next_u64())?;
    let mut opt_a = VarAdam::new(apn.trainable_vars(), params.lr_analog)?;
    let mut opt_d = VarAdam::new(dpn.trainable_vars(), params.lr_digital)?;
    let scaling = params.scaling();
    let accumulate = params.gradient_input == GradientInput::Accumulated;
    let eval = |f: &Array2<c64>, d: &Array2<c64>| -> Result<(f64, f64), KanError> {
        let r = hybrid_user_rates(h, f.view(), d.view(), noise)?;
        let rv = r.to_vec();
        Ok((rv.iter().sum::<f64>() / n_users as f64, objective.value_and_rate_derivative(&rv, alpha).0))
    };
    // ∇ of the loss in PyTorch's convention (2 ∂L/∂X*) for X = F and X = D.
    let grads_at = |f: &Array2<c64>, d: &Array2<c64>| -> Result<(Array2<c64>, Array2<c64>), KanError> {
        let r = hybrid_user_rates(h, f.view(), d.view(), noise)?;
        let (_, c) = objective.value_and_rate_derivative(r.as_slice().unwrap_or(&[]), alpha);
        let (_, gf, gd) = hybrid_rate_gradient(h, f.view(), d.view(), noise, &c)?;
        Ok((gf.mapv(|z| z * 2.0), gd.mapv(|z| z * 2.0)))
    };
    let score = |f: &Array2<c64>, d: &Array2<c64>| -> Result<Option<f64>, KanError> {
        match &setup.score_channel {
            None => Ok(None),
            Some(hs) => Ok(Some(hybrid_user_rates(hs, f.view(), d.view(), noise)?.sum() / n_users as f64)),
        }
    };
    let mut score_trace: Option<Vec<f64>> = score(&f0, &d0)?.map(|v| vec![v]);
    let (se0, loss0) = eval(&f0, &d0)?;
    let mut se_trace = vec![se0];
    let mut loss_trace = vec![loss0];
    let (mut f_prev, mut d_prev) = (f0.clone(), d0.clone());
    let (mut f_best, mut d_best, mut best_se, mut best_step) = (f0.clone(), d0.clone(), se0, 0);
    let mut acc_f = Array2::<c64>::zeros((n_tx, n_rf));
    let mut acc_d = Array2::<c64>::zeros((n_rf, n_users));
    let mut xbuf = Vec::new();
    let mut notes = Vec::new();
    let mut n_done = 0;
    let power_sqrt = setup.power.sqrt();
    for t in 1..=params.n_steps {
        let (fb, db) = match params.step_base {
            StepBase::Initial => (&f0, &d0),
            StepBase::Previous => (&f_prev, &d_prev),
        };
        // (a) Analog step.
        let (gf, _) = grads_at(fb, &d_prev)?;
        if accumulate {
            acc_f += &gf;
        } else {
            acc_f = gf;
        }
        flatten(&acc_f, input_scale(&acc_f, scaling), &mut xbuf);
        if t == params.n_steps {
            coverage_note(apn.as_ref(), "APN", &xbuf, &mut notes)?;
        }
        let (fb_re, fb_im) = leaf(fb, dt)?;
        let f_t = analog_forward(apn.as_ref(), &xbuf, &fb_re, &fb_im, dt)?;
        // The iterate leaves the graph in f64, re-projected (exact |F_ij| = 1 also for f32 nets).
        let f_nd = f_t.to_array()?.mapv(|z| z / z.norm());
        if f_nd.iter().any(|z| !(z.re.is_finite() && z.im.is_finite())) {
            notes.push(format!("non-finite analog iterate at step {t}; stopped"));
            break;
        }
        // (b) Digital step.
        let (_, gd) = grads_at(&f_nd, db)?;
        if accumulate {
            acc_d += &gd;
        } else {
            acc_d = gd;
        }
        flatten(&acc_d, input_scale(&acc_d, scaling), &mut xbuf);
        if t == params.n_steps {
            coverage_note(dpn.as_ref(), "DPN", &xbuf, &mut notes)?;
        }
        let (db_re, db_im) = leaf(db, dt)?;
        let (d_t, w_t) = digital_forward(dpn.as_ref(), &xbuf, &db_re, &db_im, &f_t, power_sqrt, dt)?;
        let mut d_nd = d_t.to_array()?;
        let p_now = beamlab_linalg_ops::total_power(f_nd.dot(&d_nd).view());
        d_nd.mapv_inplace(|z| z * (setup.power / p_now).sqrt());
        if d_nd.iter().any(|z| !(z.re.is_finite() && z.im.is_finite())) {
            notes.push(format!("non-finite digital iterate at step {t}; stopped"));
            break;
        }
        // (c) Loss at (F_t, D_t), its analytic gradient injected at W_t.
        let w_nd = f_nd.dot(&d_nd);
        let r = beamlab_linalg_ops::user_rates(h, w_nd.view(), noise)?;
        let (loss, coeffs) = objective.value_and_rate_derivative(r.as_slice().unwrap_or(&[]), alpha);
        let (_, g_w) = beamlab_linalg_ops::rate_gradient(h, w_nd.view(), noise, &coeffs)?;
        let grads = wirtinger_surrogate(&w_t, &g_w)?.backward()?;
        opt_a.step(&grads)?;
        opt_d.step(&grads)?;
        if accumulate {
            if let Some(g) = leaf_grad(&grads, &fb_re, &fb_im)? {
                acc_f.scaled_add(c64::new(2.0, 0.0), &g);
            }
            if let Some(g) = leaf_grad(&grads, &db_re, &db_im)? {
                acc_d.scaled_add(c64::new(2.0, 0.0), &g);
            }
        }
        let se = r.sum() / n_users as f64;
        se_trace.push(se);
        loss_trace.push(loss);
        if let (Some(tr), Some(v)) = (score_trace.as_mut(), score(&f_nd, &d_nd)?) {
            tr.push(v);
        }
        if se > best_se {
            best_se = se;
            best_step = t;
            f_best.assign(&f_nd);
            d_best.assign(&d_nd);
        }
        f_prev = f_nd;
        d_prev = d_nd;
        n_done = t;
    }
    Ok(GgmlOutput {
        f_final: f_prev,
        d_final: d_prev,
        f_best,
        d_best,
        best_step,
        se_trace,
        score_trace,
        loss_trace,
        n_steps_done: n_done,
        notes,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use beamlab_channel::{SvParams, saleh_valenzuela};
    use beamlab_core::ErrorStats;
    use beamlab_linalg_ops::PenalisedLoss;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn problem(n_tx: usize, n_users: usize, seed: u64) -> Problem {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = saleh_valenzuela(&SvParams::default(), n_users, n_tx, &mut rng).unwrap();
        Problem::new(h, 0.1, 1.0).unwrap()
    }

    fn small(net: NetKind) -> GgmlParams {
        GgmlParams { net, n_steps: 50, hidden: 32, ..GgmlParams::default() }
    }

    #[test]
    fn constraints_hold_and_the_objective_improves_over_the_zf_init() {
        for net in [NetKind::Mlp, NetKind::Kan] {
            for seed in 0..2 {
                let p = problem(16, 2, seed);
                let mut g = Ggml::new(small(net)).unwrap();
                let sol = g.solve(&p, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
                let Precoder::Hybrid { f, d } = &sol.precoder else { panic!("not hybrid") };
                assert_eq!(f.dim(), (16, 2));
                assert_eq!(d.dim(), (2, 2));
                assert!(f.iter().all(|z| (z.norm() - 1.0).abs() < 1e-12), "unit modulus violated");
                let power = sol.precoder.total_power().unwrap();
                assert!((power - 1.0).abs() < 1e-10, "power {power}");
                let tr = &sol.diagnostics.objective_trace;
                assert_eq!(tr.len(), 51);
                let rates = sol.precoder.rates(&p.channel, &p.noise_power).unwrap();
                assert!((rates.sum() / 2.0 - tr[50]).abs() < 1e-9, "trace does not match the returned iterate");
                assert!(
                    tr[50] > tr[0] + 0.5,
                    "{net:?} seed {seed}: no improvement over ZF init: {} -> {}",
                    tr[0],
                    tr[50]
                );
            }
        }
    }

    #[test]
    fn same_seed_same_output_and_options_run() {
        let p = problem(8, 2, 3);
        let run = |params: GgmlParams, seed: u64| {
            let mut g = Ggml::new(params).unwrap();
            g.solve(&p, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap()
        };
        for params in [
            GgmlParams { n_steps: 10, ..small(NetKind::Kan) },
            GgmlParams { n_steps: 10, precision: Precision::F64, ..small(NetKind::Mlp) },
            GgmlParams {
                n_steps: 10,
                gradient_input: GradientInput::Fresh,
                step_base: StepBase::Previous,
                input_scaling: InputScaling::Rms,
                output: OutputChoice::Best,
                n_rf: Some(3),
                ..small(NetKind::Kan)
            },
        ] {
            let a = run(params.clone(), 1);
            assert_eq!(a.precoder, run(params.clone(), 1).precoder, "not deterministic: {params:?}");
            assert_ne!(a.precoder, run(params.clone(), 2).precoder, "seed ignored");
            if params.output == OutputChoice::Best {
                let tr = &a.diagnostics.objective_trace;
                let best = tr.iter().copied().fold(f64::MIN, f64::max);
                let r = a.precoder.rates(&p.channel, &p.noise_power).unwrap().sum() / 2.0;
                assert!((r - best).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let p = problem(8, 3, 1);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let err = |params: GgmlParams, p: &Problem, rng: &mut ChaCha8Rng| {
            let e = Ggml::new(params).unwrap().solve(p, rng).unwrap_err();
            let CoreError::Method { source, .. } = e else { panic!("wrong error kind {e}") };
            source.downcast::<KanError>().map(|b| *b).expect("not a KanError")
        };
        let few = GgmlParams { n_rf: Some(2), ..small(NetKind::Mlp) };
        assert!(matches!(err(few, &p, &mut rng), KanError::TooFewRfChains { n_rf: 2, n_users: 3 }));
        let many = GgmlParams { n_rf: Some(9), ..small(NetKind::Mlp) };
        assert!(matches!(err(many, &p, &mut rng), KanError::TooManyRfChains { n_rf: 9, n_tx: 8 }));
        let mut nan = p.clone();
        nan.noise_power[0] = f64::NAN;
        assert!(matches!(err(small(NetKind::Mlp), &nan, &mut rng), KanError::Core(_)));
        let mut zero_w = p.clone();
        zero_w.weights = vec![0.0; 3];
        assert!(matches!(err(small(NetKind::Mlp), &zero_w, &mut rng), KanError::InvalidProblem(_)));
        let mut neg = p.clone();
        neg.error_stats = ErrorStats::Relative { delta: -0.1 };
        assert!(matches!(err(small(NetKind::Mlp), &neg, &mut rng), KanError::Core(_)));
        assert!(Ggml::new(GgmlParams { n_steps: 0, ..GgmlParams::default() }).is_err());
        assert!(Ggml::new(GgmlParams { lr_analog: -1.0, ..GgmlParams::default() }).is_err());
        // A non-finite channel cannot even be built.
        let bad = beamlab_core::Channel::new(vec![ndarray::array![[c64::new(f64::NAN, 0.0), c64::new(1.0, 0.0)]]]);
        assert!(bad.is_err());
    }

    /// The network-parameter gradient GGML's optimisers receive (analytic `∂L/∂W*` injected at
    /// `W_t`, candle back-propagating through the nets, the unit-modulus projection and the power
    /// normalisation) equals central finite differences of `L(F_t(θ), D_t(θ))` (f64).
    #[test]
    fn injected_step_gradient_matches_finite_differences() {
        let p = problem(6, 2, 9);
        let setup = HybridSetup::from_problem(&p, None).unwrap();
        let (h, noise, alpha) = (&setup.h, &setup.noise, &setup.alpha);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let f0 = random_phase_analog(6, 2, &mut rng);
        let d0 = zf_digital(&beamlab_linalg_ops::stack_blocks(h).unwrap(), &f0, 1.0).unwrap();
        let obj = Objective::Rate { var_weight: 0.2 };
        let dt = DType::F64;
        for net in [NetKind::Mlp, NetKind::Kan] {
            let params = GgmlParams { net, hidden: 5, precision: Precision::F64, ..GgmlParams::default() };
            let apn = build_net(&params, 24, 1).unwrap();
            let dpn = build_net(&params, 8, 2).unwrap();
            let x_f: Vec<f64> = (0..24).map(|i| ((i * 7 % 11) as f64 / 11.0 - 0.5) * 1.5).collect();
            let x_d: Vec<f64> = (0..8).map(|i| ((i * 5 % 7) as f64 / 7.0 - 0.5) * 1.5).collect();
            let (fb_re, fb_im) = leaf(&f0, dt).unwrap();
            let (db_re, db_im) = leaf(&d0, dt).unwrap();
            let loss = || {
                let f_t = analog_forward(apn.as_ref(), &x_f, &fb_re, &fb_im, dt).unwrap();
                let (_, w_t) = digital_forward(dpn.as_ref(), &x_d, &db_re, &db_im, &f_t, 1.0, dt).unwrap();
                let w = w_t.to_array().unwrap();
                let r = beamlab_linalg_ops::user_rates(h, w.view(), noise).unwrap();
                (obj.value_and_rate_derivative(r.as_slice().unwrap(), alpha).0, w_t, w)
            };
            let (_, w_t, w) = loss();
            let r = beamlab_linalg_ops::user_rates(h, w.view(), noise).unwrap();
            let (_, c) = obj.value_and_rate_derivative(r.as_slice().unwrap(), alpha);
            let (_, g_w) = beamlab_linalg_ops::rate_gradient(h, w.view(), noise, &c).unwrap();
            let grads = wirtinger_surrogate(&w_t, &g_w).unwrap().backward().unwrap();
            let mut checked = 0;
            for var in apn.trainable_vars().into_iter().chain(dpn.trainable_vars()) {
                let Some(g) = grads.get(var.as_tensor()) else { continue };
                let g: Vec<f64> = g.flatten_all().unwrap().to_vec1().unwrap();
                let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
                for idx in [0, base.len() / 3, base.len() - 1] {
                    let set = |delta: f64| {
                        let mut b = base.clone();
                        b[idx] += delta;
                        var.set(&Tensor::from_vec(b, var.shape(), &Device::Cpu).unwrap()).unwrap();
                        loss().0
                    };
                    let e = 1e-6;
                    let fd = (set(e) - set(-e)) / (2.0 * e);
                    set(0.0);
                    assert!((fd - g[idx]).abs() < 1e-6 * (1.0 + fd.abs()), "{net:?}: fd {fd} vs injected {}", g[idx]);
                    checked += 1;
                }
            }
            assert!(checked >= 12, "only {checked} gradient entries checked");
        }
    }

    #[test]
    fn params_parse_from_toml() {
        let p: GgmlParams = toml::from_str(
            "net = \"mlp\"\nn_rf = 6\nn_steps = 300\ngradient_input = \"fresh\"\nstep_base = \"previous\"\n\
             input_scaling = \"max_abs\"\noutput = \"best\"\nprecision = \"f64\"\n[kan]\ngrid_size = 8\n",
        )
        .unwrap();
        assert_eq!(p.net, NetKind::Mlp);
        assert_eq!((p.n_rf, p.n_steps, p.kan.grid_size, p.kan.spline_order), (Some(6), 300, 8, 3));
        assert_eq!(p.input_scaling, InputScaling::MaxAbs);
        assert_eq!(p.output, OutputChoice::Best);
        assert_eq!(p.precision, Precision::F64);
        assert_eq!(toml::from_str::<GgmlParams>("").unwrap(), GgmlParams::default());
        assert!(toml::from_str::<GgmlParams>("n_step = 3\n").is_err());
        assert!(toml::from_str::<GgmlParams>("[kan]\ngrid = 3\n").is_err());
    }

    #[test]
    fn objectives_match_the_shared_loss_and_finite_differences() {
        let rates = [3.1, 5.2, 4.4, 6.0];
        let alpha = [0.25; 4];
        let (v, d) = Objective::Rate { var_weight: 0.2 }.value_and_rate_derivative(&rates, &alpha);
        let (v2, d2) = PenalisedLoss::ggml(4).value_and_rate_derivative(&rates);
        assert!((v - v2).abs() < 1e-12);
        for (a, b) in d.iter().zip(&d2) {
            assert!((a - b).abs() < 1e-12);
        }
        let alpha = [0.1, 0.2, 0.3, 0.4];
        for obj in [Objective::Rate { var_weight: 0.3 }, Objective::WorstCaseMmse { var_weight: 0.2 }] {
            let (_, d) = obj.value_and_rate_derivative(&rates, &alpha);
            for k in 0..4 {
                let e = 1e-6;
                let mut p = rates;
                p[k] += e;
                let mut m = rates;
                m[k] -= e;
                let fd = (obj.value_and_rate_derivative(&p, &alpha).0 - obj.value_and_rate_derivative(&m, &alpha).0)
                    / (2.0 * e);
                assert!((fd - d[k]).abs() < 1e-8, "{obj:?} k={k}: fd {fd} vs {}", d[k]);
            }
        }
        // Worst-case MMSE value: Π e_k^α_k with e_k = 2^-R_k.
        let (v, _) = Objective::WorstCaseMmse { var_weight: 0.0 }.value_and_rate_derivative(&rates, &alpha);
        let expect = 2f64.powf(-rates.iter().zip(&alpha).map(|(r, a)| r * a).sum::<f64>());
        assert!((v - expect).abs() < 1e-14);
    }
}
