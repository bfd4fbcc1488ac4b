//! Training of U-G-HBF-GCN (spec §5): Lagrangian with per-group duals, primal–dual steps,
//! AutoClip, the annealing outage approximation (51)-(52) or the quantile alternative (53), the
//! convergence metric (54) with step decay and early stopping, and a non-finite guard.
//!
//! Lagrangian of a batch `B` (instances in constraint groups `D_g`):
//! `L = (1/|B|) Σ_i P_i / P_max + Σ_g μ_g ĝ_g`, with `P_i = Σ_k p_ik` the projected power and
//! `d_ik = 10 log10(SINR_ik / γ_ik)` on the true channel:
//!
//! - annealing (51): `ĝ_g = (1 − ε) − mean_{(i,k) ∈ D_g} σ(κ_g d_ik)`, and after each step (52)
//!   `κ_g ← (1 − η_κ) κ_g + η_κ min(κ_max, c / [−q̂_ε(d)]_+)`;
//! - quantile (53): `ĝ_g = −q̂_ε(d)`, the linearly interpolated empirical `ε`-quantile.
//!
//! Primal step: AdamW on `∂L/∂θ` (through [`backward`] and the network) after
//! AutoClip (the gradient norm is clipped to the `clip_percentile`-th percentile of all norms
//! seen so far). Dual step: `μ_g ← clip(μ_g + η_μ δ_g, μ_min, μ_max)` (`μ_min = 0` unless
//! [`ConstraintForm::Equality`]) with `δ_g = ô_g − ε`, the exact empirical outage of the batch, for
//! the annealing loss and `δ_g = ĝ_g = −q̂_ε(d)` for the quantile loss (docs/gnn-unroll.md,
//! "Primal–dual schedule"). Instances whose forward pass
//! fails (infeasible virtual problem) or yields non-finite values are masked (zero gradient). A step
//! whose gradient is non-finite is skipped, and a step that leaves a non-finite parameter is rolled
//! back, so training never produces non-finite parameters.
//!
//! Validation (54): `V = mean power + μ̄ Σ_g [ô_g − ε]_+` with the exact empirical outage `ô_g`;
//! when `V` sets no new minimum for `decay_patience` validations the primal learning rate is
//! multiplied by `decay_factor` (the dual step stays), after `stop_patience` training stops; the
//! best parameters are restored.
//!
//! Own additions, off by default (docs/gnn-unroll.md, "Own additions"):
//! `TrainParams::param_averaging = Some(β)` validates, early-stops and restores the running
//! average `θ̄ ← βθ̄ + (1 − β)θ` of the parameters while training continues from `θ`;
//! [`ConstraintForm::Equality`] lets the duals of over-fulfilled groups go below 0 (the outage
//! constraint treated as the equality it is at the optimum).
//!
//! Systems ([`System`]): the loop runs on [`Instance`]s (Tables 2–3) or on statistical-CSI
//! systems [`StatInstance`] (Table 4, [`Trainer::statistical`]): the analog network sees the
//! statistical CSI and drives the selection on `R̂`, each sample's baseband problem uses the same
//! coefficients (U-G-HBF-GCN) or those of a second network on the sample's instantaneous CSI
//! (U-G-HBF-2GCN). A batch's samples are flattened in order (an instance is its own single
//! sample), so `B` above runs over samples; each sample's coefficient gradient goes to the network
//! output its baseband problem used, and `∂L/∂A*` summed over a system's samples goes through the
//! straight-through selection gradient to the analog coefficients.

use beamlab_candle_bridge::candle_core::{Tensor, Var};
use beamlab_candle_bridge::candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use beamlab_candle_bridge::{all_finite, load_checkpoint, restore, save_checkpoint, snapshot};
use ndarray::Array2;
use rand::Rng;
use rand::seq::SliceRandom;

use crate::Error;
use crate::data::Instance;
use crate::greedy::{GreedyStep, snr_init};
use crate::model::{
    Gcn, GcnConfig, N_COEFFS, build, coefficients, fit_normalisation, fit_stat_normalisation, stat_coefficients,
};
use crate::statistical::StatInstance;
use crate::unroll::{
    Architecture, UnrollSettings, UnrolledOutput, backward, evaluate_analog, forward_arch, select_cov,
    straight_through_gradient, straight_through_gradient_cov,
};
use beamlab_linalg_ops::c64;
use rayon::prelude::*;

/// The outage approximation of the constraint term.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConstraintLoss {
    /// Annealing sigmoid approximation (51) with adaptive smoothing (52).
    Annealing {
        /// Initial `κ` (per dB).
        kappa_init: f64,
        /// Smoothing rate `η_κ`.
        eta_kappa: f64,
        /// Upper bound `κ_max`.
        kappa_max: f64,
        /// Scale `c` of the adaptive target `c / [−q̂_ε(d)]_+`.
        scale: f64,
    },
    /// Empirical-quantile constraint (53).
    Quantile,
}

impl Default for ConstraintLoss {
    fn default() -> Self {
        Self::Annealing { kappa_init: 1.0, eta_kappa: 0.1, kappa_max: 10.0, scale: 2.0 }
    }
}

/// How the outage constraint of each group enters the dual step (its admissible duals).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ConstraintForm {
    /// The paper's inequality `Pr[SINR < γ] ≤ ε`: duals in `[0, μ_max]`.
    #[default]
    Inequality,
    /// The constraint treated as the equality it is at the optimum of a power minimisation (more
    /// allowed outage never costs power): duals in `[mu_min, μ_max]` with `mu_min < 0`, so the
    /// Lagrangian rewards using the allowed outage of an over-fulfilled group (own addition,
    /// docs/gnn-unroll.md). In a config: `constraint_form = { equality = { mu_min = -1.0 } }`.
    Equality {
        /// Lower bound of the duals (finite, < 0).
        mu_min: f64,
    },
}

impl ConstraintForm {
    /// The lower bound of the duals.
    #[must_use]
    pub fn mu_min(self) -> f64 {
        match self {
            Self::Inequality => 0.0,
            Self::Equality { mu_min } => mu_min,
        }
    }
}

/// Training hyper-parameters (defaults: a quick CPU profile).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainParams {
    /// Maximum number of primal–dual steps.
    pub n_steps: usize,
    /// Instances per batch.
    pub batch_size: usize,
    /// AdamW learning rate.
    pub lr: f64,
    /// Dual step size `η_μ`.
    pub lr_dual: f64,
    /// Initial duals `μ_g` (default 0.1; the power term is `P/P_max`, so useful duals are
    /// well below 1, docs/gnn-unroll.md).
    pub mu_init: f64,
    /// Dual upper bound `μ_max`.
    pub mu_max: f64,
    /// Inequality (default, the paper's) or equality duals.
    pub constraint_form: ConstraintForm,
    /// Nominal outage `ε`.
    pub epsilon: f64,
    /// Steps between validations.
    pub eval_every: usize,
    /// `W1`: validations without a new minimum of `V` before the step sizes decay.
    pub decay_patience: usize,
    /// `W2`: validations without a new minimum of `V` before training stops.
    pub stop_patience: usize,
    /// Step-size decay factor.
    pub decay_factor: f64,
    /// Outage penalty `μ̄` of the convergence metric `V`.
    pub mu_bar: f64,
    /// AutoClip percentile (of the gradient-norm history).
    pub clip_percentile: f64,
    /// Weight `λ` of the recovery penalty for instances whose virtual problem is infeasible
    /// (0 disables it: such instances are then only masked).
    pub infeasible_penalty: f64,
    /// Constraint approximation (it also chooses the dual signal, module docs).
    pub loss: ConstraintLoss,
    /// `None` (default, the paper's): validation, early stopping and restore use the current
    /// iterate. `Some(β)`, `β ∈ (0, 1)`: they use the running average `θ̄ ← β θ̄ + (1 − β) θ`
    /// (updated after every step; training continues from `θ`). In a config:
    /// `param_averaging = 0.9`.
    pub param_averaging: Option<f64>,
}

impl Default for TrainParams {
    fn default() -> Self {
        Self {
            n_steps: 200,
            batch_size: 32,
            lr: 3e-3,
            lr_dual: 0.2,
            mu_init: 0.1,
            mu_max: 100.0,
            constraint_form: ConstraintForm::Inequality,
            epsilon: 0.1,
            eval_every: 10,
            decay_patience: 4,
            stop_patience: 10,
            decay_factor: 0.5,
            mu_bar: 1000.0,
            clip_percentile: 10.0,
            infeasible_penalty: 1.0,
            loss: ConstraintLoss::default(),
            param_averaging: None,
        }
    }
}

impl TrainParams {
    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field.
    pub fn check(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::InvalidInput(format!("training parameter {m}")));
        let pos = |x: f64| x.is_finite() && x > 0.0;
        if self.batch_size == 0 || self.eval_every == 0 || self.stop_patience == 0 || self.decay_patience == 0 {
            return bad("batch_size, eval_every and the patiences must be >= 1");
        }
        if !(pos(self.lr) && self.lr_dual.is_finite() && self.lr_dual >= 0.0 && self.mu_init >= 0.0) {
            return bad("lr must be > 0, lr_dual and mu_init >= 0");
        }
        if !(pos(self.mu_max) && self.mu_init <= self.mu_max && self.mu_bar >= 0.0 && self.mu_bar.is_finite()) {
            return bad("mu_max must be finite, >= mu_init; mu_bar finite >= 0");
        }
        if let ConstraintForm::Equality { mu_min } = self.constraint_form {
            if !(mu_min.is_finite() && mu_min < 0.0) {
                return bad("equality duals need a finite mu_min < 0");
            }
        }
        if !(self.epsilon > 0.0 && self.epsilon < 1.0 && self.decay_factor > 0.0 && self.decay_factor <= 1.0) {
            return bad("epsilon must be in (0, 1), decay_factor in (0, 1]");
        }
        if !(self.infeasible_penalty >= 0.0 && self.infeasible_penalty.is_finite()) {
            return bad("infeasible_penalty must be finite and >= 0");
        }
        if self.param_averaging.is_some_and(|b| !(b > 0.0 && b < 1.0)) {
            return bad("param_averaging must be in (0, 1)");
        }
        if !(self.clip_percentile > 0.0 && self.clip_percentile <= 100.0) {
            return bad("clip_percentile must be in (0, 100]");
        }
        if let ConstraintLoss::Annealing { kappa_init, eta_kappa, kappa_max, scale } = self.loss {
            if !(pos(kappa_init) && pos(kappa_max) && pos(scale) && (0.0..=1.0).contains(&eta_kappa)) {
                return bad("annealing: kappa_init, kappa_max, scale > 0 and eta_kappa in [0, 1]");
            }
        }
        Ok(())
    }
}

/// Validation statistics.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalStats {
    /// Mean transmit power per instance (infeasible instances count `P_max`).
    pub mean_power: f64,
    /// Empirical outage per constraint group (`NaN` for a group without users).
    pub outage: Vec<f64>,
    /// Mean power per group (`NaN` for an empty group).
    pub power: Vec<f64>,
    /// Instances whose forward pass failed (counted as all users in outage at `P_max`).
    pub n_infeasible: usize,
}

impl EvalStats {
    /// The convergence metric (54) `V = mean power + μ̄ Σ_g [ô_g − ε]_+`.
    #[must_use]
    pub fn metric(&self, mu_bar: f64, epsilon: f64) -> f64 {
        self.mean_power
            + mu_bar * self.outage.iter().filter(|o| o.is_finite()).map(|o| (o - epsilon).max(0.0)).sum::<f64>()
    }
}

/// Evaluates per-instance designs given by `design(inst)` on the true channels (exact outage).
///
/// # Errors
/// Errors of `design`; [`Error::InvalidInput`] for `n_groups = 0`.
pub fn evaluate_designs<F>(instances: &[Instance], n_groups: usize, p_max: f64, design: F) -> Result<EvalStats, Error>
where
    F: Fn(&Instance) -> Result<Option<(f64, Vec<f64>)>, Error> + Sync,
{
    evaluate_indexed(instances, n_groups, p_max, |_, inst| design(inst))
}

/// [`evaluate_designs`] with the instance's index passed to `design` (for designs that depend on
/// per-instance data kept outside the [`Instance`], e.g. the analog matrix of a statistical-CSI
/// system whose samples are evaluated as instances).
///
/// # Errors
/// Errors of `design`; [`Error::InvalidInput`] for `n_groups = 0`.
pub fn evaluate_indexed<I, F>(instances: &[I], n_groups: usize, p_max: f64, design: F) -> Result<EvalStats, Error>
where
    I: std::borrow::Borrow<Instance> + Sync,
    F: Fn(usize, &Instance) -> Result<Option<(f64, Vec<f64>)>, Error> + Sync,
{
    if n_groups == 0 {
        return Err(Error::InvalidInput("evaluate_designs needs at least one group".into()));
    }
    let mut users = vec![0usize; n_groups];
    let mut outages = vec![0usize; n_groups];
    let mut power = vec![0.0; n_groups];
    let mut count = vec![0usize; n_groups];
    let (mut total, mut n_infeasible) = (0.0, 0);
    let designs = instances
        .par_iter()
        .enumerate()
        .map(|(i, inst)| design(i, std::borrow::Borrow::<Instance>::borrow(inst)))
        .collect::<Result<Vec<_>, _>>()?;
    for (inst, design) in instances.iter().map(|i| std::borrow::Borrow::<Instance>::borrow(i)).zip(designs) {
        let g = inst.group.min(n_groups.saturating_sub(1));
        let (p, sinr) = match design {
            Some((p, s)) if p.is_finite() && s.iter().all(|x| !x.is_nan()) => (p, s),
            _ => {
                n_infeasible += 1;
                (p_max, vec![0.0; inst.targets.len()])
            }
        };
        total += p;
        power[g] += p;
        count[g] += 1;
        users[g] += inst.targets.len();
        outages[g] += sinr.iter().zip(&inst.targets).filter(|(s, t)| **s < **t * (1.0 - 1e-9)).count();
    }
    let ratio = |a: f64, b: usize| if b == 0 { f64::NAN } else { a / b as f64 };
    Ok(EvalStats {
        mean_power: ratio(total, instances.len()),
        outage: outages.iter().zip(&users).map(|(&o, &u)| ratio(o as f64, u)).collect(),
        power: power.iter().zip(&count).map(|(&p, &c)| ratio(p, c)).collect(),
        n_infeasible,
    })
}

/// One validation point of a training run.
#[derive(Clone, Debug, PartialEq)]
pub struct ValPoint {
    /// Primal steps taken.
    pub step: usize,
    /// Validation statistics.
    pub stats: EvalStats,
    /// The convergence metric `V` (54) at this point.
    pub metric: f64,
    /// Duals `μ_g` at this point.
    pub duals: Vec<f64>,
    /// Annealing slopes `κ_g` at this point (0 for the quantile loss).
    pub kappas: Vec<f64>,
}

/// What one primal–dual step did.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// Lagrangian value of the batch.
    pub loss: f64,
    /// Constraint estimates `ĝ_g` (`NaN` for groups absent from the batch).
    pub constraint: Vec<f64>,
    /// Exact empirical outage `ô_g` of the batch's unmasked users (`NaN` for absent groups).
    pub outage: Vec<f64>,
    /// Instances masked out (failed forward or non-finite values).
    pub n_masked: usize,
    /// Whether the primal update was skipped (non-finite gradient, nothing to learn from, or a
    /// rolled-back non-finite update).
    pub skipped: bool,
}

/// The result of [`Trainer::train`].
#[derive(Clone, Debug, PartialEq)]
pub struct TrainReport {
    /// Validation trace.
    pub points: Vec<ValPoint>,
    /// Steps taken.
    pub n_steps: usize,
    /// Skipped primal steps.
    pub n_skipped: usize,
    /// Step of the best (restored) parameters.
    pub best_step: usize,
    /// Step-size decays performed.
    pub n_decays: usize,
}

/// The linearly interpolated empirical `eps`-quantile of `values` and its weights on the two
/// order statistics it interpolates (`(index, ∂q/∂value)`).
fn quantile(values: &[f64], eps: f64) -> (f64, [(usize, f64); 2]) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let h = eps * (values.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(values.len() - 1);
    let frac = h - lo as f64;
    let q = values[order[lo]] + frac * (values[order[hi]] - values[order[lo]]);
    (q, [(order[lo], 1.0 - frac), (order[hi], frac)])
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A training or validation item of [`Trainer`]: an [`Instance`] (Tables 2–3) or a
/// statistical-CSI system [`StatInstance`] (Table 4).
pub trait System: Sync {
    /// The item as the trainer sees it.
    fn view(&self) -> SystemView<'_>;
}

/// What a [`System`] is.
#[derive(Clone, Copy, Debug)]
pub enum SystemView<'a> {
    /// One instance: the network sees its instantaneous estimates, the unrolled pass selects `A`
    /// and solves the baseband problem on them.
    Instance(&'a Instance),
    /// A system with `T_s` channel samples: the analog network sees the statistical CSI `R̂_k`,
    /// `A` is selected once on `R̂`, the baseband problem is solved per sample.
    Statistical(&'a StatInstance),
}

impl<'a> SystemView<'a> {
    /// The channel samples (an instance is its own single sample).
    fn samples(self) -> &'a [Instance] {
        match self {
            Self::Instance(inst) => std::slice::from_ref(inst),
            Self::Statistical(sys) => &sys.samples,
        }
    }
}

impl System for Instance {
    fn view(&self) -> SystemView<'_> {
        SystemView::Instance(self)
    }
}

impl System for StatInstance {
    fn view(&self) -> SystemView<'_> {
        SystemView::Statistical(self)
    }
}

/// What the trainer's network(s) see (module docs of [`crate::statistical`] for Table 4).
enum Inputs {
    /// Instantaneous features and shift operator of each instance (Tables 2–3).
    Instantaneous,
    /// Statistical features and shift operator of each system; with a baseband network
    /// (U-G-HBF-2GCN) the baseband coefficients of each sample come from it, otherwise
    /// (U-G-HBF-GCN) they are the analog coefficients.
    Statistical { baseband: Option<(Gcn, VarMap)> },
}

/// The network outputs of one system: coefficient heads (tensor with its graph, values) and, per
/// sample, the head whose coefficients its baseband problem uses.
struct Heads {
    heads: Vec<(Tensor, Array2<f64>)>,
    of_sample: Vec<usize>,
}

/// The training forward pass of one system: per sample the unrolled output, or `Err(true)` when
/// the virtual problem is infeasible (recoverable) and `Err(false)` for unusable data; the greedy
/// steps of a statistical selection (for the straight-through path).
struct SystemForward {
    samples: Vec<Result<UnrolledOutput, bool>>,
    steps: Vec<GreedyStep>,
}

/// Inference on one system: per sample its coefficients and the analog selection it is evaluated
/// with (`None`: the sample's own greedy selection, the instantaneous case).
struct Prepared {
    coeffs: Vec<Array2<f64>>,
    selection: Option<(Vec<usize>, Array2<c64>)>,
}

/// The analog selection of a statistical system: codeword indices, `A: [N × M]` and the greedy
/// steps with their trials (empty when the SNR initialisation was kept).
type AnalogSelection = (Vec<usize>, Array2<c64>, Vec<GreedyStep>);

/// Adds `x` to an optional accumulator.
fn accumulate(acc: &mut Option<Array2<f64>>, x: Array2<f64>) {
    match acc {
        Some(a) => *a += &x,
        None => *acc = Some(x),
    }
}

/// A U-G-HBF model (one network, or the analog and baseband networks of U-G-HBF-2GCN) with its
/// optimiser and primal–dual state.
pub struct Trainer {
    model: Gcn,
    vars: VarMap,
    inputs: Inputs,
    opt: AdamW,
    trainable: Vec<Var>,
    settings: UnrollSettings,
    params: TrainParams,
    n_groups: usize,
    mu: Vec<f64>,
    kappa: Vec<f64>,
    grad_norms: Vec<f64>,
    architecture: Architecture,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("params", &self.params)
            .field("mu", &self.mu)
            .field("kappa", &self.kappa)
            .finish()
    }
}

impl Trainer {
    /// A fresh model (seeded), with feature statistics fitted on `train`.
    ///
    /// # Errors
    /// Bad parameters or configuration; an empty training set; candle errors.
    pub fn new(
        cfg: &GcnConfig,
        settings: UnrollSettings,
        params: TrainParams,
        n_groups: usize,
        train: &[Instance],
        seed: u64,
    ) -> Result<Self, Error> {
        params.check()?;
        if n_groups == 0 {
            return Err(Error::InvalidInput("need at least one constraint group".into()));
        }
        let vars = VarMap::new();
        let model = build(&vars, cfg, seed)?;
        fit_normalisation(&vars, train)?;
        Self::assemble(model, vars, Inputs::Instantaneous, settings, params, n_groups)
    }

    /// A fresh model for statistical-CSI systems (Table 4), seeded, with the statistical feature
    /// statistics fitted on `train`: U-G-HBF-GCN (`two_networks = false`: one network on the
    /// statistical features `[ln tr R̂_k, ln γ_k, ln ζ]` and shift operator gives the coefficients
    /// of the analog selection and of every sample's baseband problem) or U-G-HBF-2GCN
    /// (`two_networks = true`: a second network, own variables, seed derived from `seed`, on the
    /// instantaneous features of each sample gives that sample's baseband coefficients; its
    /// feature statistics are fitted on all training samples).
    ///
    /// # Errors
    /// Bad parameters or configuration; an empty training set or a system without samples;
    /// candle errors.
    pub fn statistical(
        cfg: &GcnConfig,
        settings: UnrollSettings,
        params: TrainParams,
        n_groups: usize,
        train: &[StatInstance],
        seed: u64,
        two_networks: bool,
    ) -> Result<Self, Error> {
        params.check()?;
        if n_groups == 0 {
            return Err(Error::InvalidInput("need at least one constraint group".into()));
        }
        if train.iter().any(|s| s.samples.is_empty()) {
            return Err(Error::InvalidInput("a statistical-CSI system without samples".into()));
        }
        let vars = VarMap::new();
        let model = build(&vars, cfg, seed)?;
        fit_stat_normalisation(&vars, train.iter().map(|s| (s.r_hat.as_slice(), s.targets(), s.zeta())))?;
        let baseband = if two_networks {
            let b_vars = VarMap::new();
            let b_model = build(&b_vars, cfg, beamlab_core::derive_seed(seed, &[1]))?;
            let samples: Vec<Instance> = train.iter().flat_map(|s| s.samples.iter().cloned()).collect();
            fit_normalisation(&b_vars, &samples)?;
            Some((b_model, b_vars))
        } else {
            None
        };
        Self::assemble(model, vars, Inputs::Statistical { baseband }, settings, params, n_groups)
    }

    /// Optimiser (over the trainable variables of every network, each network's sorted by name)
    /// and primal–dual state.
    fn assemble(
        model: Gcn,
        vars: VarMap,
        inputs: Inputs,
        settings: UnrollSettings,
        params: TrainParams,
        n_groups: usize,
    ) -> Result<Self, Error> {
        let mut trainable = Vec::new();
        let extra = match &inputs {
            Inputs::Statistical { baseband: Some((_, b)) } => Some(b),
            _ => None,
        };
        for map in std::iter::once(&vars).chain(extra) {
            let data = map.data().lock().map_err(|_| Error::InvalidInput("variable map lock poisoned".into()))?;
            let mut named: Vec<_> = data.iter().filter(|(n, _)| !n.starts_with("norm.")).collect();
            named.sort_by(|a, b| a.0.cmp(b.0));
            trainable.extend(named.into_iter().map(|(_, v)| v.clone()));
        }
        let opt =
            AdamW::new(trainable.clone(), ParamsAdamW { lr: params.lr, weight_decay: 0.0, ..ParamsAdamW::default() })?;
        let kappa0 = match params.loss {
            ConstraintLoss::Annealing { kappa_init, .. } => kappa_init,
            ConstraintLoss::Quantile => 0.0,
        };
        Ok(Self {
            model,
            vars,
            inputs,
            opt,
            trainable,
            settings,
            mu: vec![params.mu_init; n_groups],
            kappa: vec![kappa0; n_groups],
            params,
            n_groups,
            grad_norms: Vec::new(),
            architecture: Architecture::Hybrid,
        })
    }

    /// Every variable map: the (analog) network's, then the baseband network's (2GCN).
    fn var_maps(&self) -> Vec<&VarMap> {
        let mut maps = vec![&self.vars];
        if let Inputs::Statistical { baseband: Some((_, b)) } = &self.inputs {
            maps.push(b);
        }
        maps
    }

    fn snapshot_all(&self) -> Result<Vec<Vec<(String, Tensor)>>, Error> {
        Ok(self.var_maps().into_iter().map(snapshot).collect::<Result<Vec<_>, _>>()?)
    }

    fn restore_all(&self, snap: &[Vec<(String, Tensor)>]) -> Result<(), Error> {
        for (map, s) in self.var_maps().into_iter().zip(snap) {
            restore(map, s)?;
        }
        Ok(())
    }

    fn all_params_finite(&self) -> Result<bool, Error> {
        for map in self.var_maps() {
            if !all_finite(map)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The variables a checkpoint holds: the network's own names for one network; for
    /// U-G-HBF-2GCN the two networks under the prefixes `analog.` and `baseband.` (the variables
    /// are shared, so loading into this map loads into the networks).
    fn checkpoint_vars(&self) -> Result<VarMap, Error> {
        let Inputs::Statistical { baseband: Some((_, b)) } = &self.inputs else {
            return Ok(self.vars.clone());
        };
        let joint = VarMap::new();
        {
            let mut out = joint.data().lock().map_err(|_| Error::InvalidInput("variable map lock poisoned".into()))?;
            for (prefix, map) in [("analog", &self.vars), ("baseband", b)] {
                let data = map.data().lock().map_err(|_| Error::InvalidInput("variable map lock poisoned".into()))?;
                for (name, var) in data.iter() {
                    out.insert(format!("{prefix}.{name}"), var.clone());
                }
            }
        }
        Ok(joint)
    }

    /// The same trainer for another beamforming architecture (default [`Architecture::Hybrid`];
    /// [`Architecture::FullyDigital`] is U-FDBF-GCN, which ignores the codebook settings).
    #[must_use]
    pub fn with_architecture(mut self, architecture: Architecture) -> Self {
        self.architecture = architecture;
        self
    }

    /// The training hyper-parameters.
    #[must_use]
    pub fn params(&self) -> &TrainParams {
        &self.params
    }

    /// The unrolling settings.
    #[must_use]
    pub fn settings(&self) -> &UnrollSettings {
        &self.settings
    }

    /// The beamforming architecture.
    #[must_use]
    pub fn architecture(&self) -> Architecture {
        self.architecture
    }

    /// The network.
    #[must_use]
    pub fn model(&self) -> &Gcn {
        &self.model
    }

    /// The network's variables (for checkpoints).
    #[must_use]
    pub fn vars(&self) -> &VarMap {
        &self.vars
    }

    /// Current duals `μ_g`.
    #[must_use]
    pub fn duals(&self) -> &[f64] {
        &self.mu
    }

    /// Current primal (AdamW) learning rate.
    #[must_use]
    pub fn learning_rate(&self) -> f64 {
        self.opt.learning_rate()
    }

    /// Current annealing slopes `κ_g` (0 for the quantile loss).
    #[must_use]
    pub fn kappas(&self) -> &[f64] {
        &self.kappa
    }

    /// The unrolled forward pass of one instance with the current network.
    ///
    /// # Errors
    /// As [`forward`](crate::unroll::forward) and [`coefficients`].
    pub fn infer(&self, inst: &Instance) -> Result<UnrolledOutput, Error> {
        let (_, c) = coefficients(&self.model, inst)?;
        forward_arch(self.architecture, inst, &c, &self.settings, false)
    }

    /// Whether the trainer works on statistical-CSI systems ([`Trainer::statistical`]).
    #[must_use]
    pub fn is_statistical(&self) -> bool {
        matches!(self.inputs, Inputs::Statistical { .. })
    }

    /// The baseband network of U-G-HBF-2GCN (`None` for one network).
    #[must_use]
    pub fn baseband_model(&self) -> Option<&Gcn> {
        match &self.inputs {
            Inputs::Statistical { baseband: Some((m, _)) } => Some(m),
            _ => None,
        }
    }

    /// The unrolled passes of a statistical-CSI system with the current network(s): the analog
    /// selection once on `R̂` (SNR initialisation when no visited selection is statistically
    /// feasible), then per sample the baseband problem with its coefficients; one result per
    /// sample.
    ///
    /// # Errors
    /// A trainer for instances; candle, selection and coefficient errors.
    pub fn infer_statistical(&self, sys: &StatInstance) -> Result<Vec<Result<UnrolledOutput, Error>>, Error> {
        let prepared = self.prepare(SystemView::Statistical(sys))?;
        Ok(sys.samples.iter().enumerate().map(|(t, sample)| self.infer_prepared(&prepared, t, sample)).collect())
    }

    /// Per-system inference work done once for all samples (statistical: coefficients and the
    /// analog selection).
    fn prepare(&self, view: SystemView<'_>) -> Result<Prepared, Error> {
        match view {
            SystemView::Instance(_) if matches!(self.inputs, Inputs::Instantaneous) => {
                Ok(Prepared { coeffs: Vec::new(), selection: None })
            }
            SystemView::Instance(_) => {
                Err(Error::InvalidInput("a statistical-CSI trainer takes statistical systems, not instances".into()))
            }
            SystemView::Statistical(sys) => {
                let heads = self.heads(view)?;
                let (selection, analog, _) = self.select_statistical(sys, &heads.heads[0].1, false)?;
                let coeffs = heads.of_sample.iter().map(|&h| heads.heads[h].1.clone()).collect();
                Ok(Prepared { coeffs, selection: Some((selection, analog)) })
            }
        }
    }

    fn infer_prepared(&self, prepared: &Prepared, t: usize, sample: &Instance) -> Result<UnrolledOutput, Error> {
        match &prepared.selection {
            None => self.infer(sample),
            Some((selection, analog)) => {
                let c = prepared.coeffs.get(t).ok_or_else(|| Error::InvalidInput(format!("no sample {t}")))?;
                evaluate_analog(sample, c, analog.clone(), selection, &self.settings)
            }
        }
    }

    /// Validation statistics of the current network(s) over every sample of `systems` (an
    /// instance is one sample; a failed sample counts as all users in outage at `P_max`).
    ///
    /// # Errors
    /// candle errors; a system of the wrong kind for this trainer.
    pub fn evaluate<S: System>(&self, systems: &[S]) -> Result<EvalStats, Error> {
        let views: Vec<SystemView<'_>> = systems.iter().map(System::view).collect();
        let prepared = views.par_iter().map(|v| self.prepare(*v)).collect::<Result<Vec<_>, _>>()?;
        let mut flat: Vec<&Instance> = Vec::new();
        let mut owner: Vec<(usize, usize)> = Vec::new();
        for (i, v) in views.iter().enumerate() {
            flat.extend(v.samples());
            owner.extend((0..v.samples().len()).map(|t| (i, t)));
        }
        evaluate_indexed(&flat, self.n_groups, self.settings.power_budget, |j, sample| {
            let (i, t) = owner[j];
            match self.infer_prepared(&prepared[i], t, sample) {
                Ok(out) => Ok(Some((out.power(), out.sinr))),
                Err(Error::Infeasible { .. } | Error::Singular { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        })
    }

    /// The network outputs of one system (module docs of [`crate::statistical`] for Table 4).
    fn heads(&self, view: SystemView<'_>) -> Result<Heads, Error> {
        match (view, &self.inputs) {
            (SystemView::Instance(inst), Inputs::Instantaneous) => {
                Ok(Heads { heads: vec![coefficients(&self.model, inst)?], of_sample: vec![0] })
            }
            (SystemView::Statistical(sys), Inputs::Statistical { baseband }) => {
                let n = sys.samples.len();
                if n == 0 {
                    return Err(Error::InvalidInput("a statistical-CSI system without samples".into()));
                }
                let mut heads = vec![stat_coefficients(&self.model, &sys.r_hat, sys.targets(), sys.zeta())?];
                let of_sample = match baseband {
                    None => vec![0; n],
                    Some((net, _)) => {
                        for sample in &sys.samples {
                            heads.push(coefficients(net, sample)?);
                        }
                        (1..=n).collect()
                    }
                };
                Ok(Heads { heads, of_sample })
            }
            (SystemView::Instance(_), _) => {
                Err(Error::InvalidInput("a statistical-CSI trainer takes statistical systems, not instances".into()))
            }
            (SystemView::Statistical(_), _) => {
                Err(Error::InvalidInput("an instantaneous-CSI trainer cannot take statistical systems".into()))
            }
        }
    }

    /// The analog selection of a statistical system: the greedy selection with the virtual
    /// channels of `c_a` on `R̂` ([`select_cov`]); when no visited selection is statistically
    /// feasible, the SNR initialisation (34), as in the classical designs
    /// ([`crate::statistical::statistical_analog`]), without trials (no straight-through path).
    fn select_statistical(
        &self,
        sys: &StatInstance,
        c_a: &Array2<f64>,
        record: bool,
    ) -> Result<AnalogSelection, Error> {
        if self.architecture != Architecture::Hybrid {
            return Err(Error::InvalidInput("statistical CSI needs the hybrid architecture".into()));
        }
        let st = &self.settings;
        let (selection, steps) = match select_cov(&sys.r_hat, sys.targets(), c_a, st, record) {
            Ok(g) => (g.selection, g.steps),
            Err(Error::Infeasible { .. } | Error::Singular { .. }) => {
                (snr_init(&st.codebook, &sys.r_hat, st.n_rf)?, vec![])
            }
            Err(e) => return Err(e),
        };
        let analog = st.codebook.select(ndarray::Axis(1), &selection);
        Ok((selection, analog, steps))
    }

    /// The training forward pass of one system (selection recorded for the straight-through
    /// path).
    fn forward_system(&self, view: SystemView<'_>, heads: &Heads) -> SystemForward {
        let settings = &self.settings;
        let finite = |c: &Array2<f64>| c.iter().all(|x| x.is_finite());
        // `Err(true)`: the virtual problem is infeasible (recoverable); `Err(false)`: unusable data.
        let classify = |r: Result<UnrolledOutput, Error>| match r {
            Ok(o) if o.margin_db.iter().all(|d| d.is_finite()) => Ok(o),
            Err(Error::Infeasible { .. } | Error::Singular { .. }) => Err(true),
            _ => Err(false),
        };
        match view {
            SystemView::Instance(inst) => {
                let c = &heads.heads[0].1;
                let out = if finite(c) {
                    classify(forward_arch(self.architecture, inst, c, settings, true))
                } else {
                    Err(false)
                };
                SystemForward { samples: vec![out], steps: Vec::new() }
            }
            SystemView::Statistical(sys) => {
                let record = settings.softmin_sharpness > 0.0;
                let Ok((selection, analog, steps)) = self.select_statistical(sys, &heads.heads[0].1, record) else {
                    return SystemForward { samples: vec![Err(false); sys.samples.len()], steps: Vec::new() };
                };
                let samples = sys
                    .samples
                    .iter()
                    .zip(&heads.of_sample)
                    .map(|(sample, &h)| {
                        let c = &heads.heads[h].1;
                        if !finite(c) {
                            return Err(false);
                        }
                        classify(evaluate_analog(sample, c, analog.clone(), &selection, settings))
                    })
                    .collect();
                SystemForward { samples, steps }
            }
        }
    }

    /// `∂L/∂(head)` of one system given the upstream margin gradients of its samples and
    /// `∂L/∂P` of each sample's power: every sample's coefficient gradient (selection fixed) goes
    /// to the head its baseband problem used; the straight-through selection gradient goes to the
    /// head that chose `A` (head 0): per instance from its own `∂L/∂A*`, for a statistical system
    /// from `∂L/∂A*` summed over its samples through [`straight_through_gradient_cov`]. `None`
    /// when a gradient fails or is non-finite; `None` entries for heads without gradient.
    fn backward_system(
        &self,
        view: SystemView<'_>,
        heads: &Heads,
        steps: &[GreedyStep],
        outs: &[Option<(Tensor, Array2<f64>, UnrolledOutput)>],
        grad_margin: &[Vec<f64>],
        grad_power: &[f64],
    ) -> Option<Vec<Option<Array2<f64>>>> {
        let settings = &self.settings;
        let straight = settings.softmin_sharpness > 0.0 && self.architecture == Architecture::Hybrid;
        let mut acc: Vec<Option<Array2<f64>>> = vec![None; heads.heads.len()];
        let mut d_analog: Option<Array2<c64>> = None;
        let mut first_ok: Option<&UnrolledOutput> = None;
        for (t, (sample, o)) in view.samples().iter().zip(outs).enumerate() {
            let Some((_, _, out)) = o else { continue };
            let back = backward(sample, out, &grad_margin[t], grad_power[t]).ok()?;
            accumulate(&mut acc[heads.of_sample[t]], back.coeffs);
            match view {
                SystemView::Instance(inst) => {
                    if straight {
                        accumulate(&mut acc[0], straight_through_gradient(inst, out, &back.analog, settings).ok()?);
                    }
                }
                SystemView::Statistical(_) => {
                    first_ok.get_or_insert(out);
                    match &mut d_analog {
                        Some(d) => *d += &back.analog,
                        None => d_analog = Some(back.analog),
                    }
                }
            }
        }
        if let (SystemView::Statistical(sys), Some(d), Some(out)) = (view, &d_analog, first_ok) {
            if straight && !steps.is_empty() {
                // The selection's trials with the analog coefficients.
                let mut sel = out.clone();
                sel.coeffs.clone_from(&heads.heads[0].1);
                sel.steps = steps.to_vec();
                let st = straight_through_gradient_cov(&sys.r_hat, sys.targets(), &sel, d, settings).ok()?;
                accumulate(&mut acc[0], st);
            }
        }
        acc.iter().flatten().all(|dc| dc.iter().all(|x| x.is_finite())).then_some(acc)
    }

    /// One primal–dual step on a batch of systems (module docs). The samples of the batch's
    /// systems (an instance is its own single sample) enter the loss, the outage and the power
    /// term individually; `StepReport::n_masked` counts masked samples.
    ///
    /// # Errors
    /// candle errors (numerical trouble in the data is masked, not an error); a system of the
    /// wrong kind for this trainer.
    pub fn step<S: System>(&mut self, systems: &[&S]) -> Result<StepReport, Error> {
        let _span = tracing::debug_span!("gnn_unroll_step", batch = systems.len()).entered();
        // Forward: network (candle, with graph) then the unrolled solver (ndarray).
        // The per-system solver work runs in parallel; results keep the batch order, so they do
        // not depend on the thread count.
        let views: Vec<SystemView<'_>> = systems.iter().map(|s| s.view()).collect();
        let heads = views.iter().map(|v| self.heads(*v)).collect::<Result<Vec<_>, _>>()?;
        let solved: Vec<SystemForward> =
            views.par_iter().zip(heads.par_iter()).map(|(v, h)| self.forward_system(*v, h)).collect();
        // The samples of all systems in order; `owner[j] = (system, sample)`.
        let batch: Vec<&Instance> = views.iter().flat_map(|v| v.samples().iter()).collect();
        let owner: Vec<(usize, usize)> =
            views.iter().enumerate().flat_map(|(i, v)| (0..v.samples().len()).map(move |t| (i, t))).collect();
        let head_of = |j: usize| {
            let (i, t) = owner[j];
            &heads[i].heads[heads[i].of_sample[t]]
        };
        let mut steps = Vec::with_capacity(views.len());
        let mut flat: Vec<Result<UnrolledOutput, bool>> = Vec::with_capacity(batch.len());
        for f in solved {
            steps.push(f.steps);
            flat.extend(f.samples);
        }
        let recoverable: Vec<bool> = flat.iter().map(|r| matches!(r, Err(true))).collect();
        let outs: Vec<Option<(Tensor, Array2<f64>, UnrolledOutput)>> = flat
            .into_iter()
            .enumerate()
            .map(|(j, o)| {
                o.ok().map(|o| {
                    let (ct, c) = head_of(j);
                    (ct.clone(), c.clone(), o)
                })
            })
            .collect();
        let n_masked = outs.iter().filter(|o| o.is_none()).count();
        let n_ok = batch.len() - n_masked;
        // Constraint estimates and their gradients with respect to the margins.
        let g_of = |i: usize| batch[i].group.min(self.n_groups - 1);
        let mut grad_margin: Vec<Vec<f64>> = batch.iter().map(|inst| vec![0.0; inst.targets.len()]).collect();
        let mut constraint = vec![f64::NAN; self.n_groups];
        let mut quantiles = vec![f64::NAN; self.n_groups];
        let mut outage = vec![f64::NAN; self.n_groups];
        for (g, cons) in constraint.iter_mut().enumerate() {
            let members: Vec<(usize, usize)> = (0..batch.len())
                .filter(|&i| outs[i].is_some() && g_of(i) == g)
                .flat_map(|i| (0..batch[i].targets.len()).map(move |k| (i, k)))
                .collect();
            if members.is_empty() {
                continue;
            }
            let d: Vec<f64> =
                members.iter().map(|&(i, k)| outs[i].as_ref().map_or(0.0, |o| o.2.margin_db[k])).collect();
            let (q, weights) = quantile(&d, self.params.epsilon);
            quantiles[g] = q;
            let n = d.len() as f64;
            // Same outage rule as `evaluate_designs`: SINR < γ (1 − 1e-9).
            let n_out = members
                .iter()
                .filter(|&&(i, k)| outs[i].as_ref().is_some_and(|o| o.2.sinr[k] < batch[i].targets[k] * (1.0 - 1e-9)))
                .count();
            outage[g] = n_out as f64 / n;
            match self.params.loss {
                ConstraintLoss::Annealing { .. } => {
                    let kappa = self.kappa[g];
                    let s: Vec<f64> = d.iter().map(|x| sigmoid(kappa * x)).collect();
                    *cons = (1.0 - self.params.epsilon) - s.iter().sum::<f64>() / n;
                    for (&(i, k), sv) in members.iter().zip(&s) {
                        grad_margin[i][k] = -self.mu[g] * kappa * sv * (1.0 - sv) / n;
                    }
                }
                ConstraintLoss::Quantile => {
                    *cons = -q;
                    for (idx, w) in weights {
                        let (i, k) = members[idx];
                        grad_margin[i][k] -= self.mu[g] * w;
                    }
                }
            }
        }
        let p_max = self.settings.power_budget;
        let mean_power = if n_ok == 0 {
            0.0
        } else {
            outs.iter().flatten().map(|o| o.2.power()).sum::<f64>() / (n_ok as f64 * p_max)
        };
        let loss = mean_power
            + constraint.iter().zip(&self.mu).filter(|(c, _)| c.is_finite()).map(|(c, m)| c * m).sum::<f64>();
        // Primal step through the implicit gradient, injected at the coefficients.
        let grad_power: Vec<f64> =
            outs.iter().map(|o| o.as_ref().map_or(0.0, |_| 1.0 / (n_ok as f64 * p_max))).collect();
        let offsets: Vec<usize> = views
            .iter()
            .scan(0, |acc, v| {
                let first = *acc;
                *acc += v.samples().len();
                Some(first)
            })
            .collect();
        let mut grads_c: Vec<Option<Vec<Option<Array2<f64>>>>> = (0..views.len())
            .into_par_iter()
            .map(|i| {
                let range = offsets[i]..offsets[i] + views[i].samples().len();
                self.backward_system(
                    views[i],
                    &heads[i],
                    &steps[i],
                    &outs[range.clone()],
                    &grad_margin[range.clone()],
                    &grad_power[range],
                )
            })
            .collect();
        // Infeasible virtual problems give no solver gradient; the recovery penalty
        // `λ Σ (ln c − ln c_0)² / |B|` pulls their coefficients back towards the initial
        // estimate-as-truth values `c_0 = (1, e^{−3}, 1, e^{−3})`.
        let penalty = self.params.infeasible_penalty / batch.len() as f64;
        let ln_c0 = [0.0, -3.0, 0.0, -3.0];
        let mut recovery: Vec<Option<Array2<f64>>> = (0..batch.len())
            .map(|j| {
                let (_, c) = head_of(j);
                (recoverable[j] && penalty > 0.0).then(|| {
                    Array2::from_shape_fn(c.dim(), |(u, i)| 2.0 * penalty * (c[[u, i]].ln() - ln_c0[i]) / c[[u, i]])
                })
            })
            .collect();
        let mut surrogate: Option<Tensor> = None;
        for (i, h) in heads.iter().enumerate() {
            // Per head: the solver gradient of the system's samples plus the recovery terms of
            // its infeasible samples.
            let mut total = grads_c[i].take().unwrap_or_else(|| vec![None; h.heads.len()]);
            for (t, &head) in h.of_sample.iter().enumerate() {
                if let Some(r) = recovery[offsets[i] + t].take() {
                    accumulate(&mut total[head], r);
                }
            }
            for ((ct, _), dc) in h.heads.iter().zip(total) {
                let Some(dc) = dc else { continue };
                if dc.iter().any(|x| !x.is_finite()) {
                    continue;
                }
                let k = dc.nrows();
                let g = Tensor::from_vec(dc.iter().copied().collect::<Vec<_>>(), (k, N_COEFFS), ct.device())?;
                let s = (ct * g.detach())?.sum_all()?;
                surrogate = Some(match surrogate {
                    None => s,
                    Some(acc) => (acc + s)?,
                });
            }
        }
        let mut skipped = true;
        if let Some(s) = surrogate {
            let mut grads = s.backward()?;
            let trainable: Vec<Tensor> = self.trainable.iter().map(|v| v.as_tensor().clone()).collect();
            let mut sq = 0.0;
            for t in &trainable {
                if let Some(g) = grads.get(t) {
                    sq += g.sqr()?.sum_all()?.to_scalar::<f64>()?;
                }
            }
            let norm = sq.sqrt();
            if norm.is_finite() && norm > 0.0 {
                self.grad_norms.push(norm);
                let mut hist = self.grad_norms.clone();
                hist.sort_by(f64::total_cmp);
                let idx = ((self.params.clip_percentile / 100.0) * (hist.len() - 1) as f64).round() as usize;
                let threshold = hist[idx.min(hist.len() - 1)];
                if norm > threshold {
                    let f = threshold / norm;
                    for t in &trainable {
                        if let Some(g) = grads.remove(t) {
                            grads.insert(t, (g * f)?);
                        }
                    }
                }
                let snap = self.snapshot_all()?;
                self.opt.step(&grads)?;
                if self.all_params_finite()? {
                    skipped = false;
                } else {
                    self.restore_all(&snap)?;
                }
            }
        }
        // Dual and smoothing updates.
        for g in 0..self.n_groups {
            if !constraint[g].is_finite() {
                continue;
            }
            let signal = match self.params.loss {
                ConstraintLoss::Annealing { .. } => outage[g] - self.params.epsilon,
                ConstraintLoss::Quantile => constraint[g],
            };
            let mu_min = self.params.constraint_form.mu_min();
            self.mu[g] = (self.mu[g] + self.params.lr_dual * signal).clamp(mu_min, self.params.mu_max);
            if let ConstraintLoss::Annealing { eta_kappa, kappa_max, scale, .. } = self.params.loss {
                let target = if -quantiles[g] > 0.0 { (scale / -quantiles[g]).min(kappa_max) } else { kappa_max };
                self.kappa[g] = (1.0 - eta_kappa) * self.kappa[g] + eta_kappa * target;
            }
        }
        Ok(StepReport { loss, constraint, outage, n_masked, skipped })
    }

    /// Trains on `train` with validation on `val` (module docs); restores the best parameters.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an empty training or validation set; candle errors.
    pub fn train<S: System, R: Rng + ?Sized>(
        &mut self,
        train: &[S],
        val: &[S],
        rng: &mut R,
    ) -> Result<TrainReport, Error> {
        if train.is_empty() || val.is_empty() {
            return Err(Error::InvalidInput("training and validation sets must be non-empty".into()));
        }
        let _span = tracing::info_span!("gnn_unroll_train", n_train = train.len(), n_val = val.len()).entered();
        let (eps, mu_bar) = (self.params.epsilon, self.params.mu_bar);
        let criterion = |s: &EvalStats| s.metric(mu_bar, eps);
        let beta = self.params.param_averaging.unwrap_or(0.0);
        // Running average of the trainable variables (iterate averaging), if enabled.
        let mut average: Option<Vec<Tensor>> = match self.params.param_averaging {
            Some(_) => Some(self.trainable.iter().map(|v| v.as_tensor().copy()).collect::<Result<_, _>>()?),
            None => None,
        };
        let first = self.evaluate(val)?;
        let mut best = (criterion(&first), 0usize, self.snapshot_all()?);
        let mut points = vec![ValPoint {
            step: 0,
            metric: best.0,
            stats: first,
            duals: self.mu.clone(),
            kappas: self.kappa.clone(),
        }];
        let mut order: Vec<usize> = Vec::new();
        let (mut since_best, mut n_skipped, mut n_steps, mut n_decays) = (0usize, 0usize, 0usize, 0usize);
        while n_steps < self.params.n_steps {
            if order.len() < self.params.batch_size.min(train.len()) {
                let mut perm: Vec<usize> = (0..train.len()).collect();
                perm.shuffle(rng);
                order.extend(perm);
            }
            let take = self.params.batch_size.min(train.len());
            let batch: Vec<&S> = order.drain(..take).map(|i| &train[i]).collect();
            let report = self.step(&batch)?;
            n_skipped += usize::from(report.skipped);
            n_steps += 1;
            if let Some(avg) = average.as_mut() {
                for (a, v) in avg.iter_mut().zip(&self.trainable) {
                    *a = ((&*a * beta)? + (v.as_tensor() * (1.0 - beta))?)?;
                }
            }
            if n_steps % self.params.eval_every == 0 {
                // With averaging, validate (and keep as the best) the averaged parameters, then
                // continue training from the current iterate.
                let current = match &average {
                    Some(avg) => {
                        let snap = self.snapshot_all()?;
                        for (v, a) in self.trainable.iter().zip(avg) {
                            v.set(a)?;
                        }
                        Some(snap)
                    }
                    None => None,
                };
                let stats = self.evaluate(val)?;
                let metric = criterion(&stats);
                points.push(ValPoint {
                    step: n_steps,
                    metric,
                    stats,
                    duals: self.mu.clone(),
                    kappas: self.kappa.clone(),
                });
                let improved = metric < best.0;
                if improved {
                    best = (metric, n_steps, self.snapshot_all()?);
                }
                if let Some(snap) = current {
                    self.restore_all(&snap)?;
                }
                if improved {
                    since_best = 0;
                } else {
                    since_best += 1;
                    if since_best >= self.params.stop_patience {
                        break;
                    }
                    if since_best % self.params.decay_patience == 0 {
                        let lr = self.opt.learning_rate() * self.params.decay_factor;
                        self.opt.set_learning_rate(lr);
                        n_decays += 1;
                    }
                }
            }
        }
        self.restore_all(&best.2)?;
        Ok(TrainReport { points, n_steps, n_skipped, best_step: best.1, n_decays })
    }

    /// Saves the network (weights and feature statistics) to a safetensors file.
    ///
    /// # Errors
    /// IO and candle errors.
    pub fn save(&self, path: &std::path::Path) -> Result<(), Error> {
        Ok(save_checkpoint(&self.checkpoint_vars()?, path)?)
    }

    /// Loads a checkpoint written by [`Trainer::save`] for the same architecture (strict).
    ///
    /// # Errors
    /// [`Error::Bridge`] on any name or shape mismatch.
    pub fn load(&self, path: &std::path::Path) -> Result<(), Error> {
        Ok(load_checkpoint(&self.checkpoint_vars()?, path)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Scenario, draw_instance};
    use crate::unroll::tests::settings;
    use beamlab_linalg_ops::c64;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn data(n: usize, seed: u64) -> Vec<Instance> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let groups = crate::data::pilot_groups(&[0.0, 10.0]);
        (0..n).map(|i| draw_instance(&Scenario::default(), &groups[i % 2], i % 2, &mut rng).unwrap()).collect()
    }

    fn quick() -> TrainParams {
        TrainParams { batch_size: 8, n_steps: 6, eval_every: 3, ..TrainParams::default() }
    }

    #[test]
    fn quantile_interpolates_and_weights_sum_to_one() {
        let (q, w) = quantile(&[3.0, 1.0, 2.0, 5.0, 4.0], 0.1);
        assert!((q - 1.4).abs() < 1e-12);
        assert_eq!((w[0].0, w[1].0), (1, 2));
        assert!((w[0].1 + w[1].1 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn untrained_network_starts_near_the_estimate_as_truth_coefficients() {
        let train = data(4, 1);
        let t = Trainer::new(&GcnConfig::default(), settings(100.0), quick(), 2, &train, 7).unwrap();
        let (_, c) = coefficients(t.model(), &train[0]).unwrap();
        for row in c.rows() {
            assert!((row[0] - 1.0).abs() < 0.1 && (row[2] - 1.0).abs() < 0.1, "{row:?}");
            assert!((row[1] - (-3f64).exp()).abs() < 0.01 && (row[3] - (-3f64).exp()).abs() < 0.01, "{row:?}");
        }
        // Deterministic for a seed.
        let t2 = Trainer::new(&GcnConfig::default(), settings(100.0), quick(), 2, &train, 7).unwrap();
        assert_eq!(coefficients(t2.model(), &train[1]).unwrap().1, coefficients(t.model(), &train[1]).unwrap().1);
    }

    #[test]
    fn power_only_training_lowers_the_power() {
        // With no constraint term the primal steps must reduce the mean power on the batch.
        let train = data(8, 2);
        let params = TrainParams { mu_init: 0.0, lr_dual: 0.0, lr: 2e-2, clip_percentile: 100.0, ..quick() };
        let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), params, 2, &train, 3).unwrap();
        let before = t.evaluate(&train).unwrap().mean_power;
        let batch: Vec<&Instance> = train.iter().collect();
        for _ in 0..8 {
            assert!(!t.step(&batch).unwrap().skipped);
        }
        let after = t.evaluate(&train).unwrap().mean_power;
        assert!(after < 0.9 * before, "power {before} -> {after}");
    }

    #[test]
    fn step_decay_shrinks_only_the_primal_learning_rate() {
        // lr = 1e-300 leaves every parameter bit-identical, so V never improves and the learning
        // rate decays at every validation (decay_patience = 1); the dual step stays η_μ.
        let train = data(8, 10);
        let val = data(4, 11);
        let params = TrainParams { lr: 1e-300, lr_dual: 0.3, n_steps: 4, eval_every: 1, decay_patience: 1, ..quick() };
        let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), params, 2, &train, 3).unwrap();
        let report = t.train(&train, &val, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
        assert_eq!(report.n_decays, 4, "{report:?}");
        assert!((t.learning_rate() - 1e-300 * 0.5f64.powi(4)).abs() < 1e-310);
        assert_eq!(report.points.len(), 5);
        assert!(report.points.iter().all(|p| p.duals.len() == 2 && p.kappas.len() == 2));
        assert_eq!(report.points.last().unwrap().duals, t.duals());
        // After the four decays a step still moves the duals by the full η_μ (ô − ε).
        let before = t.duals().to_vec();
        let batch: Vec<&Instance> = train.iter().collect();
        let r = t.step(&batch).unwrap();
        for (g, mu0) in before.iter().enumerate() {
            let want = (mu0 + 0.3 * (r.outage[g] - 0.1)).clamp(0.0, 100.0);
            assert!((t.duals()[g] - want).abs() < 1e-12, "g{g}: {} vs {want}", t.duals()[g]);
        }
    }

    #[test]
    fn dual_step_follows_the_signal_of_the_loss() {
        let train = data(12, 12);
        let batch: Vec<&Instance> = train.iter().collect();
        let mut discriminates = false;
        for loss in [ConstraintLoss::default(), ConstraintLoss::Quantile] {
            let params = TrainParams { loss: loss.clone(), lr_dual: 0.7, mu_init: 0.5, ..quick() };
            let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), params, 2, &train, 4).unwrap();
            // The batch outage is the exact outage of the network before the step.
            let before = t.evaluate(&train).unwrap();
            let r = t.step(&batch).unwrap();
            assert_eq!(r.n_masked, 0);
            for g in 0..2 {
                assert!((r.outage[g] - before.outage[g]).abs() < 1e-12, "{r:?} vs {before:?}");
                let delta = match loss {
                    ConstraintLoss::Annealing { .. } => r.outage[g] - 0.1,
                    ConstraintLoss::Quantile => r.constraint[g],
                };
                let mu = (0.5 + 0.7 * delta).clamp(0.0, 100.0);
                assert!((t.duals()[g] - mu).abs() < 1e-12, "{loss:?} g{g}: {} vs {mu}", t.duals()[g]);
                discriminates |= (r.outage[g] - 0.1 - r.constraint[g]).abs() > 1e-3;
            }
        }
        assert!(discriminates, "quantile and exact outage coincide: the test cannot tell them apart");
    }

    #[test]
    fn dual_lower_bound_lets_an_over_fulfilled_group_go_negative() {
        let train = data(12, 12);
        let batch: Vec<&Instance> = train.iter().collect();
        // ε = 0.9: the batch outage is far below ε, so the dual step is negative.
        for mu_min in [0.0, -1.0, -0.01] {
            let constraint_form =
                if mu_min < 0.0 { ConstraintForm::Equality { mu_min } } else { ConstraintForm::Inequality };
            let params = TrainParams { epsilon: 0.9, lr_dual: 0.7, mu_init: 0.0, constraint_form, ..quick() };
            let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), params, 2, &train, 4).unwrap();
            let r = t.step(&batch).unwrap();
            for g in 0..2 {
                assert!(r.outage[g] < 0.9, "{r:?}");
                let want = (0.7 * (r.outage[g] - 0.9)).max(mu_min);
                assert!((t.duals()[g] - want).abs() < 1e-12, "mu_min {mu_min} g{g}: {} vs {want}", t.duals()[g]);
                assert!(if mu_min < -0.7 { t.duals()[g] < -0.01 } else { t.duals()[g] == mu_min });
            }
        }
        for bad in [0.0, 0.1, f64::NAN, -f64::INFINITY] {
            let constraint_form = ConstraintForm::Equality { mu_min: bad };
            assert!(TrainParams { constraint_form, ..quick() }.check().is_err(), "{bad}");
        }
        let p: TrainParams = serde_json::from_str(r#"{"constraint_form": {"equality": {"mu_min": -1.0}}}"#).unwrap();
        assert_eq!(p.constraint_form, ConstraintForm::Equality { mu_min: -1.0 });
    }

    #[test]
    fn hostile_batch_never_yields_non_finite_parameters() {
        let mut train = data(6, 4);
        train[0].h_est[0].fill(beamlab_linalg_ops::c64::new(0.0, 0.0)); // zero estimate
        train[1].targets = vec![1e12; 3]; // absurd targets
        train[2].h[1][0] = beamlab_linalg_ops::c64::new(f64::NAN, 0.0); // corrupted truth
        train[3].h_est[2].mapv_inplace(|z| z * 1e120); // overflowing estimate
        train[4].zeta = 0.0;
        for loss in [ConstraintLoss::default(), ConstraintLoss::Quantile] {
            let params = TrainParams { lr: 10.0, clip_percentile: 100.0, loss, ..quick() };
            let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), params, 2, &train, 5).unwrap();
            let batch: Vec<&Instance> = train.iter().collect();
            for _ in 0..3 {
                let r = t.step(&batch).unwrap();
                assert!(r.n_masked >= 2, "{r:?}");
                assert!(all_finite(t.vars()).unwrap());
                assert!(t.duals().iter().chain(t.kappas()).all(|x| x.is_finite()));
            }
        }
    }

    #[test]
    fn infeasible_instances_get_only_the_recovery_gradient() {
        let mut train = data(2, 8);
        for inst in &mut train {
            inst.targets = vec![1e9; 3];
        }
        let batch: Vec<&Instance> = train.iter().collect();
        let masked = TrainParams { infeasible_penalty: 0.0, ..quick() };
        let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), masked, 2, &train, 5).unwrap();
        let r = t.step(&batch).unwrap();
        assert!(r.skipped && r.n_masked == 2, "{r:?}");
        let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), quick(), 2, &train, 5).unwrap();
        let before = coefficients(t.model(), &train[0]).unwrap().1;
        assert!(!t.step(&batch).unwrap().skipped);
        let after = coefficients(t.model(), &train[0]).unwrap().1;
        assert!(before != after);
    }

    fn stat_data(n: usize, seed: u64, n_samples: usize) -> Vec<StatInstance> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let sc = Scenario { angular_spread_deg: 5.0, ..Scenario::default() };
        (0..n)
            .map(|i| crate::statistical::draw_stat_instance(&sc, [1, 4][i % 2], n_samples, i % 2, &mut rng).unwrap())
            .collect()
    }

    fn stat_trainer(params: TrainParams, train: &[StatInstance], seed: u64, two: bool, kb: f64) -> Trainer {
        let st = UnrollSettings { softmin_sharpness: kb, ..settings(100.0) };
        Trainer::statistical(&GcnConfig::default(), st, params, 2, train, seed, two).unwrap()
    }

    /// The system step's coefficient gradients (both networks' heads) against central
    /// differences of `L = Σ_t (Σ_k g_tk d_tk + g_P P_t)` with the analog selection fixed.
    #[test]
    fn statistical_system_gradient_matches_finite_differences() {
        let systems = stat_data(6, 31, 3);
        for two in [false, true] {
            let t = stat_trainer(quick(), &systems, 3, two, 0.0);
            let mut checked = 0;
            for sys in &systems {
                let view = sys.view();
                let heads = t.heads(view).unwrap();
                assert_eq!(heads.heads.len(), if two { 4 } else { 1 });
                let fwd = t.forward_system(view, &heads);
                let outs: Vec<_> = fwd
                    .samples
                    .iter()
                    .zip(&heads.of_sample)
                    .map(|(o, &h)| {
                        o.as_ref().ok().map(|o| (heads.heads[h].0.clone(), heads.heads[h].1.clone(), o.clone()))
                    })
                    .collect();
                if outs.iter().any(Option::is_none) {
                    continue;
                }
                let gm: Vec<Vec<f64>> =
                    (0..3).map(|s| (0..3).map(|k| 0.3 * (s as f64 + 1.0) - 0.2 * k as f64).collect()).collect();
                let gp = 0.04;
                let grads = t.backward_system(view, &heads, &fwd.steps, &outs, &gm, &[gp; 3]).unwrap();
                let (selection, analog) = {
                    let o = outs[0].as_ref().unwrap();
                    (o.2.selection.clone(), o.2.analog.clone())
                };
                // The loss with every sample's coefficients given by `coeffs_of(sample)`.
                let loss = |coeffs_of: &dyn Fn(usize) -> Array2<f64>| -> f64 {
                    sys.samples
                        .iter()
                        .enumerate()
                        .map(|(s, sample)| {
                            let o = evaluate_analog(sample, &coeffs_of(s), analog.clone(), &selection, &t.settings)
                                .unwrap();
                            o.margin_db.iter().zip(&gm[s]).map(|(d, g)| d * g).sum::<f64>() + gp * o.power()
                        })
                        .sum()
                };
                for (h, (_, c)) in heads.heads.iter().enumerate() {
                    let uses = |s: usize| heads.of_sample[s] == h;
                    if !(0..3).any(uses) {
                        // The analog head of the 2GCN: no gradient with the selection fixed.
                        assert!(grads[h].is_none(), "head {h} has a gradient without straight-through");
                        continue;
                    }
                    let an = grads[h].as_ref().unwrap();
                    for ((u, i), &g) in an.indexed_iter() {
                        let step = 1e-6 * c[[u, i]];
                        let at = |delta: f64| {
                            let mut cp = c.clone();
                            cp[[u, i]] += delta;
                            loss(&|s| if uses(s) { cp.clone() } else { heads.heads[heads.of_sample[s]].1.clone() })
                        };
                        let fd = (at(step) - at(-step)) / (2.0 * step);
                        let rel = (fd - g).abs() / fd.abs().max(1e-2);
                        assert!(rel < 1e-5, "two {two} head {h} c[{u},{i}]: fd {fd} vs {g} (rel {rel:e})");
                    }
                }
                checked += 1;
            }
            assert!(checked >= 2, "only {checked} systems with every sample feasible");
        }
    }

    /// `∂L/∂A*` summed over the samples (the input of the straight-through path) against central
    /// differences of the system loss moving the common `A` of all samples.
    #[test]
    fn statistical_analog_gradient_is_the_sum_over_samples() {
        let systems = stat_data(4, 32, 3);
        let t = stat_trainer(quick(), &systems, 3, true, 5.0);
        let sys = &systems[0];
        let heads = t.heads(sys.view()).unwrap();
        let fwd = t.forward_system(sys.view(), &heads);
        let outs: Vec<&UnrolledOutput> = fwd.samples.iter().map(|o| o.as_ref().unwrap()).collect();
        let gm = [0.4, -0.3, 0.2];
        let mut d_a = Array2::<c64>::zeros(outs[0].analog.dim());
        for (sample, o) in sys.samples.iter().zip(&outs) {
            d_a += &backward(sample, o, &gm, 0.05).unwrap().analog;
        }
        let loss = |a: &Array2<c64>| -> f64 {
            sys.samples
                .iter()
                .zip(&outs)
                .map(|(sample, o)| {
                    let e = evaluate_analog(sample, &o.coeffs, a.clone(), &o.selection, &t.settings).unwrap();
                    e.margin_db.iter().zip(&gm).map(|(d, g)| d * g).sum::<f64>() + 0.05 * e.power()
                })
                .sum()
        };
        for seed in 0..2 {
            let e = crate::util::testutil::rand_mat(16, 5, 90 + seed);
            let step = 1e-6;
            let a0 = &outs[0].analog;
            let fd = (loss(&(a0 + &e.mapv(|z| z * step))) - loss(&(a0 - &e.mapv(|z| z * step)))) / (2.0 * step);
            let an = 2.0 * d_a.iter().zip(e.iter()).map(|(g, d)| (g.conj() * d).re).sum::<f64>();
            assert!((fd - an).abs() < 1e-5 * fd.abs().max(1e-2), "fd {fd} vs {an}");
        }
        // The step routes it through the straight-through path to the analog head.
        let outs_t: Vec<_> = fwd
            .samples
            .iter()
            .zip(&heads.of_sample)
            .map(|(o, &h)| o.as_ref().ok().map(|o| (heads.heads[h].0.clone(), heads.heads[h].1.clone(), o.clone())))
            .collect();
        assert!(!fwd.steps.is_empty(), "the selection recorded no trials");
        let grads =
            t.backward_system(sys.view(), &heads, &fwd.steps, &outs_t, &vec![gm.to_vec(); 3], &[0.05; 3]).unwrap();
        let mut sel = outs[0].clone();
        sel.coeffs.clone_from(&heads.heads[0].1);
        sel.steps.clone_from(&fwd.steps);
        let expected = straight_through_gradient_cov(&sys.r_hat, sys.targets(), &sel, &d_a, &t.settings).unwrap();
        let got = grads[0].as_ref().unwrap();
        assert!(expected.iter().any(|x| x.abs() > 1e-9), "{expected}");
        assert!(
            got.iter().zip(&expected).all(|(a, b)| (a - b).abs() <= 1e-12 * b.abs().max(1.0)),
            "{got} vs {expected}"
        );
    }

    #[test]
    fn hostile_statistical_batch_never_yields_non_finite_parameters() {
        let mut systems = stat_data(6, 33, 3);
        let zero = beamlab_linalg_ops::c64::new(0.0, 0.0);
        systems[0].r_hat[0].fill(zero); // zero statistics
        for s in &mut systems[0].samples {
            s.h_est[0].fill(zero);
        }
        for s in &mut systems[1].samples {
            s.targets = vec![1e12; 3]; // absurd targets
        }
        systems[2].samples[1].h[1][0] = beamlab_linalg_ops::c64::new(f64::NAN, 0.0); // corrupted truth
        systems[3].r_hat[2].mapv_inplace(|z| z * 1e120); // overflowing statistics
        systems[3].samples[0].h_est[2].mapv_inplace(|z| z * 1e120);
        systems[4].r_hat[1][[0, 0]] = beamlab_linalg_ops::c64::new(f64::NAN, 0.0); // corrupted statistics
        for s in &mut systems[5].samples {
            s.zeta = 0.0;
        }
        for two in [false, true] {
            for loss in [ConstraintLoss::default(), ConstraintLoss::Quantile] {
                let params = TrainParams { lr: 10.0, clip_percentile: 100.0, loss: loss.clone(), ..quick() };
                let mut t = stat_trainer(params, &systems, 5, two, 5.0);
                let batch: Vec<&StatInstance> = systems.iter().collect();
                for _ in 0..3 {
                    let r = t.step(&batch).unwrap();
                    assert!(r.n_masked >= 4, "{two} {loss:?}: {r:?}");
                    assert!(t.var_maps().into_iter().all(|m| all_finite(m).unwrap()));
                    assert!(t.duals().iter().chain(t.kappas()).all(|x| x.is_finite()));
                }
            }
        }
    }

    #[test]
    fn statistical_training_is_deterministic_and_checkpoints_both_networks() {
        let train = stat_data(8, 34, 3);
        let val = stat_data(4, 35, 3);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let mut t = stat_trainer(quick(), &train, 9, true, 5.0);
                let report = t.train(&train, &val, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
                (t, report)
            })
        };
        let (t, report) = run(2);
        let (t1, report1) = run(1);
        assert_eq!(report, report1, "thread count changed the training run");
        assert_eq!(report.points.len(), 3);
        assert!(report.n_skipped < report.n_steps, "{report:?}");
        let outs = |t: &Trainer| -> Vec<(Vec<usize>, Vec<f64>)> {
            t.infer_statistical(&val[0])
                .unwrap()
                .into_iter()
                .filter_map(Result::ok)
                .map(|o| (o.selection, o.powers))
                .collect()
        };
        assert_eq!(outs(&t), outs(&t1));
        assert!(!outs(&t).is_empty());
        // The restored parameters give the best validation metric.
        let best = report.points.iter().map(|p| p.metric).fold(f64::INFINITY, f64::min);
        let now = t.evaluate(&val).unwrap().metric(1000.0, 0.1);
        assert!((now - best).abs() < 1e-9 * best.abs().max(1.0), "restored {now} vs best {best}");
        // Checkpoint round trip of both networks (weights and both feature statistics) into a
        // trainer with another seed and other training data (hence other statistics).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("2gcn.safetensors");
        t.save(&path).unwrap();
        let other = stat_trainer(quick(), &val, 99, true, 5.0);
        assert_ne!(outs(&other), outs(&t));
        other.load(&path).unwrap();
        assert_eq!(outs(&other), outs(&t));
        // A one-network checkpoint does not fit the two-network model, nor an instance model.
        let single = stat_trainer(quick(), &train, 9, false, 5.0);
        let p1 = dir.path().join("gcn.safetensors");
        single.save(&p1).unwrap();
        assert!(other.load(&p1).is_err());
        assert!(single.load(&path).is_err());
        // Systems of the wrong kind are typed errors.
        assert!(single.evaluate(&data(2, 1)).is_err());
        let inst_trainer = Trainer::new(&GcnConfig::default(), settings(100.0), quick(), 2, &data(4, 1), 1).unwrap();
        assert!(inst_trainer.evaluate(&val).is_err());
        assert!(
            Trainer::statistical(&GcnConfig::default(), settings(100.0), quick(), 2, &[], 1, false).is_err(),
            "empty training set"
        );
    }

    #[test]
    fn param_averaging_validates_the_average_and_trains_the_iterate() {
        let train = data(8, 6);
        let val = data(6, 7);
        let params = |beta| TrainParams {
            n_steps: 2,
            batch_size: 8,
            eval_every: 1,
            lr: 3e-2,
            param_averaging: beta,
            ..TrainParams::default()
        };
        let beta = 0.5;
        let run = |b| {
            let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), params(b), 2, &train, 9).unwrap();
            let r = t.train(&train, &val, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
            r.points.iter().map(|p| p.metric).collect::<Vec<_>>()
        };
        let (plain, averaged) = (run(None), run(Some(beta)));
        // Replay the iterates by hand: the same two batches (the whole set each time, in the
        // order the training loop shuffles it).
        let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), params(None), 2, &train, 9).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut average = snapshot(t.vars()).unwrap();
        for step in 1..=2 {
            let mut perm: Vec<usize> = (0..train.len()).collect();
            perm.shuffle(&mut rng);
            let batch: Vec<&Instance> = perm.iter().map(|&i| &train[i]).collect();
            t.step(&batch).unwrap();
            let iterate = snapshot(t.vars()).unwrap();
            let metric_of = |vars| {
                restore(t.vars(), vars).unwrap();
                t.evaluate(&val).unwrap().metric(1000.0, 0.1)
            };
            for ((_, a), (_, x)) in average.iter_mut().zip(&iterate) {
                *a = ((&*a * beta).unwrap() + (x * (1.0 - beta)).unwrap()).unwrap();
            }
            let (m_iterate, m_average) = (metric_of(&iterate), metric_of(&average));
            restore(t.vars(), &iterate).unwrap(); // training continues from the iterate
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
            assert!(close(plain[step], m_iterate), "step {step}: {} vs {m_iterate}", plain[step]);
            assert!(close(averaged[step], m_average), "step {step}: {} vs {m_average}", averaged[step]);
            assert!(!close(m_iterate, m_average), "step {step}: averaging changed nothing");
        }
        for bad in [0.0, 1.0, f64::NAN] {
            assert!(Trainer::new(&GcnConfig::default(), settings(100.0), params(Some(bad)), 2, &train, 9).is_err());
        }
    }

    #[test]
    fn train_loop_validates_restores_and_checkpoints() {
        let train = data(8, 6);
        let val = data(4, 7);
        let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), quick(), 2, &train, 9).unwrap();
        let report = t.train(&train, &val, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
        assert_eq!(report.points.len(), 3);
        let best = report.points.iter().map(|p| p.metric).fold(f64::INFINITY, f64::min);
        let now = t.evaluate(&val).unwrap().metric(1000.0, 0.1);
        assert!((now - best).abs() < 1e-9 * best.abs().max(1.0), "restored {now} vs best {best}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gcn.safetensors");
        t.save(&path).unwrap();
        let other = Trainer::new(&GcnConfig::default(), settings(100.0), quick(), 2, &train, 99).unwrap();
        other.load(&path).unwrap();
        assert_eq!(coefficients(other.model(), &val[0]).unwrap().1, coefficients(t.model(), &val[0]).unwrap().1);
        let fcn = GcnConfig { filter_order: 0, ..GcnConfig::default() };
        let small = Trainer::new(&fcn, settings(100.0), quick(), 2, &train, 1).unwrap();
        assert!(small.load(&path).is_err());
        for bad in [GcnConfig { n_layers: 0, ..GcnConfig::default() }, GcnConfig { bound: 2.0, ..GcnConfig::default() }]
        {
            assert!(Trainer::new(&bad, settings(100.0), quick(), 2, &train, 1).is_err());
        }
        assert!(
            Trainer::new(&GcnConfig::default(), settings(100.0), TrainParams { epsilon: 1.5, ..quick() }, 2, &train, 1)
                .is_err()
        );
    }
}
