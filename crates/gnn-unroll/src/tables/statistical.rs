//! Combined statistical and instantaneous CSI (paper §5.5, spec §6 last bullet): the analog beams
//! are chosen once per system instance from a covariance estimate, the baseband beams and powers
//! per channel sample from the instantaneous feedback.
//!
//! A [`StatInstance`] holds `T_s` channel samples of the same `K` users (fixed covariances `R_k`,
//! targets and feedback level): true channels `h_{k,t} = R_k^{1/2} g_{k,t}` and their DFT feedback
//! `ĥ_{k,t}` with `L` kept coefficients ([`crate::data::dft_quantise`], `ζ = L`). The transmitter's statistical
//! CSI is the sample covariance of the fed-back vectors `R̂_k = (1/T_s) Σ_t ĥ_{k,t} ĥ_{k,t}^H`
//! ([`crate::data::sample_covariance`]). Outage is counted per user and sample w.r.t. the true instantaneous
//! channels; the power is the mean over samples.
//!
//! Classical designs ([`StatDesign`]): the greedy selection (Hegde Alg. 2, no power cap) on the
//! covariances (`R̂_k` with targets `γ Δ`, or for G-HBF-perf the sample covariance of the true
//! channels) chooses `A`; then per sample the baseband QoS problem for that `A` on `ĥ_{k,t}`
//! (G-HBF-perf: on `h_{k,t}`), projected to `P_max` when asked.
//!
//! Learned designs (U-G-HBF-GCN, U-G-HBF-2GCN; [`Trainer::statistical`]): a network on the
//! statistical features `[ln tr R̂_k, ln γ_k, ln ζ]` and the statistical shift operator
//! `|tr(R̂_k R̂_j)|/(‖R̂_k‖_F ‖R̂_j‖_F)` gives the analog coefficients `c_a`; the greedy selection
//! with the virtual channels of `c_a` on `R̂` ([`crate::unroll::select_cov`]; SNR initialisation
//! when no visited selection is statistically feasible) fixes `A`; per sample `t` the baseband
//! problem for that `A` uses the virtual channels of `ĥ_{k,t}` with coefficients `c_b,t = c_a`
//! (GCN) or from a second network on the sample's instantaneous features (2GCN). Training:
//! the margins of all (user, sample) pairs enter the group losses, each sample's power the power
//! term; each sample's coefficient gradient goes to `c_b,t`, and `∂L/∂A*` summed over the samples
//! goes through the straight-through selection gradient
//! ([`crate::unroll::straight_through_gradient_cov`]) to `c_a`.

use beamlab_linalg_ops::c64;
use ndarray::Array2;

use beamlab_core::experiment::CurveRow;

use super::common::{OutageTableParams, TableBase, baseband_design, draw_feasible, relabel_groups};
use super::{TableUnit, impl_table_experiment};
use crate::Error;
use crate::data::{CsiModel, Scenario, StatInstance, draw_stat_instance};
use crate::greedy::{GreedyOptions, PowerWeighting, greedy_hbf, snr_init};
use crate::train::{EvalStats, Systems, TrainParams, Trainer, evaluate_indexed};
use crate::unroll::UnrollSettings;

/// A classical statistical-CSI design (module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct StatDesign {
    /// Perfect CSI: `A` from the true channels' sample covariance, baseband on the true `h_t`.
    pub(crate) use_truth: bool,
    /// Target margin `Δ` (linear, multiplies every `γ_k`).
    pub(crate) margin: f64,
    /// Scale powers above `P_max` down (otherwise such samples are infeasible).
    pub(crate) project: bool,
}

impl StatDesign {
    /// G-HBF-perf: perfect statistics and instantaneous CSI, no margin, no projection.
    pub(crate) const PERFECT: Self = Self { use_truth: true, margin: 1.0, project: false };

    /// G-HBF-marg with margin `Δ` (linear): feedback statistics and samples, projected powers.
    #[must_use]
    pub(crate) fn margin(margin: f64) -> Self {
        Self { use_truth: false, margin, project: true }
    }
}

/// The analog matrix chosen by the greedy selection on the covariances of `inst` (no power cap).
/// When no visited selection makes the statistical problem feasible (full-rank covariances leave
/// interference that high, margin-inflated targets cannot beat), the SNR initialisation (34) is
/// kept: the analog beams only need to be good, the per-sample baseband problems decide
/// feasibility.
///
/// # Errors
/// Codebook and solver errors other than infeasibility.
pub(crate) fn statistical_analog(
    st: &UnrollSettings,
    inst: &StatInstance,
    design: StatDesign,
) -> Result<Array2<c64>, Error> {
    let covs = if design.use_truth { &inst.r_true } else { &inst.r_hat };
    let targets: Vec<f64> = inst.targets().iter().map(|g| g * design.margin).collect();
    let opts = GreedyOptions {
        n_selections: st.n_selections,
        power_budget: None,
        weighting: PowerWeighting::Baseband,
        qos: st.qos,
        record_trials: false,
    };
    let init = snr_init(&st.codebook, covs, st.n_rf)?;
    let selection = match greedy_hbf(&st.codebook, covs, covs, &targets, &init, &opts) {
        Ok(res) => res.selection,
        Err(Error::Infeasible { .. } | Error::Singular { .. }) => init,
        Err(e) => return Err(e),
    };
    Ok(st.codebook.select(ndarray::Axis(1), &selection))
}

/// Evaluates `design` on `instances`: statistics over all samples (outage per user and sample on
/// the true channels, mean power per sample; a sample whose design fails counts as all users in
/// outage at `P_max`). `margin_of`, when given, replaces the design's margin per group.
///
/// # Errors
/// As [`statistical_analog`] and the baseband solver.
pub(crate) fn evaluate_statistical(
    st: &UnrollSettings,
    instances: &[StatInstance],
    n_groups: usize,
    design: StatDesign,
    margin_of: Option<&[f64]>,
) -> Result<EvalStats, Error> {
    use rayon::prelude::*;
    let design_of = |g: usize| match margin_of {
        Some(m) if !m.is_empty() => StatDesign { margin: m[g.min(m.len() - 1)], ..design },
        _ => design,
    };
    let analogs = instances
        .par_iter()
        .map(|i| statistical_analog(st, i, design_of(i.group)))
        .collect::<Result<Vec<_>, Error>>()?;
    let mut flat = Vec::new();
    let mut parent = Vec::new();
    for (j, inst) in instances.iter().enumerate() {
        flat.extend(inst.samples.iter().cloned());
        parent.extend(std::iter::repeat_n(j, inst.samples.len()));
    }
    evaluate_indexed(&flat, n_groups, st.power_budget, |idx, sample| {
        let d = design_of(sample.group);
        baseband_design(&analogs[parent[idx]], st.power_budget, sample, d.use_truth, d.margin, d.project)
    })
}

/// Parameters of the Table 4 experiment (defaults: the quick profile).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatisticalParams {
    /// Scenario, data-set, margin-search, network and training parameters shared with Table 2
    /// (`rho_db`, `angular_spread_deg` and `calibrate_learned_db` are not used; `n_train` counts
    /// systems, `train.batch_size` systems per step).
    pub base: OutageTableParams,
    /// Angular spread (degrees; paper §5.5: 5°). A top-level key, so that giving any `base` key
    /// (which deserialises `base` with Table 2's defaults) cannot silently change it.
    pub angular_spread_deg: f64,
    /// Kept DFT feedback coefficients `L`, one constraint group each (`ζ = L`).
    pub n_keep: Vec<usize>,
    /// Channel samples `T_s` per system instance.
    pub n_samples: usize,
}

impl Default for StatisticalParams {
    fn default() -> Self {
        Self { base: OutageTableParams::default(), angular_spread_deg: 5.0, n_keep: vec![1, 2, 4], n_samples: 8 }
    }
}

/// The units of Table 4, in unit order ([`StatisticalTable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Perfect statistics and samples.
    GHbfPerf,
    /// Feedback statistics and samples, one margin per `L`.
    GHbfMarg,
    /// One network on the statistical CSI.
    UGHbfGcn,
    /// An analog network on the statistical CSI and a baseband network on each sample.
    UGHbf2Gcn,
}

impl TableUnit for Unit {
    const ALL: &'static [Self] = &[Self::GHbfPerf, Self::GHbfMarg, Self::UGHbfGcn, Self::UGHbf2Gcn];

    fn label(self) -> &'static str {
        match self {
            Self::GHbfPerf => "G-HBF-perf",
            Self::GHbfMarg => "G-HBF-marg",
            Self::UGHbfGcn => "U-G-HBF-GCN",
            Self::UGHbf2Gcn => "U-G-HBF-2GCN",
        }
    }
}

/// The Table 4 experiment built from [`StatisticalParams`]: groups are the feedback levels `L`;
/// units return `power` and `outage` at `x = L`; `G-HBF-marg` also `margin_db` and the
/// validation rows at its bisected margins.
///
/// Units: 0. `G-HBF-perf`; 1. `G-HBF-marg` (module docs); 2. `U-G-HBF-GCN`: one network on the
/// statistical features of each system gives the coefficients of the analog selection on `R̂`
/// and of every sample's baseband problem; 3. `U-G-HBF-2GCN`: the analog network as in 2 plus a
/// baseband network on each sample's instantaneous features ([`Trainer::statistical`]). The
/// learned units train on `base.n_train` systems with `base.train` and `base.gcn`, and return the
/// validation traces and rows of Table 2's learned units.
#[derive(Clone, Debug)]
pub struct StatisticalTable {
    table: TableBase,
    n_keep: Vec<usize>,
    n_samples: usize,
    scenario: Scenario,
}

impl StatisticalTable {
    /// Validates the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the field; as [`crate::OutageTable::new`] for `base`.
    pub fn new(params: StatisticalParams) -> Result<Self, Error> {
        let n = params.base.n_antennas[0] * params.base.n_antennas[1];
        if params.n_keep.is_empty() || params.n_keep.iter().any(|&l| l == 0 || l > n) {
            return Err(Error::param("n_keep", format!("{:?} must be non-empty within 1..={n}", params.n_keep)));
        }
        if params.n_samples == 0 {
            return Err(Error::param("n_samples", "at least one channel sample per system, got 0"));
        }
        if !(params.angular_spread_deg.is_finite() && params.angular_spread_deg >= 0.0) {
            return Err(Error::param(
                "angular_spread_deg",
                format!("must be finite and >= 0, got {}", params.angular_spread_deg),
            ));
        }
        let scenario = params.base.scenario(params.angular_spread_deg);
        let groups = params.n_keep.iter().map(|&l| (scenario.clone(), CsiModel::Quantised { n_keep: l })).collect();
        let table = TableBase::new(params.base.clone(), groups)?;
        Ok(Self { table, n_keep: params.n_keep, n_samples: params.n_samples, scenario })
    }

    /// `n` instances cycling through the groups, redrawing those on which G-HBF-perf is infeasible
    /// on some sample (so G-HBF-perf has zero outage).
    fn dataset(&self, n: usize, stream: u64) -> Result<Vec<StatInstance>, Error> {
        let st = self.table.settings()?;
        let n_groups = self.n_keep.len();
        draw_feasible(
            beamlab_core::derive_seed(self.table.params().data_seed, &[stream]),
            n,
            n_groups,
            |g, rng| draw_stat_instance(&self.scenario, self.n_keep[g], self.n_samples, g, rng),
            |inst| {
                Ok(evaluate_statistical(&st, std::slice::from_ref(inst), n_groups, StatDesign::PERFECT, None)?
                    .n_infeasible
                    == 0)
            },
        )
    }

    fn run(&self, unit: Unit, seed: u64) -> Result<Vec<CurveRow>, Error> {
        let method = unit.label();
        let _span = tracing::info_span!("statistical_unit", method).entered();
        let (t, st) = (&self.table, self.table.settings()?);
        let n_groups = self.n_keep.len();
        let test = self.dataset(t.params().n_test, 2)?;
        let rows = match unit {
            Unit::GHbfPerf => {
                t.table_rows(method, &evaluate_statistical(&st, &test, n_groups, StatDesign::PERFECT, None)?)
            }
            Unit::UGHbfGcn | Unit::UGHbf2Gcn => {
                let (train, val) = (self.dataset(t.params().n_train, 0)?, self.dataset(t.params().n_val, 1)?);
                let tp = TrainParams { epsilon: t.params().epsilon, ..t.params().train.clone() };
                let two_networks = unit == Unit::UGHbf2Gcn;
                let trainer = Trainer::statistical(&t.params().gcn, st, tp, n_groups, &train, seed, two_networks)?;
                let data = [&train, &val, &test].map(|d| Systems::Statistical(d));
                t.learned_unit(method, trainer, data, seed)?
            }
            Unit::GHbfMarg => self.margin_unit(method, &st, &test)?,
        };
        let xs: Vec<f64> = self.n_keep.iter().map(|&l| l as f64).collect();
        Ok(relabel_groups(rows, &xs))
    }

    /// G-HBF-marg: one margin per `L` bisected on the validation systems, then the test rows.
    fn margin_unit(&self, method: &str, st: &UnrollSettings, test: &[StatInstance]) -> Result<Vec<CurveRow>, Error> {
        let t = &self.table;
        let n_groups = self.n_keep.len();
        let val = self.dataset(t.params().n_val, 1)?;
        let (margins, mut rows) = t.bisect_margins(method, |g, m| {
            let members: Vec<StatInstance> = val.iter().filter(|i| i.group == g).cloned().collect();
            Ok(evaluate_statistical(st, &members, n_groups, StatDesign::margin(m), None)?.outage[g])
        })?;
        let val_stats = evaluate_statistical(st, &val, n_groups, StatDesign::margin(1.0), Some(&margins))?;
        rows.extend(t.val_rows(method, &val_stats));
        let stats = evaluate_statistical(st, test, n_groups, StatDesign::margin(1.0), Some(&margins))?;
        rows.extend(t.table_rows(method, &stats));
        Ok(rows)
    }
}

impl_table_experiment!(StatisticalTable, Unit);

/// Builds the experiment from its parameters.
///
/// # Errors
/// As [`StatisticalTable::new`].
pub fn statistical_table(params: StatisticalParams) -> Result<StatisticalTable, Error> {
    StatisticalTable::new(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dft_codebook;
    use crate::qos::QosOptions;
    use beamlab_core::experiment::FamilyExperiment;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn settings() -> UnrollSettings {
        UnrollSettings {
            codebook: dft_codebook(4, 4, 1, 1).unwrap(),
            n_rf: 5,
            n_selections: 5,
            power_budget: 100.0,
            qos: QosOptions::default(),
            softmin_sharpness: 5.0,
        }
    }

    #[test]
    fn perfect_statistics_design_meets_every_feasible_sample_target() {
        let sc = Scenario { angular_spread_deg: 5.0, n_users: 2, ..Scenario::default() };
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let insts: Vec<StatInstance> =
            (0..6).map(|g| draw_stat_instance(&sc, 1, 4, g % 2, &mut rng).unwrap()).collect();
        let st = settings();
        let perf = StatDesign { use_truth: true, margin: 1.0, project: false };
        let stats = evaluate_statistical(&st, &insts, 2, perf, None).unwrap();
        // Every sample either meets its targets exactly on the true channel or is infeasible
        // (counted as all users in outage), so the outage is at most the infeasible share.
        let users: f64 = insts.iter().map(|i| (i.samples.len() * i.targets().len()) as f64).sum();
        let out_users: f64 = stats
            .outage
            .iter()
            .zip([0, 1])
            .map(|(o, g)| {
                o * insts
                    .iter()
                    .filter(|i| i.group == g)
                    .map(|i| (i.samples.len() * i.targets().len()) as f64)
                    .sum::<f64>()
            })
            .sum();
        assert!(out_users <= (stats.n_infeasible * 2) as f64 + 1e-9, "{stats:?} of {users}");
        // The estimate with feedback L = 1 and no margin misses some targets.
        let est = evaluate_statistical(&st, &insts, 2, StatDesign::margin(1.0), None).unwrap();
        assert!(est.outage.iter().any(|o| *o > 0.0), "{est:?}");
        // Deterministic.
        assert_eq!(evaluate_statistical(&st, &insts, 2, perf, None).unwrap(), stats);
        // Statistically infeasible targets (120 dB margin, beyond the solver's power cap): the SNR
        // initialisation is kept.
        let init = snr_init(&st.codebook, &insts[0].r_hat, st.n_rf).unwrap();
        let a = statistical_analog(&st, &insts[0], StatDesign::margin(1e12)).unwrap();
        assert_eq!(a, st.codebook.select(ndarray::Axis(1), &init));
    }

    fn tiny() -> StatisticalParams {
        StatisticalParams {
            base: OutageTableParams {
                n_users: 2,
                n_val: 6,
                n_test: 6,
                n_train: 8,
                margin_steps: 3,
                train: TrainParams { n_steps: 4, batch_size: 4, eval_every: 2, ..TrainParams::default() },
                ..OutageTableParams::default()
            },
            angular_spread_deg: 5.0,
            n_keep: vec![1, 4],
            n_samples: 3,
        }
    }

    #[test]
    fn learned_units_run_deterministically() {
        let exp = statistical_table(tiny()).unwrap();
        let pick = |rows: &[CurveRow], m: &str| -> Vec<(f64, f64)> {
            rows.iter().filter(|r| r.metric == m).map(|r| (r.x, r.mean)).collect()
        };
        for unit in [2, 3] {
            assert_eq!(exp.unit_label(unit), ["U-G-HBF-GCN", "U-G-HBF-2GCN"][unit - 2]);
            let rows = exp.run_unit(unit, 5).unwrap();
            let outage = pick(&rows, "outage");
            assert_eq!(outage.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1.0, 4.0]);
            assert!(outage.iter().all(|(_, o)| (0.0..=1.0).contains(o)), "{outage:?}");
            assert!(pick(&rows, "power").iter().all(|(_, p)| p.is_finite() && *p > 0.0 && *p <= 100.0));
            // Validation trace at steps 0, 2, 4 with per-group duals.
            assert_eq!(pick(&rows, "val_metric").iter().map(|r| r.0).collect::<Vec<_>>(), vec![0.0, 2.0, 4.0]);
            assert_eq!(pick(&rows, "val_dual_g1").len(), 3);
            assert_eq!(pick(&rows, "val_outage_group").len(), 2);
            assert!(rows.iter().all(|r| r.mean.is_finite()), "{rows:?}");
            assert_eq!(exp.run_unit(unit, 5).unwrap(), rows, "deterministic");
            let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
            assert_eq!(pool.install(|| exp.run_unit(unit, 5).unwrap()), rows, "one thread, same rows");
        }
        // The two units differ (the 2GCN has its own baseband network).
        assert_ne!(exp.run_unit(2, 5).unwrap(), exp.run_unit(3, 5).unwrap());
    }

    #[test]
    fn table_units_run_with_zero_outage_under_perfect_csi() {
        let exp = statistical_table(tiny()).unwrap();
        assert_eq!(exp.n_units(), 4);
        let perf = exp.run_unit(0, 1).unwrap();
        let pick = |rows: &[CurveRow], m: &str| -> Vec<(f64, f64)> {
            rows.iter().filter(|r| r.metric == m).map(|r| (r.x, r.mean)).collect()
        };
        assert_eq!(pick(&perf, "outage"), vec![(1.0, 0.0), (4.0, 0.0)]);
        assert!(pick(&perf, "power").iter().all(|(_, p)| *p > 0.0 && *p <= 100.0));
        let marg = exp.run_unit(1, 1).unwrap();
        assert_eq!(pick(&marg, "margin_db").iter().map(|r| r.0).collect::<Vec<_>>(), vec![1.0, 4.0]);
        assert!(pick(&marg, "outage").iter().all(|(_, o)| (0.0..=1.0).contains(o)));
        assert_eq!(exp.run_unit(1, 1).unwrap(), marg, "deterministic");
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(pool.install(|| exp.run_unit(1, 1).unwrap()), marg, "one thread, same rows");
        assert!(statistical_table(StatisticalParams { n_keep: vec![], ..tiny() }).is_err());
        assert!(statistical_table(StatisticalParams { n_keep: vec![17], ..tiny() }).is_err());
        assert!(statistical_table(StatisticalParams { n_samples: 0, ..tiny() }).is_err());
        assert!(statistical_table(StatisticalParams { angular_spread_deg: f64::NAN, ..tiny() }).is_err());
        assert!(serde_json::from_str::<StatisticalParams>(r#"{"n_keeps": [1]}"#).is_err());
        // A `base` key does not reset the spread to Table 2's 10°.
        let p: StatisticalParams = serde_json::from_str(r#"{"base": {"n_test": 5}}"#).unwrap();
        assert_eq!((p.angular_spread_deg, p.base.n_test), (5.0, 5));
        assert_eq!(exp.scenario.angular_spread_deg, 5.0);
    }
}
