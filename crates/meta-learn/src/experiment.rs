//! The MB-MAML experiments (paper Figs 4, 5, 8) as a [`FamilyExperiment`].
//!
//! Data (spec §1): per coherence block, `K` users drawn from the 3GPP 38.901 UMa NLOS generator
//! (or i.i.d. Rayleigh), `E‖h_k‖² = M`, `P = 1`, `σ² = 10^{−SNR/10}`; one Haar error subspace
//! `Q` per experiment (seeded from the experiment seed, shared by training and testing: the ID
//! setting); ex-Gaussian eigenvalues per block and user; `N` samples per block. Training draws
//! the error level `γ ~ U[γ_min, γ_max]` per block at the training SNR.
//!
//! Units (each trains the models it needs, so units are independent):
//! - [`MbMamlFigure::Adaptation`] (Figs 4 and 5): MB-MAML trained offline; the mean true WSR
//!   after `max_adaptation_steps` online steps on held-out blocks after every epoch (Fig 4,
//!   series `MB-MAML`, metric `wsr_after_adaptation`, x = epoch), and the mean true WSR against
//!   the number of adaptation steps (Fig 5, metric `wsr_vs_steps`, x = steps) for the hybrid
//!   (MB-MAML + online), purely offline (one basis, no inner loop in training, no adaptation),
//!   purely online (random initialisation + SGD) and MAML (one basis) + online;
//! - [`MbMamlFigure::Snr`] (Fig 8(a)): mean true WSR against SNR at the test error level for
//!   every baseline, the oracle and MB-MAML (trained across the SNR range; metric `wsr_vs_snr`);
//! - [`MbMamlFigure::ErrorLevel`] (Fig 8(b)): the same against the error level `γ` at the
//!   training SNR (metric `wsr_vs_error_level`);
//! - [`MbMamlFigure::Heads`] (Fig 6): one model per head of `fig6_heads` (full rank, pure low
//!   rank, SALR at several densities), WSR after adaptation against the head's output
//!   dimension (metric `wsr_vs_outputs`) and, for SALR, against `δ` (`wsr_vs_density`);
//! - [`MbMamlFigure::Bases`] (Fig 7): one model per `M` of `bases_sweep` (`M = 1` is MAML),
//!   WSR after adaptation in distribution (`ID`), with a new error subspace `Q'`
//!   (`OOD-spatial`) and with log-normal (σ = 1.5) instead of ex-Gaussian eigenvalues
//!   (`OOD-strength`), metric `wsr_vs_bases`; the OOD gap (mean ID WSR minus the OOD WSR) per
//!   OOD series as metric `ood_gap` (MB-MAML should narrow it relative to MAML, `M = 1`).
//!
//! The default `figures` are the first three (the quick profile); Figs 6 and 7 train one model
//! per point and are opt-in.

use beamlab_baselines::{LagdParams, lagd};
use beamlab_channel::unknown_error::{channel_from_columns, haar_unitary, miso_columns, sample_error_block};
use beamlab_channel::{EigenProfile, Uma38901Params, UnknownErrorParams, UserErrorBlock, rayleigh, uma38901};
use beamlab_core::CoreError;
use beamlab_core::experiment::{CurveRow, FamilyExperiment};
use beamlab_linalg_ops::c64;
use candle_core::Device;
use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::MetaLearnError;
use crate::covnet::{CovHead, CovNet, CovNetConfig, Params, Task};
use crate::fast::precoder_of;
use crate::maml::{BasisSelection, MbMaml, MbMamlConfig, inner_adapt};
use crate::wmmse::{SystemParams, WmmseConfig, robust_wmmse, swmmse, wsr};

/// Channel model of the experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelModel {
    /// 3GPP TR 38.901 UMa NLOS (the paper's QuaDRiGa substitute).
    #[default]
    Uma38901,
    /// i.i.d. Rayleigh (the spec's NumPy sanity stand-in).
    Rayleigh,
}

/// Which figure a unit produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MbMamlFigure {
    /// Figs 4 and 5: convergence per epoch and WSR against adaptation steps.
    Adaptation,
    /// Fig 8(a): WSR against SNR.
    Snr,
    /// Fig 8(b): WSR against the error level.
    ErrorLevel,
    /// Fig 6: WSR of the heads in `fig6_heads` (against their output dimension, and against `δ`
    /// for SALR heads).
    Heads,
    /// Fig 7: WSR against the number of bases `M` (`bases_sweep`, head `bases_head`), in
    /// distribution and out of distribution (a new error subspace `Q'`; a log-normal eigenvalue
    /// law).
    Bases,
}

/// Parameters of the MB-MAML experiments. Defaults: a quick profile (about a minute in release
/// on 2 cores); the paper's Table I profile is `n_epochs = 20`, `iterations_per_epoch = 250`,
/// `tasks_per_iteration = 20`, `meta.n_bases = 8` (see `docs/mbmaml.md`).
#[derive(Clone, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MbMamlExperimentParams {
    /// Units to run, in order.
    pub figures: Vec<MbMamlFigure>,
    /// Channel model.
    pub channel: ChannelModel,
    /// Transmit antennas `M`.
    pub n_tx: usize,
    /// Users `K`.
    pub n_users: usize,
    /// Samples per block `N`.
    pub n_samples: usize,
    /// Training (and Figs 4, 5, 8(b)) SNR in dB.
    pub snr_db: f64,
    /// Training error levels `[γ_min, γ_max]` in dB.
    pub train_gamma_db: [f64; 2],
    /// Test error level (Figs 4, 5, 8(a)) in dB.
    pub test_gamma_db: f64,
    /// Hidden widths of the covariance network.
    pub hidden: Vec<usize>,
    /// Covariance head.
    pub head: CovHead,
    /// Fusion weight `η`.
    pub fusion_eta: f64,
    /// Unrolled robust WMMSE iterations `T`.
    pub n_unroll: usize,
    /// MB-MAML hyper-parameters.
    pub meta: MbMamlConfig,
    /// Epochs of meta-training.
    pub n_epochs: usize,
    /// Meta-iterations per epoch.
    pub iterations_per_epoch: usize,
    /// Tasks per meta-iteration `B`.
    pub tasks_per_iteration: usize,
    /// Held-out blocks per evaluation point.
    pub n_test_blocks: usize,
    /// Largest number of online adaptation steps (Fig 5 abscissa 0..=this; Figs 4, 8 use it).
    pub max_adaptation_steps: usize,
    /// Online basis selection.
    pub selection: BasisSelection,
    /// SNR points of Fig 8(a) in dB.
    pub snr_sweep_db: Vec<f64>,
    /// Error levels of Fig 8(b) in dB.
    pub gamma_sweep_db: Vec<f64>,
    /// Heads compared in Fig 6.
    pub fig6_heads: Vec<CovHead>,
    /// Numbers of bases of Fig 7.
    pub bases_sweep: Vec<usize>,
    /// Head of the Fig 7 models (paper: `r = 2`, `δ = 0`).
    pub bases_head: CovHead,
    /// Random SALR masks tried per sparse head in Fig 6, the best on validation blocks kept
    /// (paper: ~5; default 1 = the mask of seed 0).
    pub mask_candidates: usize,
}

impl Default for MbMamlExperimentParams {
    fn default() -> Self {
        Self {
            figures: vec![MbMamlFigure::Adaptation, MbMamlFigure::Snr, MbMamlFigure::ErrorLevel],
            channel: ChannelModel::Uma38901,
            n_tx: 32,
            n_users: 4,
            n_samples: 2,
            snr_db: 20.0,
            train_gamma_db: [-5.0, 15.0],
            test_gamma_db: 0.0,
            hidden: vec![128, 256, 256],
            head: CovHead::Salr { rank: 8, density: 0.09 },
            fusion_eta: 0.1,
            n_unroll: 10,
            meta: MbMamlConfig { n_bases: 4, ..MbMamlConfig::default() },
            n_epochs: 2,
            iterations_per_epoch: 10,
            tasks_per_iteration: 5,
            n_test_blocks: 10,
            max_adaptation_steps: 5,
            selection: BasisSelection::Argmin,
            snr_sweep_db: vec![0.0, 10.0, 20.0, 30.0],
            gamma_sweep_db: vec![-10.0, 0.0, 10.0, 20.0],
            fig6_heads: vec![
                CovHead::FullRank,
                CovHead::Salr { rank: 8, density: 0.0 },
                CovHead::Salr { rank: 8, density: 0.05 },
                CovHead::Salr { rank: 8, density: 0.09 },
                CovHead::Salr { rank: 8, density: 0.2 },
            ],
            bases_sweep: vec![1, 2, 4, 8],
            bases_head: CovHead::Salr { rank: 2, density: 0.0 },
            mask_candidates: 1,
        }
    }
}

/// The experiment built from checked parameters.
#[derive(Clone, Debug)]
pub struct MbMamlExperiment {
    params: MbMamlExperimentParams,
}

/// Builds the experiment.
///
/// # Errors
/// [`MetaLearnError::InvalidConfig`] (naming the field) for empty figure lists or sweeps, zero sizes, fewer than
/// 2 users with BatchNorm, a reversed or non-finite γ range, an invalid network or MB-MAML
/// configuration.
pub fn mbmaml_experiment(params: MbMamlExperimentParams) -> Result<MbMamlExperiment, MetaLearnError> {
    let p = &params;
    let bad = |name: &'static str, s: &str| Err(MetaLearnError::config(name, s));
    if p.figures.is_empty() {
        return bad("figures", "must not be empty");
    }
    if p.n_tx == 0 || p.n_users < 2 || p.n_samples == 0 {
        return bad("n_tx / n_users / n_samples", "need n_tx >= 1, n_users >= 2 (batch statistics), n_samples >= 1");
    }
    if p.n_epochs == 0 || p.iterations_per_epoch == 0 || p.tasks_per_iteration == 0 || p.n_test_blocks == 0 {
        return bad("n_epochs / iterations_per_epoch / tasks_per_iteration / n_test_blocks", "must be >= 1");
    }
    let [g0, g1] = p.train_gamma_db;
    if !(g0.is_finite() && g1.is_finite() && g0 <= g1 && p.snr_db.is_finite() && p.test_gamma_db.is_finite()) {
        return bad(
            "train_gamma_db / snr_db / test_gamma_db",
            "gamma range must be finite and ordered, SNR and test gamma finite",
        );
    }
    if p.snr_sweep_db.is_empty()
        || p.gamma_sweep_db.is_empty()
        || p.snr_sweep_db.iter().chain(&p.gamma_sweep_db).any(|x| !x.is_finite())
    {
        return bad("snr_sweep_db / gamma_sweep_db", "sweeps must be non-empty and finite");
    }
    if p.fig6_heads.is_empty() || p.bases_sweep.is_empty() || p.bases_sweep.contains(&0) || p.mask_candidates == 0 {
        return bad(
            "fig6_heads / bases_sweep / mask_candidates",
            "need non-empty lists, bases >= 1, mask_candidates >= 1",
        );
    }
    p.meta.check()?;
    for head in p.fig6_heads.iter().chain(std::iter::once(&p.bases_head)).chain(std::iter::once(&p.head)) {
        CovNet::new(net_config(p, *head), &Device::Cpu)?;
    }
    Ok(MbMamlExperiment { params })
}

fn net_config(p: &MbMamlExperimentParams, head: CovHead) -> CovNetConfig {
    CovNetConfig {
        n_tx: p.n_tx,
        hidden: p.hidden.clone(),
        head,
        batch_norm: true,
        fusion_eta: p.fusion_eta,
        n_unroll: p.n_unroll,
        mask_seed: 0,
    }
}

/// One block with its raw data and tensors.
struct Block {
    users: Vec<UserErrorBlock>,
    sys: SystemParams,
    task: Task,
}

struct Sampler<'a> {
    p: &'a MbMamlExperimentParams,
    q: Array2<c64>,
    device: Device,
    profile: EigenProfile,
}

impl Sampler<'_> {
    fn block(&self, rng: &mut ChaCha8Rng, snr_db: f64, gamma_db: f64) -> Result<Block, MetaLearnError> {
        let p = self.p;
        let h = match p.channel {
            ChannelModel::Uma38901 => {
                uma38901(&Uma38901Params { n_bs_antennas: p.n_tx, ..Default::default() }, p.n_users, rng)?
            }
            ChannelModel::Rayleigh => rayleigh(p.n_users, 1, p.n_tx, rng)?,
        };
        let ep = UnknownErrorParams {
            n_samples: p.n_samples,
            error_level_db: gamma_db,
            profile: self.profile,
            ..Default::default()
        };
        let users = sample_error_block(&h, &self.q, &ep, rng)?;
        let sys = SystemParams::uniform(p.n_users, 10f64.powf(-snr_db / 10.0), 1.0);
        let samples: Vec<Vec<Array1<c64>>> = users.iter().map(|u| u.samples.clone()).collect();
        let h_true = miso_columns(&h)?;
        let task = Task::new(&samples, Some(&h_true), &sys)?;
        Ok(Block { users, sys, task })
    }
}

fn h_true(b: &Block) -> Vec<Array1<c64>> {
    b.users.iter().map(|u| u.h_true.clone()).collect()
}

fn true_wsr_of(net: &CovNet, params: &Params, b: &Block) -> Result<f64, MetaLearnError> {
    let v = precoder_of(net, params, &b.task)?;
    wsr(&h_true(b), &v, &b.sys)
}

/// Trains a model; `train_snr` draws the SNR of each training block.
fn train(
    p: &MbMamlExperimentParams,
    net: &CovNet,
    sampler: &Sampler<'_>,
    meta: MbMamlConfig,
    rng: &mut ChaCha8Rng,
    train_snr: &dyn Fn(&mut ChaCha8Rng) -> f64,
    mut after_epoch: impl FnMut(usize, &MbMaml) -> Result<(), MetaLearnError>,
) -> Result<MbMaml, MetaLearnError> {
    let mut model = MbMaml::new(net, meta, rng)?;
    for epoch in 0..p.n_epochs {
        for _ in 0..p.iterations_per_epoch {
            let tasks = (0..p.tasks_per_iteration)
                .map(|_| {
                    let snr = train_snr(rng);
                    let gamma = rng.random_range(p.train_gamma_db[0]..=p.train_gamma_db[1]);
                    Ok(sampler.block(rng, snr, gamma)?.task)
                })
                .collect::<Result<Vec<_>, MetaLearnError>>()?;
            model.meta_step(net, &tasks)?;
        }
        after_epoch(epoch + 1, &model)?;
    }
    Ok(model)
}

fn head_label(head: CovHead) -> String {
    match head {
        CovHead::FullRank => "full rank".into(),
        CovHead::Salr { rank, density } if density <= 0.0 => format!("low rank r = {rank}"),
        CovHead::Salr { rank, density } => format!("SALR r = {rank}, δ = {density}"),
    }
}

fn adapted_wsr(
    p: &MbMamlExperimentParams,
    net: &CovNet,
    model: &MbMaml,
    b: &Block,
    n_steps: usize,
) -> Result<f64, MetaLearnError> {
    let a = model.adapt(net, &b.task, n_steps, p.meta.inner_lr, p.selection)?;
    true_wsr_of(net, &a.params, b)
}

impl MbMamlExperiment {
    /// The checked parameters.
    #[must_use]
    pub fn params(&self) -> &MbMamlExperimentParams {
        &self.params
    }

    fn run(&self, figure: MbMamlFigure, seed: u64) -> Result<Vec<CurveRow>, MetaLearnError> {
        let p = &self.params;
        let _span = tracing::info_span!("mbmaml_unit", ?figure).entered();
        // The error subspace is an experiment constant: derived from the seed with a fixed path
        // so that training and test blocks share it (ID setting).
        let mut q_rng = ChaCha8Rng::seed_from_u64(beamlab_core::derive_seed(seed, &[0]));
        let sampler =
            Sampler { p, q: haar_unitary(p.n_tx, &mut q_rng)?, device: Device::Cpu, profile: EigenProfile::default() };
        let net = CovNet::new(net_config(p, p.head), &sampler.device)?;
        let mut train_rng = ChaCha8Rng::seed_from_u64(beamlab_core::derive_seed(seed, &[1]));
        let mut test_rng = ChaCha8Rng::seed_from_u64(beamlab_core::derive_seed(seed, &[2]));
        let mut rows = Vec::new();
        match figure {
            MbMamlFigure::Adaptation => {
                let test: Vec<Block> = (0..p.n_test_blocks)
                    .map(|_| sampler.block(&mut test_rng, p.snr_db, p.test_gamma_db))
                    .collect::<Result<_, _>>()?;
                let fixed_snr = |_: &mut ChaCha8Rng| p.snr_db;
                let hybrid = train(p, &net, &sampler, p.meta, &mut train_rng, &fixed_snr, |epoch, m| {
                    let v: Vec<f64> = test
                        .iter()
                        .map(|b| adapted_wsr(p, &net, m, b, p.max_adaptation_steps))
                        .collect::<Result<_, _>>()?;
                    rows.push(CurveRow::summarise("MB-MAML", "wsr_after_adaptation", epoch as f64, &v));
                    Ok(())
                })?;
                let maml_cfg = MbMamlConfig { n_bases: 1, ..p.meta };
                let maml = train(p, &net, &sampler, maml_cfg, &mut train_rng, &fixed_snr, |_, _| Ok(()))?;
                let offline_cfg = MbMamlConfig { n_bases: 1, n_inner_steps: 0, ..p.meta };
                let offline = train(p, &net, &sampler, offline_cfg, &mut train_rng, &fixed_snr, |_, _| Ok(()))?;
                let random = net.init_params(&mut train_rng)?;
                for steps in 0..=p.max_adaptation_steps {
                    let x = steps as f64;
                    let mut h = Vec::new();
                    let mut mm = Vec::new();
                    let mut on = Vec::new();
                    let mut off = Vec::new();
                    for b in &test {
                        h.push(adapted_wsr(p, &net, &hybrid, b, steps)?);
                        mm.push(adapted_wsr(p, &net, &maml, b, steps)?);
                        let (pr, _) = inner_adapt(&net, &random, &b.task, steps, p.meta.inner_lr)?;
                        on.push(true_wsr_of(&net, &pr, b)?);
                        off.push(adapted_wsr(p, &net, &offline, b, 0)?);
                    }
                    rows.push(CurveRow::summarise("hybrid (MB-MAML)", "wsr_vs_steps", x, &h));
                    rows.push(CurveRow::summarise("MAML", "wsr_vs_steps", x, &mm));
                    rows.push(CurveRow::summarise("purely online", "wsr_vs_steps", x, &on));
                    rows.push(CurveRow::summarise("purely offline", "wsr_vs_steps", x, &off));
                }
            }
            MbMamlFigure::Snr => {
                let (lo, hi) =
                    p.snr_sweep_db.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
                let snr_range = move |r: &mut ChaCha8Rng| if hi > lo { r.random_range(lo..=hi) } else { lo };
                let model = train(p, &net, &sampler, p.meta, &mut train_rng, &snr_range, |_, _| Ok(()))?;
                for &snr in &p.snr_sweep_db {
                    let test: Vec<Block> = (0..p.n_test_blocks)
                        .map(|_| sampler.block(&mut test_rng, snr, p.test_gamma_db))
                        .collect::<Result<_, _>>()?;
                    rows.extend(self.compare(&net, &model, &test, snr, "wsr_vs_snr", &mut train_rng)?);
                }
            }
            MbMamlFigure::ErrorLevel => {
                let fixed_snr = |_: &mut ChaCha8Rng| p.snr_db;
                let model = train(p, &net, &sampler, p.meta, &mut train_rng, &fixed_snr, |_, _| Ok(()))?;
                for &gamma in &p.gamma_sweep_db {
                    let test: Vec<Block> = (0..p.n_test_blocks)
                        .map(|_| sampler.block(&mut test_rng, p.snr_db, gamma))
                        .collect::<Result<_, _>>()?;
                    rows.extend(self.compare(&net, &model, &test, gamma, "wsr_vs_error_level", &mut train_rng)?);
                }
            }
            MbMamlFigure::Heads => {
                let fixed_snr = |_: &mut ChaCha8Rng| p.snr_db;
                let test: Vec<Block> = (0..p.n_test_blocks)
                    .map(|_| sampler.block(&mut test_rng, p.snr_db, p.test_gamma_db))
                    .collect::<Result<_, _>>()?;
                let validation: Vec<Block> = (0..p.n_test_blocks)
                    .map(|_| sampler.block(&mut test_rng, p.snr_db, p.test_gamma_db))
                    .collect::<Result<_, _>>()?;
                for (i, &head) in p.fig6_heads.iter().enumerate() {
                    // SALR heads with a sparse part: best of `mask_candidates` random masks on
                    // the validation blocks (spec §2); other heads have no mask to choose.
                    let n_masks = match head {
                        CovHead::Salr { density, .. } if density > 0.0 => p.mask_candidates,
                        _ => 1,
                    };
                    let mut best: Option<(f64, CovNet, MbMaml)> = None;
                    for mask in 0..n_masks {
                        let cfg = CovNetConfig { mask_seed: mask as u64, ..net_config(p, head) };
                        let net = CovNet::new(cfg, &sampler.device)?;
                        let path = [4, i as u64, mask as u64];
                        let mut rng = ChaCha8Rng::seed_from_u64(beamlab_core::derive_seed(seed, &path));
                        let model = train(p, &net, &sampler, p.meta, &mut rng, &fixed_snr, |_, _| Ok(()))?;
                        let score = if n_masks > 1 {
                            let v: Vec<f64> = validation
                                .iter()
                                .map(|b| adapted_wsr(p, &net, &model, b, p.max_adaptation_steps))
                                .collect::<Result<_, _>>()?;
                            v.iter().sum::<f64>() / v.len() as f64
                        } else {
                            0.0
                        };
                        if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                            best = Some((score, net, model));
                        }
                    }
                    let Some((_, net, model)) = best else { continue };
                    let v: Vec<f64> = test
                        .iter()
                        .map(|b| adapted_wsr(p, &net, &model, b, p.max_adaptation_steps))
                        .collect::<Result<_, _>>()?;
                    let dim = net.output_dim() as f64;
                    rows.push(CurveRow::summarise(&head_label(head), "wsr_vs_outputs", dim, &v));
                    if let CovHead::Salr { rank, density } = head {
                        rows.push(CurveRow::summarise(&format!("SALR r = {rank}"), "wsr_vs_density", density, &v));
                    }
                }
            }
            MbMamlFigure::Bases => {
                let fixed_snr = |_: &mut ChaCha8Rng| p.snr_db;
                let mut ood_rng = ChaCha8Rng::seed_from_u64(beamlab_core::derive_seed(seed, &[3]));
                let ood = Sampler {
                    p,
                    q: haar_unitary(p.n_tx, &mut ood_rng)?,
                    device: Device::Cpu,
                    profile: EigenProfile::default(),
                };
                // OOD-strength: the ID subspace with a log-normal eigenvalue law (σ = 1.5).
                let ood_strength = Sampler {
                    p,
                    q: sampler.q.clone(),
                    device: Device::Cpu,
                    profile: EigenProfile::LogNormal { sigma: 1.5 },
                };
                let id_test: Vec<Block> = (0..p.n_test_blocks)
                    .map(|_| sampler.block(&mut test_rng, p.snr_db, p.test_gamma_db))
                    .collect::<Result<_, _>>()?;
                let ood_test: Vec<Block> = (0..p.n_test_blocks)
                    .map(|_| ood.block(&mut test_rng, p.snr_db, p.test_gamma_db))
                    .collect::<Result<_, _>>()?;
                let strength_test: Vec<Block> = (0..p.n_test_blocks)
                    .map(|_| ood_strength.block(&mut test_rng, p.snr_db, p.test_gamma_db))
                    .collect::<Result<_, _>>()?;
                let net = CovNet::new(net_config(p, p.bases_head), &sampler.device)?;
                for &n_bases in &p.bases_sweep {
                    let mut rng = ChaCha8Rng::seed_from_u64(beamlab_core::derive_seed(seed, &[5, n_bases as u64]));
                    let cfg = MbMamlConfig { n_bases, ..p.meta };
                    let model = train(p, &net, &sampler, cfg, &mut rng, &fixed_snr, |_, _| Ok(()))?;
                    let mut id_mean = 0.0;
                    for (label, test) in
                        [("ID", &id_test), ("OOD-spatial", &ood_test), ("OOD-strength", &strength_test)]
                    {
                        let v: Vec<f64> = test
                            .iter()
                            .map(|b| adapted_wsr(p, &net, &model, b, p.max_adaptation_steps))
                            .collect::<Result<_, _>>()?;
                        rows.push(CurveRow::summarise(label, "wsr_vs_bases", n_bases as f64, &v));
                        if label == "ID" {
                            id_mean = v.iter().sum::<f64>() / v.len() as f64;
                        } else {
                            // OOD gap = mean ID WSR − OOD WSR (different test sets: the spread
                            // reported is the OOD set's).
                            let gap: Vec<f64> = v.iter().map(|w| id_mean - w).collect();
                            rows.push(CurveRow::summarise(label, "ood_gap", n_bases as f64, &gap));
                        }
                    }
                }
            }
        }
        Ok(rows)
    }

    /// Mean true WSR of every method on `test` at abscissa `x`.
    fn compare(
        &self,
        net: &CovNet,
        model: &MbMaml,
        test: &[Block],
        x: f64,
        metric: &str,
        lagd_rng: &mut ChaCha8Rng,
    ) -> Result<Vec<CurveRow>, MetaLearnError> {
        let p = &self.params;
        let cfg = WmmseConfig::default();
        let names = [
            "WMMSE (h̄)",
            "robust WMMSE (R^S)",
            "SWMMSE",
            "robust WMMSE (oracle)",
            "WMMSE (perfect CSI)",
            "LAGD",
            "MB-MAML",
        ];
        let mut vals: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        for b in test {
            let ht = h_true(b);
            let h_bar: Vec<Array1<c64>> = b.users.iter().map(|u| u.sample_mean.clone()).collect();
            let r_s: Vec<Array2<c64>> = b.users.iter().map(|u| u.sample_covariance.clone()).collect();
            let r_e: Vec<Array2<c64>> = b.users.iter().map(|u| u.error_covariance.clone()).collect();
            let samples: Vec<Vec<Array1<c64>>> = b.users.iter().map(|u| u.samples.clone()).collect();
            vals[0].push(wsr(&ht, &robust_wmmse(&h_bar, None, &b.sys, &cfg)?.v, &b.sys)?);
            vals[1].push(wsr(&ht, &robust_wmmse(&h_bar, Some(&r_s), &b.sys, &cfg)?.v, &b.sys)?);
            vals[2].push(wsr(&ht, &swmmse(&samples, &b.sys, &cfg)?.v, &b.sys)?);
            vals[3].push(wsr(&ht, &robust_wmmse(&h_bar, Some(&r_e), &b.sys, &cfg)?.v, &b.sys)?);
            vals[4].push(wsr(&ht, &robust_wmmse(&ht, None, &b.sys, &cfg)?.v, &b.sys)?);
            vals[5].push(wsr(&ht, &lagd_precoder(&h_bar, &b.sys, lagd_rng)?, &b.sys)?);
            vals[6].push(adapted_wsr(p, net, model, b, p.max_adaptation_steps)?);
        }
        Ok(names.iter().zip(&vals).map(|(n, v)| CurveRow::summarise(n, metric, x, v)).collect())
    }
}

/// The LAGD baseline (`beamlab_baselines::lagd`, precoder form, the paper's settings) on the
/// estimate `h̄`.
fn lagd_precoder(
    h_bar: &[Array1<c64>],
    sys: &SystemParams,
    rng: &mut ChaCha8Rng,
) -> Result<Array2<c64>, MetaLearnError> {
    let core = |e: beamlab_core::CoreError| MetaLearnError::Baseline(e.into());
    let mut problem = beamlab_core::Problem::new(channel_from_columns(h_bar)?, 1.0, sys.power).map_err(core)?;
    problem.noise_power.clone_from(&sys.noise);
    let problem = problem.with_weights(sys.weights.clone()).map_err(core)?;
    Ok(lagd(&problem, &LagdParams::default(), rng)?.w)
}

impl FamilyExperiment for MbMamlExperiment {
    fn n_units(&self) -> usize {
        self.params.figures.len()
    }

    fn unit_label(&self, unit: usize) -> String {
        match self.params.figures.get(unit) {
            Some(MbMamlFigure::Adaptation) => "MB-MAML: convergence and WSR vs adaptation steps (Figs 4, 5)".into(),
            Some(MbMamlFigure::Snr) => "MB-MAML: WSR vs SNR (Fig 8a)".into(),
            Some(MbMamlFigure::ErrorLevel) => "MB-MAML: WSR vs error level (Fig 8b)".into(),
            Some(MbMamlFigure::Heads) => "MB-MAML: covariance heads, SALR vs density (Fig 6)".into(),
            Some(MbMamlFigure::Bases) => "MB-MAML: WSR vs number of bases, ID and OOD (Fig 7)".into(),
            None => format!("invalid unit {unit}"),
        }
    }

    fn run_unit(&self, unit: usize, seed: u64) -> Result<Vec<CurveRow>, CoreError> {
        let figure = *self
            .params
            .figures
            .get(unit)
            .ok_or_else(|| CoreError::InvalidProblem(format!("MB-MAML experiment has no unit {unit}")))?;
        self.run(figure, seed).map_err(|e| CoreError::Method { method: "mb-maml".into(), source: Box::new(e) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> MbMamlExperimentParams {
        MbMamlExperimentParams {
            n_tx: 4,
            n_users: 2,
            hidden: vec![8],
            head: CovHead::Salr { rank: 1, density: 0.3 },
            n_unroll: 3,
            meta: MbMamlConfig { n_bases: 2, n_inner_steps: 2, ..MbMamlConfig::default() },
            n_epochs: 2,
            iterations_per_epoch: 1,
            tasks_per_iteration: 2,
            n_test_blocks: 2,
            max_adaptation_steps: 2,
            snr_sweep_db: vec![0.0, 20.0],
            gamma_sweep_db: vec![0.0, 10.0],
            figures: vec![
                MbMamlFigure::Adaptation,
                MbMamlFigure::Snr,
                MbMamlFigure::ErrorLevel,
                MbMamlFigure::Heads,
                MbMamlFigure::Bases,
            ],
            fig6_heads: vec![
                CovHead::FullRank,
                CovHead::Salr { rank: 1, density: 0.0 },
                CovHead::Salr { rank: 1, density: 0.3 },
            ],
            bases_sweep: vec![1, 2],
            bases_head: CovHead::Salr { rank: 1, density: 0.0 },
            mask_candidates: 2,
            ..Default::default()
        }
    }

    #[test]
    fn units_run_deterministically_with_finite_rows() {
        let exp = mbmaml_experiment(tiny()).unwrap();
        assert_eq!(exp.n_units(), 5);
        for unit in 0..5 {
            let a = exp.run_unit(unit, 11).unwrap();
            assert!(!a.is_empty() && a.iter().all(|r| r.mean.is_finite()), "{a:?}");
            assert!(a.iter().all(|r| r.metric == "ood_gap" || r.mean >= 0.0), "{a:?}");
            if unit == 0 {
                let b = exp.run_unit(unit, 11).unwrap();
                assert_eq!(a, b);
                // Fig 4 rows per epoch + 4 series × 3 step counts.
                assert_eq!(a.len(), 2 + 4 * 3);
            } else if unit < 3 {
                assert_eq!(a.len(), 7 * 2);
            } else if unit == 3 {
                // 3 heads + 1 density row for the SALR head with δ > 0 and 1 for δ = 0.
                assert_eq!(a.len(), 3 + 2);
                assert!(a.iter().any(|r| r.metric == "wsr_vs_outputs" && r.x == 16.0));
            } else {
                // 3 WSR series + 2 OOD gaps per number of bases.
                assert_eq!(a.len(), 2 * (3 + 2));
                assert!(a.iter().any(|r| r.series == "OOD-strength"));
                let get = |series: &str, metric: &str, x: f64| {
                    a.iter().find(|r| r.series == series && r.metric == metric && r.x == x).map(|r| r.mean).unwrap()
                };
                for x in [1.0, 2.0] {
                    for ood in ["OOD-spatial", "OOD-strength"] {
                        let gap = get("ID", "wsr_vs_bases", x) - get(ood, "wsr_vs_bases", x);
                        assert!((get(ood, "ood_gap", x) - gap).abs() <= 1e-12 * gap.abs().max(1.0));
                    }
                }
            }
        }
        assert!(exp.run_unit(5, 0).is_err());
    }

    #[test]
    fn params_deserialize_strictly_and_validate() {
        let p: MbMamlExperimentParams =
            toml::from_str("n_tx = 8\nfigures = [\"snr\"]\nhead = { kind = \"full_rank\" }\nmeta = { n_bases = 2 }\n")
                .unwrap();
        assert_eq!(p.n_tx, 8);
        assert_eq!(p.head, CovHead::FullRank);
        assert_eq!(p.meta.n_bases, 2);
        assert_eq!(p.meta.n_inner_steps, 5);
        assert!(toml::from_str::<MbMamlExperimentParams>("n_txx = 8").is_err());
        assert!(toml::from_str::<MbMamlExperimentParams>("meta = { n_basis = 2 }").is_err());
        for bad in [
            MbMamlExperimentParams { figures: vec![], ..tiny() },
            MbMamlExperimentParams { n_users: 1, ..tiny() },
            MbMamlExperimentParams { train_gamma_db: [10.0, 0.0], ..tiny() },
            MbMamlExperimentParams { snr_sweep_db: vec![f64::NAN], ..tiny() },
            MbMamlExperimentParams { fusion_eta: 2.0, ..tiny() },
            MbMamlExperimentParams { bases_sweep: vec![0], ..tiny() },
            MbMamlExperimentParams { mask_candidates: 0, ..tiny() },
            MbMamlExperimentParams { fig6_heads: vec![CovHead::Salr { rank: 0, density: 0.1 }], ..tiny() },
        ] {
            assert!(mbmaml_experiment(bad).is_err());
        }
    }
}
