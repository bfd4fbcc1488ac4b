//! Evaluation of designs on the true channels: mean power, exact empirical outage per constraint
//! group, failed designs (the numbers every table reports and validation uses).

use rayon::prelude::*;

use crate::Error;
use crate::data::Instance;

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
/// Errors of `design`; [`Error::InvalidParameter`] for `n_groups = 0`.
pub(crate) fn evaluate_designs<F>(
    instances: &[Instance],
    n_groups: usize,
    p_max: f64,
    design: F,
) -> Result<EvalStats, Error>
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
/// Errors of `design`; [`Error::InvalidParameter`] for `n_groups = 0`.
pub(crate) fn evaluate_indexed<I, F>(
    instances: &[I],
    n_groups: usize,
    p_max: f64,
    design: F,
) -> Result<EvalStats, Error>
where
    I: std::borrow::Borrow<Instance> + Sync,
    F: Fn(usize, &Instance) -> Result<Option<(f64, Vec<f64>)>, Error> + Sync,
{
    if n_groups == 0 {
        return Err(Error::param("n_groups", "at least one constraint group, got 0"));
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
