//! The Lagrangian of a batch and the dual updates (module docs of [`super`]): the constraint
//! estimates `ĝ_g` (annealing (51) or quantile (53)) with their gradients with respect to the
//! SINR margins, the exact batch outage `ô_g`, the power term, the recovery penalty of infeasible
//! virtual problems, the dual ascent step and the annealing slope update (52).

use ndarray::Array2;

use super::params::{ConstraintLoss, TrainParams};
use crate::data::Instance;
use crate::unroll::UnrolledOutput;

/// The Lagrangian of a batch of samples and its gradients with respect to the solver outputs.
pub(super) struct BatchObjective {
    /// Lagrangian value.
    pub(super) loss: f64,
    /// Constraint estimates `ĝ_g` (`NaN` for groups absent from the batch).
    pub(super) constraint: Vec<f64>,
    /// The `ε`-quantile `q̂_ε(d)` of each group's margins (`NaN` when absent).
    pub(super) quantiles: Vec<f64>,
    /// Exact empirical outage `ô_g` of the unmasked samples' users (`NaN` when absent).
    pub(super) outage: Vec<f64>,
    /// `∂L/∂d_ik` per sample and user.
    pub(super) grad_margin: Vec<Vec<f64>>,
    /// `∂L/∂P_i` per sample (0 for masked samples).
    pub(super) grad_power: Vec<f64>,
}

/// The Lagrangian `mean_i P_i / P_max + Σ_g μ_g ĝ_g` over the unmasked samples (`outs[i]` is
/// `None` for a masked sample), with `n_groups = mu.len()`.
pub(super) fn batch_objective(
    samples: &[&Instance],
    outs: &[Option<&UnrolledOutput>],
    params: &TrainParams,
    mu: &[f64],
    kappa: &[f64],
    p_max: f64,
) -> BatchObjective {
    let n_groups = mu.len();
    let n_ok = outs.iter().filter(|o| o.is_some()).count();
    let g_of = |i: usize| samples[i].group.min(n_groups - 1);
    let mut grad_margin: Vec<Vec<f64>> = samples.iter().map(|inst| vec![0.0; inst.targets.len()]).collect();
    let mut constraint = vec![f64::NAN; n_groups];
    let mut quantiles = vec![f64::NAN; n_groups];
    let mut outage = vec![f64::NAN; n_groups];
    for (g, cons) in constraint.iter_mut().enumerate() {
        let members: Vec<(usize, usize)> = (0..samples.len())
            .filter(|&i| outs[i].is_some() && g_of(i) == g)
            .flat_map(|i| (0..samples[i].targets.len()).map(move |k| (i, k)))
            .collect();
        if members.is_empty() {
            continue;
        }
        let d: Vec<f64> = members.iter().map(|&(i, k)| outs[i].map_or(0.0, |o| o.margin_db[k])).collect();
        let (q, weights) = quantile(&d, params.epsilon);
        quantiles[g] = q;
        let n = d.len() as f64;
        // Same outage rule as `evaluate_designs`: SINR < γ (1 − 1e-9).
        let n_out = members
            .iter()
            .filter(|&&(i, k)| outs[i].is_some_and(|o| o.sinr[k] < samples[i].targets[k] * (1.0 - 1e-9)))
            .count();
        outage[g] = n_out as f64 / n;
        match params.loss {
            ConstraintLoss::Annealing { .. } => {
                let kappa = kappa[g];
                let s: Vec<f64> = d.iter().map(|x| sigmoid(kappa * x)).collect();
                *cons = (1.0 - params.epsilon) - s.iter().sum::<f64>() / n;
                for (&(i, k), sv) in members.iter().zip(&s) {
                    grad_margin[i][k] = -mu[g] * kappa * sv * (1.0 - sv) / n;
                }
            }
            ConstraintLoss::Quantile => {
                *cons = -q;
                for (idx, w) in weights {
                    let (i, k) = members[idx];
                    grad_margin[i][k] -= mu[g] * w;
                }
            }
        }
    }
    let mean_power =
        if n_ok == 0 { 0.0 } else { outs.iter().flatten().map(|o| o.power()).sum::<f64>() / (n_ok as f64 * p_max) };
    let loss = mean_power + constraint.iter().zip(mu).filter(|(c, _)| c.is_finite()).map(|(c, m)| c * m).sum::<f64>();
    let grad_power = outs.iter().map(|o| o.map_or(0.0, |_| 1.0 / (n_ok as f64 * p_max))).collect();
    BatchObjective { loss, constraint, quantiles, outage, grad_margin, grad_power }
}

/// The dual ascent step `μ_g ← clip(μ_g + η_μ δ_g, μ_min, μ_max)` (`δ_g = ô_g − ε` for the
/// annealing loss, `ĝ_g` for the quantile loss) and the annealing slope update (52)
/// `κ_g ← (1 − η_κ) κ_g + η_κ min(κ_max, c / [−q̂_ε]_+)`, for every group present in the batch.
pub(super) fn update_duals(params: &TrainParams, obj: &BatchObjective, mu: &mut [f64], kappa: &mut [f64]) {
    let mu_min = params.constraint_form.mu_min();
    for (g, (mu_g, kappa_g)) in mu.iter_mut().zip(kappa.iter_mut()).enumerate() {
        if !obj.constraint[g].is_finite() {
            continue;
        }
        let signal = match params.loss {
            ConstraintLoss::Annealing { .. } => obj.outage[g] - params.epsilon,
            ConstraintLoss::Quantile => obj.constraint[g],
        };
        *mu_g = (*mu_g + params.lr_dual * signal).clamp(mu_min, params.mu_max);
        if let ConstraintLoss::Annealing { eta_kappa, kappa_max, scale, .. } = params.loss {
            let q = obj.quantiles[g];
            let target = if -q > 0.0 { (scale / -q).min(kappa_max) } else { kappa_max };
            *kappa_g = (1.0 - eta_kappa) * *kappa_g + eta_kappa * target;
        }
    }
}

/// Gradient of the recovery penalty `λ' Σ_{k,i} (ln c_ki − ln c0_i)²` at coefficients `c: [K × 4]`
/// (`λ' = λ / |B|`): it pulls the coefficients of an infeasible virtual problem back towards the
/// estimate-as-truth values `c0 = (1, e^{−3}, 1, e^{−3})`.
pub(super) fn recovery_gradient(c: &Array2<f64>, penalty: f64) -> Array2<f64> {
    const LN_C0: [f64; 4] = [0.0, -3.0, 0.0, -3.0];
    Array2::from_shape_fn(c.dim(), |(u, i)| 2.0 * penalty * (c[[u, i]].ln() - LN_C0[i]) / c[[u, i]])
}

/// The linearly interpolated empirical `eps`-quantile of `values` and its weights on the two
/// order statistics it interpolates (`(index, ∂q/∂value)`).
pub(super) fn quantile(values: &[f64], eps: f64) -> (f64, [(usize, f64); 2]) {
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
