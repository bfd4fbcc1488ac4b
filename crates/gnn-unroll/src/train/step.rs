//! One primal–dual step (module docs of [`super`]) as a sequence of named steps: the forward
//! pass of every system, the batch Lagrangian, the backward pass to the network outputs, the
//! primal AdamW step (AutoClip, non-finite guard) and the dual step.

use beamlab_candle_bridge::candle_core::Tensor;
use beamlab_candle_bridge::candle_nn::Optimizer;
use beamlab_linalg_ops::c64;
use ndarray::Array2;
use rayon::prelude::*;

use super::Trainer;
use super::objective::{BatchObjective, batch_objective, recovery_gradient, update_duals};
use super::system::{AnalogSelection, Heads, Inputs, Masked, System, SystemForward, accumulate};
use crate::data::{Instance, StatInstance};
use crate::greedy::{GreedyStep, snr_init};
use crate::model::{N_COEFFS, coefficients, stat_coefficients};
use crate::unroll::{
    Architecture, UnrolledOutput, backward, evaluate_analog, forward_arch, select_cov, straight_through_gradient,
    straight_through_gradient_cov,
};
use crate::{CsiKind, Error};

/// What one primal–dual step did.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StepReport {
    /// Lagrangian value of the batch.
    pub(crate) loss: f64,
    /// Constraint estimates `ĝ_g` (`NaN` for groups absent from the batch).
    pub(crate) constraint: Vec<f64>,
    /// Exact empirical outage `ô_g` of the batch's unmasked users (`NaN` for absent groups).
    pub(crate) outage: Vec<f64>,
    /// Instances masked out (failed forward or non-finite values).
    pub(crate) n_masked: usize,
    /// Whether the primal update was skipped (non-finite gradient, nothing to learn from, or a
    /// rolled-back non-finite update).
    pub(crate) skipped: bool,
}

/// A sample's solver output with the head (coefficient tensor and values) it was computed from.
type SampleOutput = (Tensor, Array2<f64>, UnrolledOutput);

/// The forward pass of a batch: per system its heads and greedy steps; per sample (flattened in
/// batch order) its output, or `None` when masked, and whether it gets the recovery penalty.
struct BatchForward<'a> {
    views: Vec<System<'a>>,
    heads: Vec<Heads>,
    steps: Vec<Vec<GreedyStep>>,
    samples: Vec<&'a Instance>,
    /// Index of each system's first sample.
    offsets: Vec<usize>,
    outs: Vec<Option<SampleOutput>>,
    recoverable: Vec<bool>,
}

impl BatchForward<'_> {
    /// The sample range of system `i`.
    fn range(&self, i: usize) -> std::ops::Range<usize> {
        self.offsets[i]..self.offsets[i] + self.views[i].samples().len()
    }
}

impl Trainer {
    /// The network outputs of one system (module docs of `tables::statistical` for Table 4).
    pub(super) fn heads(&self, view: System<'_>) -> Result<Heads, Error> {
        match (view, &self.inputs) {
            (System::Instance(inst), Inputs::Instantaneous) => {
                Ok(Heads { heads: vec![coefficients(&self.model, inst)?], of_sample: vec![0] })
            }
            (System::Statistical(sys), Inputs::Statistical { baseband }) => {
                let n = sys.samples.len();
                if n == 0 {
                    return Err(Error::Empty { what: "channel samples of a statistical-CSI system" });
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
            (System::Instance(_), _) => {
                Err(Error::WrongCsiKind { expected: CsiKind::Statistical, found: CsiKind::Instantaneous })
            }
            (System::Statistical(_), _) => {
                Err(Error::WrongCsiKind { expected: CsiKind::Instantaneous, found: CsiKind::Statistical })
            }
        }
    }

    /// The analog selection of a statistical system: the greedy selection with the virtual
    /// channels of `c_a` on `R̂` ([`select_cov`]); when no visited selection is statistically
    /// feasible, the SNR initialisation (34), as in the classical designs
    /// (`tables::statistical::statistical_analog`), without trials (no straight-through path).
    pub(super) fn select_statistical(
        &self,
        sys: &StatInstance,
        c_a: &Array2<f64>,
        record: bool,
    ) -> Result<AnalogSelection, Error> {
        if self.architecture != Architecture::Hybrid {
            return Err(Error::StatisticalNeedsHybrid);
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
    pub(super) fn forward_system(&self, view: System<'_>, heads: &Heads) -> SystemForward {
        let settings = &self.settings;
        let finite = |c: &Array2<f64>| c.iter().all(|x| x.is_finite());
        let classify = |r: Result<UnrolledOutput, Error>| match r {
            Ok(o) if o.margin_db.iter().all(|d| d.is_finite()) => Ok(o),
            Err(Error::Infeasible { .. } | Error::Singular { .. }) => Err(Masked::Infeasible),
            _ => Err(Masked::Unusable),
        };
        match view {
            System::Instance(inst) => {
                let c = &heads.heads[0].1;
                let out = if finite(c) {
                    classify(forward_arch(self.architecture, inst, c, settings, true))
                } else {
                    Err(Masked::Unusable)
                };
                SystemForward { samples: vec![out], steps: Vec::new() }
            }
            System::Statistical(sys) => {
                let record = settings.softmin_sharpness > 0.0;
                let Ok((selection, analog, steps)) = self.select_statistical(sys, &heads.heads[0].1, record) else {
                    return SystemForward {
                        samples: vec![Err(Masked::Unusable); sys.samples.len()],
                        steps: Vec::new(),
                    };
                };
                let samples = sys
                    .samples
                    .iter()
                    .zip(&heads.of_sample)
                    .map(|(sample, &h)| {
                        let c = &heads.heads[h].1;
                        if !finite(c) {
                            return Err(Masked::Unusable);
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
    pub(super) fn backward_system(
        &self,
        view: System<'_>,
        heads: &Heads,
        steps: &[GreedyStep],
        outs: &[Option<SampleOutput>],
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
                System::Instance(inst) => {
                    if straight {
                        accumulate(&mut acc[0], straight_through_gradient(inst, out, &back.analog, settings).ok()?);
                    }
                }
                System::Statistical(_) => {
                    first_ok.get_or_insert(out);
                    match &mut d_analog {
                        Some(d) => *d += &back.analog,
                        None => d_analog = Some(back.analog),
                    }
                }
            }
        }
        if let (System::Statistical(sys), Some(d), Some(out)) = (view, &d_analog, first_ok) {
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
    pub(crate) fn step(&mut self, batch: &[System<'_>]) -> Result<StepReport, Error> {
        let _span = tracing::debug_span!("gnn_unroll_step", batch = batch.len()).entered();
        let fwd = self.forward_batch(batch)?;
        let outs: Vec<Option<&UnrolledOutput>> = fwd.outs.iter().map(|o| o.as_ref().map(|o| &o.2)).collect();
        let obj = batch_objective(&fwd.samples, &outs, &self.params, &self.mu, &self.kappa, self.settings.power_budget);
        let n_masked = outs.iter().filter(|o| o.is_none()).count();
        let surrogate = self.backward_batch(&fwd, &obj)?;
        let skipped = match surrogate {
            Some(s) => !self.primal_step(&s)?,
            None => true,
        };
        update_duals(&self.params, &obj, &mut self.mu, &mut self.kappa);
        Ok(StepReport { loss: obj.loss, constraint: obj.constraint, outage: obj.outage, n_masked, skipped })
    }

    /// Forward: network (candle, with graph) then the unrolled solver (ndarray). The per-system
    /// solver work runs in parallel; results keep the batch order, so they do not depend on the
    /// thread count.
    fn forward_batch<'a>(&self, batch: &[System<'a>]) -> Result<BatchForward<'a>, Error> {
        let views = batch.to_vec();
        let heads = views.iter().map(|v| self.heads(*v)).collect::<Result<Vec<_>, _>>()?;
        let solved: Vec<SystemForward> =
            views.par_iter().zip(heads.par_iter()).map(|(v, h)| self.forward_system(*v, h)).collect();
        let samples: Vec<&Instance> = views.iter().flat_map(|v| v.samples().iter()).collect();
        let offsets: Vec<usize> = views
            .iter()
            .scan(0, |acc, v| {
                let first = *acc;
                *acc += v.samples().len();
                Some(first)
            })
            .collect();
        let (mut steps, mut outs, mut recoverable) = (Vec::new(), Vec::new(), Vec::new());
        for (i, f) in solved.into_iter().enumerate() {
            steps.push(f.steps);
            for (t, o) in f.samples.into_iter().enumerate() {
                recoverable.push(o.as_ref().err() == Some(&Masked::Infeasible));
                let (ct, c) = &heads[i].heads[heads[i].of_sample[t]];
                outs.push(o.ok().map(|o| (ct.clone(), c.clone(), o)));
            }
        }
        Ok(BatchForward { views, heads, steps, samples, offsets, outs, recoverable })
    }

    /// Backward: per system the implicit gradient of the Lagrangian with respect to each head's
    /// coefficients (in parallel), plus the recovery penalty of infeasible samples, injected into
    /// candle as `Σ_heads ⟨c, g⟩` (`None` when no head has a finite gradient).
    fn backward_batch(&self, fwd: &BatchForward<'_>, obj: &BatchObjective) -> Result<Option<Tensor>, Error> {
        let mut grads_c: Vec<Option<Vec<Option<Array2<f64>>>>> = (0..fwd.views.len())
            .into_par_iter()
            .map(|i| {
                let range = fwd.range(i);
                self.backward_system(
                    fwd.views[i],
                    &fwd.heads[i],
                    &fwd.steps[i],
                    &fwd.outs[range.clone()],
                    &obj.grad_margin[range.clone()],
                    &obj.grad_power[range],
                )
            })
            .collect();
        // Infeasible virtual problems give no solver gradient; the recovery penalty
        // `λ Σ (ln c − ln c_0)² / |B|` pulls their coefficients back (`recovery_gradient`).
        let penalty = self.params.infeasible_penalty / fwd.samples.len() as f64;
        let mut surrogate: Option<Tensor> = None;
        for (i, h) in fwd.heads.iter().enumerate() {
            let mut total = grads_c[i].take().unwrap_or_else(|| vec![None; h.heads.len()]);
            for (t, &head) in h.of_sample.iter().enumerate() {
                if fwd.recoverable[fwd.offsets[i] + t] && penalty > 0.0 {
                    accumulate(&mut total[head], recovery_gradient(&h.heads[head].1, penalty));
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
        Ok(surrogate)
    }

    /// Primal step on the gradient of `surrogate`: AutoClip, AdamW, and a rollback when a
    /// parameter becomes non-finite. Returns whether the parameters moved (false for a
    /// non-finite or zero gradient norm, or a rolled-back step).
    fn primal_step(&mut self, surrogate: &Tensor) -> Result<bool, Error> {
        let mut grads = surrogate.backward()?;
        let trainable: Vec<Tensor> = self.trainable.iter().map(|v| v.as_tensor().clone()).collect();
        let mut sq = 0.0;
        for t in &trainable {
            if let Some(g) = grads.get(t) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f64>()?;
            }
        }
        let norm = sq.sqrt();
        if !(norm.is_finite() && norm > 0.0) {
            return Ok(false);
        }
        let threshold = self.clip.threshold(norm);
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
            return Ok(true);
        }
        self.restore_all(&snap)?;
        Ok(false)
    }
}
