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
//! Primal step: AdamW on `∂L/∂θ` (through `unroll::backward` and the network) after
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
//! Systems ([`System`], [`Systems`]): the loop runs on instances (Tables 2–3) or on
//! statistical-CSI systems (Table 4, [`Trainer::statistical`]): the analog network sees the
//! statistical CSI and drives the selection on `R̂`, each sample's baseband problem uses the same
//! coefficients (U-G-HBF-GCN) or those of a second network on the sample's instantaneous CSI
//! (U-G-HBF-2GCN). A batch's samples are flattened in order (an instance is its own single
//! sample), so `B` above runs over samples; each sample's coefficient gradient goes to the network
//! output its baseband problem used, and `∂L/∂A*` summed over a system's samples goes through the
//! straight-through selection gradient to the analog coefficients.

//!
//! Files: `params` (hyper-parameters), `objective` (Lagrangian and dual updates), `schedule`
//! (AutoClip, decay, early stopping, averaging, the validation trace), `evaluation` (exact
//! outage and power of designs), `system` (what is trained on), `trainer` (construction,
//! inference, the loop, checkpoints) and `step` (one primal–dual step).

mod evaluation;
mod objective;
mod params;
mod schedule;
mod step;
mod system;
mod trainer;

#[cfg(test)]
mod tests;

pub use evaluation::EvalStats;
pub(crate) use evaluation::{evaluate_designs, evaluate_indexed};
pub use params::{ConstraintForm, ConstraintLoss, TrainParams};
pub use schedule::{TrainReport, ValPoint};
pub use system::{System, Systems};
pub use trainer::Trainer;
