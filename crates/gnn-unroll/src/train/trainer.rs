//! The [`Trainer`]: a U-G-HBF model with its optimiser and primal–dual state; construction,
//! inference, validation, the training loop and checkpoints (one step is in `step.rs`).

use beamlab_candle_bridge::candle_core::{Tensor, Var};
use beamlab_candle_bridge::candle_nn::{AdamW, Optimizer, VarMap};
use beamlab_candle_bridge::{all_finite, load_checkpoint, restore, save_checkpoint, snapshot};
use rand::Rng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use super::evaluation::{EvalStats, evaluate_indexed};
use super::params::{ConstraintLoss, TrainParams};
use super::schedule::{AutoClip, IterateAverage, Patience, TrainReport, ValPoint, Verdict};
use super::system::{Inputs, Prepared, System, Systems};
use crate::data::{Instance, StatInstance};
use crate::model::{Gcn, GcnConfig, build, coefficients, fit_normalisation, fit_stat_normalisation};
use crate::unroll::{Architecture, UnrollSettings, UnrolledOutput, evaluate_analog, forward_arch};
use crate::{CsiKind, Error};

/// A U-G-HBF model (one network, or the analog and baseband networks of U-G-HBF-2GCN) with its
/// optimiser and primal–dual state.
pub struct Trainer {
    pub(super) model: Gcn,
    pub(super) vars: VarMap,
    pub(super) inputs: Inputs,
    pub(super) opt: AdamW,
    pub(super) trainable: Vec<Var>,
    pub(super) settings: UnrollSettings,
    pub(super) params: TrainParams,
    pub(super) n_groups: usize,
    pub(super) mu: Vec<f64>,
    pub(super) kappa: Vec<f64>,
    pub(super) clip: AutoClip,
    pub(super) architecture: Architecture,
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
            return Err(Error::param("n_groups", "at least one constraint group, got 0"));
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
            return Err(Error::param("n_groups", "at least one constraint group, got 0"));
        }
        if train.iter().any(|s| s.samples.is_empty()) {
            return Err(Error::Empty { what: "channel samples of a statistical-CSI system" });
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
            let data = map.data().lock().map_err(|_| Error::PoisonedLock)?;
            let mut named: Vec<_> = data.iter().filter(|(n, _)| !n.starts_with("norm.")).collect();
            named.sort_by(|a, b| a.0.cmp(b.0));
            trainable.extend(named.into_iter().map(|(_, v)| v.clone()));
        }
        // candle-bridge's AdamW over the trainable variables only (the `norm.*` statistics are
        // variables of the graph too, but stay fixed); the names are only keys.
        let opt_vars = VarMap::new();
        {
            let mut data = opt_vars.data().lock().map_err(|_| Error::PoisonedLock)?;
            for (i, v) in trainable.iter().enumerate() {
                data.insert(format!("t{i}"), v.clone());
            }
        }
        let opt = beamlab_candle_bridge::adam(&opt_vars, params.lr)?;
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
            clip: AutoClip::new(params.clip_percentile),
            params,
            n_groups,
            architecture: Architecture::Hybrid,
        })
    }

    /// Every variable map: the (analog) network's, then the baseband network's (2GCN).
    pub(super) fn var_maps(&self) -> Vec<&VarMap> {
        let mut maps = vec![&self.vars];
        if let Inputs::Statistical { baseband: Some((_, b)) } = &self.inputs {
            maps.push(b);
        }
        maps
    }

    pub(super) fn snapshot_all(&self) -> Result<Vec<Vec<(String, Tensor)>>, Error> {
        Ok(self.var_maps().into_iter().map(snapshot).collect::<Result<Vec<_>, _>>()?)
    }

    pub(super) fn restore_all(&self, snap: &[Vec<(String, Tensor)>]) -> Result<(), Error> {
        for (map, s) in self.var_maps().into_iter().zip(snap) {
            restore(map, s)?;
        }
        Ok(())
    }

    pub(super) fn all_params_finite(&self) -> Result<bool, Error> {
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
            let mut out = joint.data().lock().map_err(|_| Error::PoisonedLock)?;
            for (prefix, map) in [("analog", &self.vars), ("baseband", b)] {
                let data = map.data().lock().map_err(|_| Error::PoisonedLock)?;
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
    /// candle errors of the network; solver errors of the unrolled pass ([`Error::Infeasible`] or
    /// [`Error::Singular`] when the virtual problem has no solution).
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
        let prepared = self.prepare(System::Statistical(sys))?;
        Ok(sys.samples.iter().enumerate().map(|(t, sample)| self.infer_prepared(&prepared, t, sample)).collect())
    }

    /// Per-system inference work done once for all samples (statistical: coefficients and the
    /// analog selection).
    fn prepare(&self, view: System<'_>) -> Result<Prepared, Error> {
        match view {
            System::Instance(_) if matches!(self.inputs, Inputs::Instantaneous) => {
                Ok(Prepared { coeffs: Vec::new(), selection: None })
            }
            System::Instance(_) => {
                Err(Error::WrongCsiKind { expected: CsiKind::Statistical, found: CsiKind::Instantaneous })
            }
            System::Statistical(sys) => {
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
                let c = prepared
                    .coeffs
                    .get(t)
                    .ok_or_else(|| Error::shape("coefficient sets (one per sample)", t + 1, prepared.coeffs.len()))?;
                evaluate_analog(sample, c, analog.clone(), selection, &self.settings)
            }
        }
    }

    /// Validation statistics of the current network(s) over every sample of `systems` (an
    /// instance is one sample; a failed sample counts as all users in outage at `P_max`).
    ///
    /// # Errors
    /// candle errors; a system of the wrong kind for this trainer.
    pub fn evaluate<'a>(&self, systems: impl Into<Systems<'a>>) -> Result<EvalStats, Error> {
        let views: Vec<System<'_>> = systems.into().iter().collect();
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

    /// Trains on `train` with validation on `val` (module docs); restores the best parameters.
    ///
    /// # Errors
    /// [`Error::Empty`] for an empty training or validation set; [`Error::WrongCsiKind`] for
    /// systems of the other kind; candle errors.
    pub fn train<'a, R: Rng + ?Sized>(
        &mut self,
        train: impl Into<Systems<'a>>,
        val: impl Into<Systems<'a>>,
        rng: &mut R,
    ) -> Result<TrainReport, Error> {
        let (train, val) = (train.into(), val.into());
        if train.is_empty() {
            return Err(Error::Empty { what: "training set" });
        }
        if val.is_empty() {
            return Err(Error::Empty { what: "validation set" });
        }
        let _span = tracing::info_span!("gnn_unroll_train", n_train = train.len(), n_val = val.len()).entered();
        let mut average = match self.params.param_averaging {
            Some(beta) => Some(IterateAverage::new(beta, &self.trainable)?),
            None => None,
        };
        let mut patience = Patience::new(self.params.decay_patience, self.params.stop_patience);
        let first = self.validation_point(0, val)?;
        let mut best = (first.metric, 0usize, self.snapshot_all()?);
        let mut points = vec![first];
        let mut order: Vec<usize> = Vec::new();
        let (mut n_skipped, mut n_steps, mut n_decays) = (0usize, 0usize, 0usize);
        while n_steps < self.params.n_steps {
            let batch = next_batch(train, self.params.batch_size, &mut order, rng);
            n_skipped += usize::from(self.step(&batch)?.skipped);
            n_steps += 1;
            if let Some(avg) = average.as_mut() {
                avg.update(&self.trainable)?;
            }
            if n_steps % self.params.eval_every != 0 {
                continue;
            }
            // With averaging, validate (and keep as the best) the averaged parameters, then
            // continue training from the current iterate.
            let iterate = match &average {
                Some(avg) => {
                    let snap = self.snapshot_all()?;
                    avg.load_into(&self.trainable)?;
                    Some(snap)
                }
                None => None,
            };
            let point = self.validation_point(n_steps, val)?;
            let improved = point.metric < best.0;
            if improved {
                best = (point.metric, n_steps, self.snapshot_all()?);
            }
            points.push(point);
            if let Some(snap) = iterate {
                self.restore_all(&snap)?;
            }
            match patience.after_validation(improved) {
                Verdict::Improved | Verdict::Wait => {}
                Verdict::Stop => break,
                Verdict::Decay => {
                    let lr = self.opt.learning_rate() * self.params.decay_factor;
                    self.opt.set_learning_rate(lr);
                    n_decays += 1;
                }
            }
        }
        self.restore_all(&best.2)?;
        Ok(TrainReport { points, n_steps, n_skipped, best_step: best.1, n_decays })
    }

    /// Validation statistics, `V` (54) and the dual state after `step` steps.
    fn validation_point(&self, step: usize, val: Systems<'_>) -> Result<ValPoint, Error> {
        let stats = self.evaluate(val)?;
        let metric = stats.metric(self.params.mu_bar, self.params.epsilon);
        Ok(ValPoint { step, stats, metric, duals: self.mu.clone(), kappas: self.kappa.clone() })
    }
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

/// The next batch: `batch_size` items (at most the whole set) from `order`, which is refilled
/// with a fresh permutation of the set whenever it holds fewer.
fn next_batch<'a, R: Rng + ?Sized>(
    set: Systems<'a>,
    batch_size: usize,
    order: &mut Vec<usize>,
    rng: &mut R,
) -> Vec<System<'a>> {
    let take = batch_size.min(set.len());
    if order.len() < take {
        let mut perm: Vec<usize> = (0..set.len()).collect();
        perm.shuffle(rng);
        order.extend(perm);
    }
    order.drain(..take).filter_map(|i| set.get(i)).collect()
}
