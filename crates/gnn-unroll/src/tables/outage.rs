//! The Table 2 experiment (spec §7, paper §5.2–5.3) as a
//! [`FamilyExperiment`](beamlab_core::experiment::FamilyExperiment).
//!
//! Scenario: `N1 × N2` UPA, DFT codebook with `O = 1`, `M` RF chains, `K` users, targets uniform in
//! dB, pilot-power constraint groups `ρ ∈ rho_db` plus one group with `ρ` uniform over their range
//! (noisy MMSE estimates). Instances infeasible under perfect CSI (G-HBF-perf with the budget) are
//! redrawn. The data (train / validation / test) depend only on `data_seed`, so every unit sees the
//! same data; the unit seed drives network initialisation and batch order.
//!
//! Units ([`Unit`]), each returning per-group rows `power` (mean transmit power, infeasible
//! instances count `P_max`) and `outage` (fraction of test users with `SINR < γ`) at `x = group`:
//!
//! 0. `G-HBF-perf`: greedy on the true channel;
//! 1. `G-HBF-marg`: greedy on the estimate with targets `γ Δ_g`, `Δ_g` bisected on the validation
//!    set to the nominal outage; powers above `P_max` are scaled down (projection (33));
//! 2. `U-G-HBF-GCN`: the unrolled network, annealing loss;
//! 3. `U-G-HBF-FCN`: the same with `J = 0`;
//! 4. `U-G-HBF-GCN-quantile`: the GCN with the quantile loss;
//! 5. `U-FDBF-GCN`: the fully digital version (`A = I_N`, paper §5.1.3), annealing loss;
//! 6. `FDBF-perf`: fully digital QoS power minimisation on the true channel (the fully digital
//!    power lower bound, zero outage);
//! 7. `FDBF-marg`: the same on the estimate with targets `γ Δ_g`, margins bisected like unit 1.
//!
//! Learned units also return their validation trace (`val_metric`, `val_power`, `val_outage` at
//! `x = step`, and per group `val_dual_g{g}` (the dual `μ_g`) and `val_outage_g{g}`), the data of
//! the annealing-versus-quantile comparison (spec §7 item 4); the margin units return `margin_db`
//! per group. Learned and margin units also return `val_power_group` / `val_outage_group` at
//! `x = group`: validation numbers at the restored step / the bisected margins.

use beamlab_core::experiment::CurveRow;

use super::common::{OutageTableParams, TableBase};
use super::{TableUnit, impl_table_experiment};
use crate::Error;
use crate::data::{Instance, pilot_groups};
use crate::model::GcnConfig;
use crate::train::{ConstraintLoss, TrainParams, Trainer, evaluate_designs};
use crate::unroll::Architecture;

/// The units of Table 2, in unit order (the fully digital ones are appended, so the hybrid units
/// keep their indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Greedy on the true channel.
    GHbfPerf,
    /// Greedy on the estimate with per-group margins bisected on validation data.
    GHbfMarg,
    /// The unrolled GCN, annealing loss.
    UGHbfGcn,
    /// The same with filter order `J = 0`.
    UGHbfFcn,
    /// The GCN with the quantile loss.
    UGHbfGcnQuantile,
    /// The fully digital learned model (`A = I_N`).
    UFdbfGcn,
    /// Fully digital QoS power minimisation on the true channel.
    FdbfPerf,
    /// The same on the estimate with per-group margins.
    FdbfMarg,
}

impl TableUnit for Unit {
    const ALL: &'static [Self] = &[
        Self::GHbfPerf,
        Self::GHbfMarg,
        Self::UGHbfGcn,
        Self::UGHbfFcn,
        Self::UGHbfGcnQuantile,
        Self::UFdbfGcn,
        Self::FdbfPerf,
        Self::FdbfMarg,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::GHbfPerf => "G-HBF-perf",
            Self::GHbfMarg => "G-HBF-marg",
            Self::UGHbfGcn => "U-G-HBF-GCN",
            Self::UGHbfFcn => "U-G-HBF-FCN",
            Self::UGHbfGcnQuantile => "U-G-HBF-GCN-quantile",
            Self::UFdbfGcn => "U-FDBF-GCN",
            Self::FdbfPerf => "FDBF-perf",
            Self::FdbfMarg => "FDBF-marg",
        }
    }
}

/// The experiment built from [`OutageTableParams`].
#[derive(Clone, Debug)]
pub struct OutageTable {
    base: TableBase,
}

impl OutageTable {
    /// Validates the parameters; the groups are one per pilot power in `rho_db` plus one with
    /// the pilot power uniform over their range.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the offending field.
    pub fn new(params: OutageTableParams) -> Result<Self, Error> {
        let scenario = params.scenario(params.angular_spread_deg);
        let groups = pilot_groups(&params.rho_db).into_iter().map(|c| (scenario.clone(), c)).collect();
        Ok(Self { base: TableBase::new(params, groups)? })
    }

    fn run(&self, unit: Unit, seed: u64) -> Result<Vec<CurveRow>, Error> {
        let method = unit.label();
        let _span = tracing::info_span!("outage_table_unit", method).entered();
        let t = &self.base;
        let (n_groups, p) = (t.n_groups(), t.params());
        let test = t.dataset(p.n_test, 2)?;
        match unit {
            Unit::GHbfPerf => {
                let stats =
                    evaluate_designs(&test, n_groups, p.power_budget, |i| t.greedy_design(i, true, 1.0, false))?;
                Ok(t.table_rows(method, &stats))
            }
            Unit::FdbfPerf => {
                let stats =
                    evaluate_designs(&test, n_groups, p.power_budget, |i| t.digital_design(i, true, 1.0, false))?;
                Ok(t.table_rows(method, &stats))
            }
            Unit::GHbfMarg => {
                let val = t.dataset(p.n_val, 1)?;
                t.margin_unit(method, &val, &test, |i: &Instance, m| t.greedy_design(i, false, m, true))
            }
            Unit::FdbfMarg => {
                let val = t.dataset(p.n_val, 1)?;
                t.margin_unit(method, &val, &test, |i: &Instance, m| t.digital_design(i, false, m, true))
            }
            Unit::UGHbfGcn | Unit::UGHbfFcn | Unit::UGHbfGcnQuantile | Unit::UFdbfGcn => {
                let train = t.dataset(p.n_train, 0)?;
                let val = t.dataset(p.n_val, 1)?;
                let filter_order = if unit == Unit::UGHbfFcn { 0 } else { p.gcn.filter_order };
                let gcn = GcnConfig { filter_order, ..p.gcn.clone() };
                let loss = if unit == Unit::UGHbfGcnQuantile { ConstraintLoss::Quantile } else { p.train.loss.clone() };
                let tp = TrainParams { epsilon: p.epsilon, loss, ..p.train.clone() };
                let arch = if unit == Unit::UFdbfGcn { Architecture::FullyDigital } else { Architecture::Hybrid };
                let trainer = Trainer::new(&gcn, t.settings()?, tp, n_groups, &train, seed)?.with_architecture(arch);
                t.learned_instance_unit(method, trainer, [&train, &val, &test], seed)
            }
        }
    }
}

impl_table_experiment!(OutageTable, Unit);

/// Builds the experiment from its parameters.
///
/// # Errors
/// As [`OutageTable::new`].
pub fn outage_table(params: OutageTableParams) -> Result<OutageTable, Error> {
    OutageTable::new(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use beamlab_core::experiment::FamilyExperiment;

    fn tiny() -> OutageTableParams {
        OutageTableParams {
            n_train: 8,
            n_val: 8,
            n_test: 8,
            margin_steps: 3,
            train: TrainParams { n_steps: 2, batch_size: 4, eval_every: 1, ..TrainParams::default() },
            ..OutageTableParams::default()
        }
    }

    #[test]
    fn calibrated_learned_series_bisects_one_offset_per_group_on_validation() {
        let p = OutageTableParams { calibrate_learned_db: Some(3.0), margin_steps: 4, n_val: 24, ..tiny() };
        let exp = outage_table(p.clone()).unwrap();
        let rows = exp.run_unit(2, 1).unwrap();
        let of = |series: &str, metric: &str| -> Vec<f64> {
            rows.iter().filter(|r| r.series == series && r.metric == metric).map(|r| r.mean).collect()
        };
        let offsets = of("U-G-HBF-GCN+cal", "margin_db");
        assert_eq!(offsets.len(), 4);
        assert!(offsets.iter().all(|o| (-3.0..=3.0).contains(o)), "{offsets:?}");
        // Bisection keeps the smallest offset with validation outage <= epsilon, or the upper
        // end, or (when that is worse) no offset.
        let val_outage = of("U-G-HBF-GCN+cal", "val_outage_group");
        for (o, v) in offsets.iter().zip(&val_outage) {
            assert!(*v <= 0.1 + 1e-12 || (*o - 3.0).abs() < 1e-9 || *o == 0.0, "offset {o} dB, outage {v}");
        }
        assert_eq!(of("U-G-HBF-GCN+cal", "outage").len(), 4);
        // The plain series is unchanged by the extra rows.
        let plain = outage_table(tiny()).unwrap().run_unit(2, 1).unwrap();
        assert!(plain.iter().all(|r| !r.series.ends_with("+cal")));
        let exp_plain = outage_table(OutageTableParams { calibrate_learned_db: None, ..p.clone() }).unwrap();
        let same: Vec<CurveRow> = exp_plain.run_unit(2, 1).unwrap();
        assert_eq!(rows.iter().filter(|r| r.series == "U-G-HBF-GCN").cloned().collect::<Vec<_>>(), same);
        for bad in [-1.0, 0.0, 31.0, f64::NAN] {
            assert!(outage_table(OutageTableParams { calibrate_learned_db: Some(bad), ..tiny() }).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_unit_runs_and_perfect_csi_has_no_outage() {
        let exp = outage_table(tiny()).unwrap();
        assert_eq!(exp.n_units(), 8);
        let perf = exp.run_unit(0, 1).unwrap();
        let outage: Vec<_> = perf.iter().filter(|r| r.metric == "outage").collect();
        assert_eq!(outage.len(), 4);
        assert!(outage.iter().all(|r| r.mean == 0.0), "{outage:?}");
        assert!(perf.iter().filter(|r| r.metric == "power").all(|r| r.mean > 0.0 && r.mean <= 100.0));
        let marg = exp.run_unit(1, 1).unwrap();
        assert!(marg.iter().any(|r| r.metric == "margin_db"));
        let gcn = exp.run_unit(2, 1).unwrap();
        assert!(gcn.iter().any(|r| r.metric == "val_metric") && gcn.iter().any(|r| r.metric == "outage"));
        // Deterministic for a seed.
        assert_eq!(exp.run_unit(0, 1).unwrap(), perf);
        // Fully digital units: the learned one runs; FDBF-perf has zero outage and never more
        // power than G-HBF-perf on the same test instances (orthonormal codebook, module docs of
        // `unroll::Architecture`); FDBF-marg calibrates margins.
        let fd = exp.run_unit(5, 1).unwrap();
        assert!(fd.iter().any(|r| r.metric == "val_dual_g0") && fd.iter().any(|r| r.metric == "outage"));
        let fd_perf = exp.run_unit(6, 1).unwrap();
        let pick = |rows: &[CurveRow], m: &str| -> Vec<f64> {
            rows.iter().filter(|r| r.metric == m).map(|r| r.mean).collect()
        };
        assert!(pick(&fd_perf, "outage").iter().all(|o| *o == 0.0), "{fd_perf:?}");
        for (d, h) in pick(&fd_perf, "power").iter().zip(pick(&perf, "power")) {
            assert!(*d <= h * (1.0 + 1e-9), "FDBF-perf {d} > G-HBF-perf {h}");
        }
        let fd_marg = exp.run_unit(7, 1).unwrap();
        assert_eq!(pick(&fd_marg, "margin_db").len(), 4);
        assert_eq!(exp.unit_label(5), "U-FDBF-GCN");
    }

    #[test]
    fn params_are_validated_and_strict() {
        // Each bad field is named, so a config error points at its key.
        for (params, field) in [
            (OutageTableParams { n_rf: 17, ..tiny() }, "n_rf"),
            (OutageTableParams { epsilon: 0.0, ..tiny() }, "epsilon"),
            (OutageTableParams { rho_db: vec![], ..tiny() }, "rho_db"),
            (OutageTableParams { n_val: 0, ..tiny() }, "n_val"),
            (OutageTableParams { power_budget: f64::NAN, ..tiny() }, "power_budget"),
            (OutageTableParams { gcn: GcnConfig { width: 0, ..GcnConfig::default() }, ..tiny() }, "width"),
        ] {
            let err = outage_table(params).unwrap_err();
            assert!(matches!(err, Error::InvalidParameter { name, .. } if name == field), "{field}: {err}");
        }
        // Group inputs must match the number of groups (the fixed pilot powers plus the uniform one).
        let gi = |n, rho_db: Vec<f64>| OutageTableParams {
            gcn: GcnConfig { group_inputs: std::num::NonZeroUsize::new(n), ..GcnConfig::default() },
            rho_db,
            ..tiny()
        };
        assert!(outage_table(gi(4, vec![0.0, 5.0, 10.0])).is_ok() && outage_table(gi(3, vec![0.0, 10.0])).is_ok());
        for bad in [gi(3, vec![0.0, 5.0, 10.0]), gi(4, vec![0.0, 10.0])] {
            assert!(matches!(outage_table(bad), Err(Error::InvalidParameter { name: "gcn.group_inputs", .. })));
        }
        let p: OutageTableParams =
            serde_json::from_str(r#"{"gcn": {"group_inputs": 4}, "calibrate_learned_db": 3.0}"#).unwrap();
        assert_eq!((p.gcn.n_group_inputs(), p.calibrate_learned_db), (4, Some(3.0)));
        assert!(serde_json::from_str::<OutageTableParams>(r#"{"gcn": {"group_inputs": 0}}"#).is_err());
        let p: OutageTableParams =
            serde_json::from_str(r#"{"n_users": 4, "train": {"n_steps": 5}, "gcn": {"width": 8}}"#).unwrap();
        assert_eq!((p.n_users, p.train.n_steps, p.gcn.width, p.n_rf), (4, 5, 8, 5));
        assert!(serde_json::from_str::<OutageTableParams>(r#"{"n_userz": 4}"#).is_err());
        assert!(serde_json::from_str::<OutageTableParams>(r#"{"train": {"loss": {"kind": "quantile"}}}"#).is_ok());
    }
}
