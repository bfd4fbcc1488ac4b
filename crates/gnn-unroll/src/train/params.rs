//! Training hyper-parameters: the outage approximation, the form of the constraint and the
//! schedule values (all checked by [`TrainParams::check`]).

use crate::Error;

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
    pub(crate) fn mu_min(self) -> f64 {
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
    /// [`Error::InvalidParameter`] naming the first field out of range (with its value).
    pub fn check(&self) -> Result<(), Error> {
        let pos = |x: f64| x.is_finite() && x > 0.0;
        let counts = [
            ("batch_size", self.batch_size),
            ("eval_every", self.eval_every),
            ("decay_patience", self.decay_patience),
            ("stop_patience", self.stop_patience),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(Error::param(name, "must be >= 1, got 0"));
        }
        // (field, value, holds, requirement)
        let reals = [
            ("lr", self.lr, pos(self.lr), "finite and > 0"),
            ("lr_dual", self.lr_dual, self.lr_dual.is_finite() && self.lr_dual >= 0.0, "finite and >= 0"),
            ("mu_init", self.mu_init, self.mu_init >= 0.0, ">= 0"),
            ("mu_max", self.mu_max, pos(self.mu_max), "finite and > 0"),
            ("mu_init", self.mu_init, self.mu_init <= self.mu_max, "<= mu_max"),
            ("mu_bar", self.mu_bar, self.mu_bar.is_finite() && self.mu_bar >= 0.0, "finite and >= 0"),
            ("epsilon", self.epsilon, self.epsilon > 0.0 && self.epsilon < 1.0, "in (0, 1)"),
            ("decay_factor", self.decay_factor, self.decay_factor > 0.0 && self.decay_factor <= 1.0, "in (0, 1]"),
            (
                "infeasible_penalty",
                self.infeasible_penalty,
                self.infeasible_penalty.is_finite() && self.infeasible_penalty >= 0.0,
                "finite and >= 0",
            ),
            (
                "clip_percentile",
                self.clip_percentile,
                self.clip_percentile > 0.0 && self.clip_percentile <= 100.0,
                "in (0, 100]",
            ),
        ];
        if let Some((name, value, _, need)) = reals.iter().find(|(_, _, ok, _)| !ok) {
            return Err(Error::param(name, format!("must be {need}, got {value}")));
        }
        if let ConstraintForm::Equality { mu_min } = self.constraint_form {
            if !(mu_min.is_finite() && mu_min < 0.0) {
                return Err(Error::param("constraint_form.mu_min", format!("must be finite and < 0, got {mu_min}")));
            }
        }
        if let Some(beta) = self.param_averaging.filter(|b| !(*b > 0.0 && *b < 1.0)) {
            return Err(Error::param("param_averaging", format!("must be in (0, 1), got {beta}")));
        }
        if let ConstraintLoss::Annealing { kappa_init, eta_kappa, kappa_max, scale } = self.loss {
            let annealing = [
                ("loss.kappa_init", kappa_init, pos(kappa_init), "finite and > 0"),
                ("loss.kappa_max", kappa_max, pos(kappa_max), "finite and > 0"),
                ("loss.scale", scale, pos(scale), "finite and > 0"),
                ("loss.eta_kappa", eta_kappa, (0.0..=1.0).contains(&eta_kappa), "in [0, 1]"),
            ];
            if let Some((name, value, _, need)) = annealing.iter().find(|(_, _, ok, _)| !ok) {
                return Err(Error::param(name, format!("must be {need}, got {value}")));
            }
        }
        Ok(())
    }
}
