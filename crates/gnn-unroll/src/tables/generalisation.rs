//! The Table 3 experiment (spec §7 item 5, paper §5.4): generalisation over the number of users
//! `K`, as a [`FamilyExperiment`](beamlab_core::experiment::FamilyExperiment).
//!
//! Constraint groups are the numbers of users `K ∈ user_counts` (default 1–4): an instance of
//! group `g` has `K = user_counts[g]` users. Every group uses the same CSI degradation, a noisy
//! MMSE estimate with the pilot power drawn uniformly in dB from `pilot_db` (default `[0, 10]` dB),
//! so the groups differ only in `K` (decision, docs/gnn-unroll.md). Everything else — array,
//! codebook, `M`, targets, data-set sizes, training — comes from the Table 2 parameters in `base`
//! (its `n_users` and `rho_db` are not used). The data sets are drawn exactly as in Table 2
//! (cycling through the groups, redrawing instances infeasible under perfect CSI), so every `K` has
//! the same share of the training, validation and test instances.
//!
//! The unrolled model handles any `K` per instance (the GCN runs on the `K × K` user graph of each
//! instance and the greedy/QoS solvers take any `K ≤ M`), so a batch may mix numbers of users; no
//! per-group batching is needed.
//!
//! Units, each returning `power` and `outage` at `x = K` (plus, like Table 2, validation traces at
//! `x = step` and scalar rows at `x = −1`):
//!
//! 0. `G-HBF-perf`: greedy on the true channel;
//! 1. `G-HBF-marg`: greedy on the estimate, one target margin per `K` bisected on validation data;
//! 2. `U-G-HBF-GCN`: trained and validated on every `K`;
//! 3. `U-G-HBF-GCN*`: trained and validated only on `K ∈ train_users` (default {2, 3}), tested on
//!    every `K` (extrapolation to unseen numbers of users);
//! 4. `U-FDBF-GCN`: the fully digital model (`A = I_N`) trained on every `K`.

use beamlab_core::experiment::CurveRow;

use super::common::{OutageTableParams, TableBase, relabel_groups};
use super::{TableUnit, impl_table_experiment};
use crate::Error;
use crate::data::{CsiModel, Instance, Scenario};
use crate::train::{TrainParams, Trainer, evaluate_designs};
use crate::unroll::Architecture;

/// Parameters of the Table 3 experiment (defaults: the quick profile).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneralisationParams {
    /// Scenario, data-set, margin-search and training parameters shared with Table 2
    /// (`n_users` and `rho_db` are not used).
    pub base: OutageTableParams,
    /// The numbers of users, one constraint group each (distinct, `1 ≤ K ≤ n_rf`).
    pub user_counts: Vec<usize>,
    /// The numbers of users `U-G-HBF-GCN*` is trained and validated on (a subset of
    /// `user_counts`).
    pub train_users: Vec<usize>,
    /// Pilot-power range (dB) of every group; the pilot power is uniform in dB over it.
    pub pilot_db: [f64; 2],
}

impl Default for GeneralisationParams {
    fn default() -> Self {
        Self {
            base: OutageTableParams::default(),
            user_counts: vec![1, 2, 3, 4],
            train_users: vec![2, 3],
            pilot_db: [0.0, 10.0],
        }
    }
}

/// The units of Table 3, in unit order (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Greedy on the true channel.
    GHbfPerf,
    /// Greedy on the estimate, one margin per `K`.
    GHbfMarg,
    /// Trained and validated on every `K`.
    UGHbfGcn,
    /// Trained and validated only on `train_users`, tested on every `K`.
    UGHbfGcnStar,
    /// The fully digital model, trained on every `K`.
    UFdbfGcn,
}

impl TableUnit for Unit {
    const ALL: &'static [Self] = &[Self::GHbfPerf, Self::GHbfMarg, Self::UGHbfGcn, Self::UGHbfGcnStar, Self::UFdbfGcn];

    fn label(self) -> &'static str {
        match self {
            Self::GHbfPerf => "G-HBF-perf",
            Self::GHbfMarg => "G-HBF-marg",
            Self::UGHbfGcn => "U-G-HBF-GCN",
            Self::UGHbfGcnStar => "U-G-HBF-GCN*",
            Self::UFdbfGcn => "U-FDBF-GCN",
        }
    }
}

/// The experiment built from [`GeneralisationParams`].
#[derive(Clone, Debug)]
pub struct Generalisation {
    table: TableBase,
    user_counts: Vec<usize>,
    train_users: Vec<usize>,
}

impl Generalisation {
    /// Validates the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the offending field; as [`crate::OutageTable::new`] for
    /// `base`.
    pub fn new(params: GeneralisationParams) -> Result<Self, Error> {
        let n_rf = params.base.n_rf;
        let ks = &params.user_counts;
        if ks.is_empty() || ks.iter().any(|&k| k == 0 || k > n_rf) {
            return Err(Error::param("user_counts", format!("{ks:?} must be non-empty with 1 <= K <= n_rf = {n_rf}")));
        }
        if (1..ks.len()).any(|i| ks[..i].contains(&ks[i])) {
            return Err(Error::param("user_counts", format!("{ks:?} must be distinct")));
        }
        if params.train_users.is_empty() || params.train_users.iter().any(|k| !ks.contains(k)) {
            return Err(Error::param(
                "train_users",
                format!("{:?} must be a non-empty subset of user_counts {ks:?}", params.train_users),
            ));
        }
        let [lo, hi] = params.pilot_db;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(Error::param("pilot_db", format!("{:?} must be finite and ordered", params.pilot_db)));
        }
        let b = &params.base;
        let groups = ks
            .iter()
            .map(|&k| {
                let scenario = Scenario { n_users: k, ..b.scenario(b.angular_spread_deg) };
                (scenario, CsiModel::Pilot { lo_db: lo, hi_db: hi })
            })
            .collect();
        let table = TableBase::new(params.base.clone(), groups)?;
        Ok(Self { table, user_counts: params.user_counts, train_users: params.train_users })
    }

    /// Instances whose number of users is in `ks`.
    fn only(set: &[Instance], ks: &[usize]) -> Vec<Instance> {
        set.iter().filter(|i| ks.contains(&i.targets.len())).cloned().collect()
    }

    fn run(&self, unit: Unit, seed: u64) -> Result<Vec<CurveRow>, Error> {
        let method = unit.label();
        let _span = tracing::info_span!("generalisation_unit", method).entered();
        let t = &self.table;
        let (n_groups, p) = (t.n_groups(), t.params());
        let test = t.dataset(p.n_test, 2)?;
        let rows = match unit {
            Unit::GHbfPerf => t.table_rows(
                method,
                &evaluate_designs(&test, n_groups, p.power_budget, |i| t.greedy_design(i, true, 1.0, false))?,
            ),
            Unit::GHbfMarg => {
                let val = t.dataset(p.n_val, 1)?;
                t.margin_unit(method, &val, &test, |i, m| t.greedy_design(i, false, m, true))?
            }
            Unit::UGHbfGcn | Unit::UGHbfGcnStar | Unit::UFdbfGcn => {
                let (mut train, mut val) = (t.dataset(p.n_train, 0)?, t.dataset(p.n_val, 1)?);
                if unit == Unit::UGHbfGcnStar {
                    train = Self::only(&train, &self.train_users);
                    val = Self::only(&val, &self.train_users);
                }
                let arch = if unit == Unit::UFdbfGcn { Architecture::FullyDigital } else { Architecture::Hybrid };
                let tp = TrainParams { epsilon: p.epsilon, ..p.train.clone() };
                let trainer = Trainer::new(&p.gcn, t.settings()?, tp, n_groups, &train, seed)?.with_architecture(arch);
                t.learned_instance_unit(method, trainer, [&train, &val, &test], seed)?
            }
        };
        let xs: Vec<f64> = self.user_counts.iter().map(|&k| k as f64).collect();
        Ok(relabel_groups(rows, &xs))
    }
}

impl_table_experiment!(Generalisation, Unit);

/// Builds the experiment from its parameters.
///
/// # Errors
/// As [`Generalisation::new`].
pub fn generalisation_table(params: GeneralisationParams) -> Result<Generalisation, Error> {
    Generalisation::new(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use beamlab_core::experiment::FamilyExperiment;

    fn tiny() -> GeneralisationParams {
        GeneralisationParams {
            base: OutageTableParams {
                n_train: 16,
                n_val: 8,
                n_test: 8,
                margin_steps: 3,
                train: TrainParams { n_steps: 2, batch_size: 4, eval_every: 1, ..TrainParams::default() },
                ..OutageTableParams::default()
            },
            ..GeneralisationParams::default()
        }
    }

    fn pick(rows: &[CurveRow], metric: &str) -> Vec<(f64, f64)> {
        rows.iter().filter(|r| r.metric == metric).map(|r| (r.x, r.mean)).collect()
    }

    #[test]
    fn groups_are_the_numbers_of_users() {
        let exp = generalisation_table(tiny()).unwrap();
        let t = &exp.table;
        let test = t.dataset(8, 2).unwrap();
        for inst in &test {
            assert_eq!(inst.targets.len(), [1, 2, 3, 4][inst.group], "group {} has K = {}", inst.group, inst.h.len());
            assert_eq!((inst.h.len(), inst.h_est.len()), (inst.targets.len(), inst.targets.len()));
            assert!((1.0..=10.0).contains(&inst.zeta), "pilot power {} outside [0, 10] dB", inst.zeta);
        }
        assert!((0..4).all(|g| test.iter().any(|i| i.group == g)));
    }

    #[test]
    fn perfect_csi_has_zero_outage_at_every_k_including_one() {
        let exp = generalisation_table(tiny()).unwrap();
        let rows = exp.run_unit(0, 1).unwrap();
        let outage = pick(&rows, "outage");
        assert_eq!(outage.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1.0, 2.0, 3.0, 4.0]);
        assert!(outage.iter().all(|r| r.1 == 0.0), "{outage:?}");
        let power = pick(&rows, "power");
        assert!(power.iter().all(|r| r.1 > 0.0 && r.1 <= 100.0), "{power:?}");
        // Deterministic for a seed.
        assert_eq!(exp.run_unit(0, 1).unwrap(), rows);
        // Margins per K.
        let marg = exp.run_unit(1, 1).unwrap();
        assert_eq!(pick(&marg, "margin_db").len(), 4);
        assert_eq!(pick(&marg, "outage").len(), 4);
    }

    #[test]
    fn the_model_trained_on_two_and_three_users_runs_on_one_and_four() {
        let exp = generalisation_table(tiny()).unwrap();
        let rows = exp.run_unit(3, 5).unwrap();
        let outage = pick(&rows, "outage");
        assert_eq!(outage.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1.0, 2.0, 3.0, 4.0]);
        assert!(outage.iter().all(|r| r.1.is_finite() && (0.0..=1.0).contains(&r.1)), "{outage:?}");
        assert!(pick(&rows, "power").iter().all(|r| r.1.is_finite() && r.1 > 0.0));
        // Validated on K ∈ {2, 3} only: no validation rows for K = 1 and 4, and no NaN rows.
        let val = pick(&rows, "val_outage_group");
        assert_eq!(val.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2.0, 3.0], "{val:?}");
        assert!(rows.iter().all(|r| r.mean.is_finite()), "{rows:?}");
        assert_eq!(exp.run_unit(3, 5).unwrap().len(), rows.len());
        // The model trained on every K has validation numbers for every K.
        let all = exp.run_unit(2, 5).unwrap();
        assert!(pick(&all, "val_outage_group").iter().all(|r| r.1.is_finite()));
    }

    #[test]
    fn rows_do_not_depend_on_the_thread_count() {
        let exp = generalisation_table(tiny()).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| [1, 3].map(|u| exp.run_unit(u, 11).unwrap()))
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn params_are_validated_and_strict() {
        let with = |f: fn(&mut GeneralisationParams)| {
            let mut p = tiny();
            f(&mut p);
            generalisation_table(p)
        };
        assert!(with(|p| p.user_counts = vec![]).is_err());
        assert!(with(|p| p.user_counts = vec![0, 2]).is_err());
        assert!(with(|p| p.user_counts = vec![6]).is_err(), "K > n_rf");
        assert!(with(|p| p.user_counts = vec![2, 2]).is_err());
        assert!(with(|p| p.train_users = vec![5]).is_err());
        assert!(with(|p| p.train_users = vec![]).is_err());
        assert!(with(|p| p.pilot_db = [10.0, 0.0]).is_err());
        assert!(with(|p| p.pilot_db = [f64::NAN, 0.0]).is_err());
        assert!(with(|p| p.base.epsilon = 2.0).is_err());
        let p: GeneralisationParams =
            serde_json::from_str(r#"{"user_counts": [1, 4], "train_users": [4], "base": {"n_train": 3}}"#).unwrap();
        assert_eq!((p.user_counts, p.train_users, p.base.n_train), (vec![1, 4], vec![4], 3));
        assert!(serde_json::from_str::<GeneralisationParams>(r#"{"user_count": [1]}"#).is_err());
        assert!(generalisation_table(GeneralisationParams::default()).is_ok());
    }
}
