//! The Table 2 experiment (spec §7, paper §5.2–5.3) as a
//! [`FamilyExperiment`](beamlab_core::experiment::FamilyExperiment).
//!
//! Scenario: `N1 × N2` UPA, DFT codebook with `O = 1`, `M` RF chains, `K` users, targets uniform in
//! dB, pilot-power constraint groups `ρ ∈ rho_db` plus one group with `ρ` uniform over their range
//! (noisy MMSE estimates). Instances infeasible under perfect CSI (G-HBF-perf with the budget) are
//! redrawn. The data (train / validation / test) depend only on `data_seed`, so every unit sees the
//! same data; the unit seed drives network initialisation and batch order.
//!
//! Units (methods), each returning per-group rows `power` (mean transmit power, infeasible
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
use beamlab_linalg_ops::c64;
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::Error;
use crate::data::{CsiModel, Instance, Scenario, draw_instance, pilot_groups};
use crate::greedy::{GreedyOptions, PowerWeighting, dft_codebook, greedy_hbf, rank_one_covariances, snr_init};
use crate::model::GcnConfig;
use crate::outage::{calibrate_margin, sinrs};
use crate::qos::{QosOptions, QosSystem, solve_qos};
use crate::train::{ConstraintLoss, EvalStats, System, TrainParams, Trainer, evaluate_designs};
use crate::unroll::{Architecture, UnrollSettings, UnrolledOutput};

/// Parameters of the Table 2 experiment. Defaults are the quick profile (≈ 1–3 min on 2 cores);
/// the CPU-scale profile of spec §7 is documented in docs/gnn-unroll.md.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutageTableParams {
    /// UPA size `[N1, N2]`.
    pub n_antennas: [usize; 2],
    /// Users `K`.
    pub n_users: usize,
    /// RF chains `M`.
    pub n_rf: usize,
    /// Greedy selections `T`.
    pub n_selections: usize,
    /// Power budget `P_max` (linear, unit noise).
    pub power_budget: f64,
    /// Fixed pilot powers of the constraint groups (dB); a uniform group over their range is added.
    pub rho_db: Vec<f64>,
    /// SINR target range (dB).
    pub target_db: [f64; 2],
    /// Angular spread (degrees).
    pub angular_spread_deg: f64,
    /// Training instances.
    pub n_train: usize,
    /// Validation instances (margin calibration, early stopping).
    pub n_val: usize,
    /// Test instances (the reported numbers).
    pub n_test: usize,
    /// Seed of all data sets.
    pub data_seed: u64,
    /// Nominal outage `ε` (also used by training).
    pub epsilon: f64,
    /// Bisection steps of the G-HBF-marg margin.
    pub margin_steps: usize,
    /// Upper end of the margin search (dB).
    pub margin_max_db: f64,
    /// Network architecture (the FCN unit sets `filter_order = 0`).
    pub gcn: GcnConfig,
    /// Training hyper-parameters (the quantile unit replaces `loss`; `epsilon` is overridden).
    pub train: TrainParams,
    /// Post-training calibration of the learned units (own addition, docs/gnn-unroll.md). `None`
    /// (default, the paper's): none. `Some(c)`, `c ∈ (0, 30]` dB: each learned unit also reports
    /// the series `"<method>+cal"`, the trained model run with its targets scaled by one offset per
    /// group, bisected on the validation set in `[−c, +c]` dB to the nominal outage (as G-HBF-marg's
    /// margins are). In a config: `calibrate_learned_db = 3.0`.
    pub calibrate_learned_db: Option<f64>,
}

impl OutageTableParams {
    /// The user scenario of these parameters with angular spread `angular_spread_deg` (mean
    /// angles uniform in ±60°).
    pub(crate) fn scenario(&self, angular_spread_deg: f64) -> Scenario {
        Scenario {
            n_antennas: (self.n_antennas[0], self.n_antennas[1]),
            n_users: self.n_users,
            angular_spread_deg,
            max_angle_deg: 60.0,
            target_db: (self.target_db[0], self.target_db[1]),
        }
    }
}

impl Default for OutageTableParams {
    fn default() -> Self {
        Self {
            n_antennas: [4, 4],
            n_users: 3,
            n_rf: 5,
            n_selections: 5,
            power_budget: 100.0,
            rho_db: vec![0.0, 5.0, 10.0],
            target_db: [0.0, 10.0],
            angular_spread_deg: 10.0,
            n_train: 256,
            n_val: 128,
            n_test: 256,
            data_seed: 2024,
            epsilon: 0.1,
            margin_steps: 8,
            margin_max_db: 15.0,
            gcn: GcnConfig::default(),
            train: TrainParams { n_steps: 60, batch_size: 16, eval_every: 10, ..TrainParams::default() },
            calibrate_learned_db: None,
        }
    }
}

/// Method names of the units, in unit order (units 5–7 are the fully digital ones, appended so the
/// hybrid units keep their indices).
pub const METHODS: [&str; 8] = [
    "G-HBF-perf",
    "G-HBF-marg",
    "U-G-HBF-GCN",
    "U-G-HBF-FCN",
    "U-G-HBF-GCN-quantile",
    "U-FDBF-GCN",
    "FDBF-perf",
    "FDBF-marg",
];

/// The experiment built from [`OutageTableParams`].
#[derive(Clone, Debug)]
pub struct OutageTable {
    params: OutageTableParams,
    /// Per constraint group: the scenario (Table 3 varies `K`) and the CSI degradation.
    groups: Vec<(Scenario, CsiModel)>,
}

impl OutageTable {
    /// Validates the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the offending field.
    pub fn new(params: OutageTableParams) -> Result<Self, Error> {
        let p = &params;
        let bad = |m: &str| Err(Error::InvalidInput(format!("outage table: {m}")));
        if p.n_antennas.contains(&0) || p.n_users == 0 || p.n_rf == 0 || p.n_rf > p.n_antennas[0] * p.n_antennas[1] {
            return bad("sizes must be positive with n_rf <= N1 N2");
        }
        if !(p.power_budget.is_finite() && p.power_budget > 0.0) || p.rho_db.is_empty() {
            return bad("power_budget must be finite > 0 and rho_db non-empty");
        }
        if p.rho_db.iter().any(|r| !r.is_finite()) || !(p.target_db[0] <= p.target_db[1]) {
            return bad("rho_db must be finite and target_db ordered");
        }
        if p.n_train == 0 || p.n_val == 0 || p.n_test == 0 || !(p.epsilon > 0.0 && p.epsilon < 1.0) {
            return bad("data set sizes must be >= 1 and epsilon in (0, 1)");
        }
        if !(p.margin_max_db >= 0.0 && p.margin_max_db.is_finite()) {
            return bad("margin_max_db must be finite >= 0");
        }
        if p.calibrate_learned_db.is_some_and(|c| !(c > 0.0 && c <= 30.0)) {
            return bad("calibrate_learned_db must be in (0, 30]");
        }
        TrainParams { epsilon: p.epsilon, ..p.train.clone() }.check()?;
        let scenario = p.scenario(p.angular_spread_deg);
        let groups = pilot_groups(&p.rho_db).into_iter().map(|c| (scenario.clone(), c)).collect();
        Self { groups, params }.checked_group_inputs()
    }

    /// One-hot group inputs of the network must match the number of constraint groups.
    fn checked_group_inputs(self) -> Result<Self, Error> {
        if let Some(n) = self.params.gcn.group_inputs {
            if n.get() != self.groups.len() {
                return Err(Error::InvalidInput(format!(
                    "outage table: gcn.group_inputs = {n} must be the number of constraint groups ({})",
                    self.groups.len()
                )));
            }
        }
        Ok(self)
    }

    /// The experiment's helpers with other constraint groups (Tables 3 and 4 reuse the Table 2
    /// designs, data sets, margin search and rows).
    pub(crate) fn with_groups(params: OutageTableParams, groups: Vec<(Scenario, CsiModel)>) -> Result<Self, Error> {
        if groups.is_empty() {
            return Err(Error::InvalidInput("outage table: no constraint groups".into()));
        }
        // Validate everything but the group inputs against the Table 2 groups, then the group
        // inputs against the replacement groups.
        let n_inputs = params.gcn.group_inputs;
        let base =
            Self::new(OutageTableParams { gcn: GcnConfig { group_inputs: None, ..params.gcn.clone() }, ..params })?;
        let mut table = Self { groups, ..base };
        table.params.gcn.group_inputs = n_inputs;
        table.checked_group_inputs()
    }

    pub(crate) fn params(&self) -> &OutageTableParams {
        &self.params
    }

    pub(crate) fn n_groups(&self) -> usize {
        self.groups.len()
    }

    pub(crate) fn settings(&self) -> Result<UnrollSettings, Error> {
        Ok(UnrollSettings {
            codebook: dft_codebook(self.params.n_antennas[0], self.params.n_antennas[1], 1, 1)?,
            n_rf: self.params.n_rf,
            n_selections: self.params.n_selections,
            power_budget: self.params.power_budget,
            qos: QosOptions::default(),
            softmin_sharpness: 5.0,
        })
    }

    /// Greedy design on covariances `r` with targets `γ·margin`; powers above the budget are scaled
    /// down when `project`, otherwise such instances are infeasible. Returns `(power, true SINRs)`.
    pub(crate) fn greedy_design(
        &self,
        inst: &Instance,
        use_truth: bool,
        margin: f64,
        project: bool,
    ) -> Result<Option<(f64, Vec<f64>)>, Error> {
        let st = self.settings()?;
        let h = if use_truth { &inst.h } else { &inst.h_est };
        let r = rank_one_covariances(h);
        let targets: Vec<f64> = inst.targets.iter().map(|g| g * margin).collect();
        let opts = GreedyOptions {
            n_selections: st.n_selections,
            power_budget: if project { None } else { Some(st.power_budget) },
            weighting: PowerWeighting::Baseband,
            qos: st.qos,
            record_trials: false,
        };
        let init = snr_init(&st.codebook, &r, st.n_rf)?;
        match greedy_hbf(&st.codebook, &r, &r, &targets, &init, &opts) {
            Ok(res) => {
                let total = res.solution.weighted_power();
                let s = (st.power_budget / total).min(1.0);
                let w = res.precoder().mapv(|z| z * s.sqrt());
                Ok(Some((total * s, sinrs(w.view(), &inst.h)?)))
            }
            Err(Error::Infeasible { .. } | Error::Singular { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Fully digital design (`A = I_N`, `Φ = I_N`) on covariances of the true channel or the
    /// estimate with targets `γ·margin`; powers above the budget are scaled down when `project`,
    /// otherwise such instances are infeasible. Returns `(power, true SINRs)`.
    fn digital_design(
        &self,
        inst: &Instance,
        use_truth: bool,
        margin: f64,
        project: bool,
    ) -> Result<Option<(f64, Vec<f64>)>, Error> {
        let n = inst.h.first().map_or(0, ndarray::Array1::len);
        baseband_design(&Array2::eye(n), self.params.power_budget, inst, use_truth, margin, project)
    }

    /// Per-group margins bisected on the validation set for `design(inst, margin)` (projected
    /// designs on the estimate), with `margin_db` rows and the validation rows at the margins.
    fn calibrated_margins<F>(
        &self,
        method: &str,
        val: &[Instance],
        design: F,
    ) -> Result<(Vec<f64>, Vec<CurveRow>), Error>
    where
        F: Fn(&Instance, f64) -> Result<Option<(f64, Vec<f64>)>, Error> + Sync,
    {
        let (n_groups, p_max) = (self.groups.len(), self.params.power_budget);
        let (margins, mut rows) = self.bisect_margins(method, |g, m| {
            let members: Vec<Instance> = val.iter().filter(|i| i.group == g).cloned().collect();
            Ok(evaluate_designs(&members, n_groups, p_max, |i| design(i, m))?.outage[g])
        })?;
        let margin_of = |i: &Instance| margins[i.group.min(n_groups - 1)];
        let val_stats = evaluate_designs(val, n_groups, p_max, |i| design(i, margin_of(i)))?;
        rows.extend(self.val_rows(method, &val_stats));
        Ok((margins, rows))
    }

    /// One margin per group, bisected (in dB on `[0, margin_max_db]`) until
    /// `outage_at(group, margin)` reaches the nominal outage, with `margin_db` rows at `x = group`.
    pub(crate) fn bisect_margins<F>(&self, method: &str, outage_at: F) -> Result<(Vec<f64>, Vec<CurveRow>), Error>
    where
        F: Fn(usize, f64) -> Result<f64, Error>,
    {
        let mut margins = Vec::with_capacity(self.groups.len());
        let mut rows = Vec::new();
        for g in 0..self.groups.len() {
            let margin = calibrate_margin(
                |m| outage_at(g, m),
                self.params.epsilon,
                0.0,
                self.params.margin_max_db,
                self.params.margin_steps,
            )?;
            rows.push(CurveRow::single(method, "margin_db", g as f64, 10.0 * margin.log10()));
            margins.push(margin);
        }
        Ok((margins, rows))
    }

    /// A margin unit: margins bisected on `val`, then the test rows of `design` at those margins.
    pub(crate) fn margin_unit<F>(
        &self,
        method: &str,
        val: &[Instance],
        test: &[Instance],
        design: F,
    ) -> Result<Vec<CurveRow>, Error>
    where
        F: Fn(&Instance, f64) -> Result<Option<(f64, Vec<f64>)>, Error> + Sync,
    {
        let n_groups = self.groups.len();
        let (margins, mut rows) = self.calibrated_margins(method, val, &design)?;
        let stats = evaluate_designs(test, n_groups, self.params.power_budget, |i| {
            design(i, margins[i.group.min(n_groups - 1)])
        })?;
        rows.extend(self.table_rows(method, &stats));
        Ok(rows)
    }

    /// Draws `n` instances cycling through the groups, redrawing those infeasible under perfect CSI.
    pub(crate) fn dataset(&self, n: usize, stream: u64) -> Result<Vec<Instance>, Error> {
        draw_feasible(
            beamlab_core::derive_seed(self.params.data_seed, &[stream]),
            n,
            self.groups.len(),
            |g, rng| draw_instance(&self.groups[g].0, &self.groups[g].1, g, rng),
            |inst| Ok(self.greedy_design(inst, true, 1.0, false)?.is_some()),
        )
    }

    pub(crate) fn table_rows(&self, method: &str, stats: &EvalStats) -> Vec<CurveRow> {
        let mut rows = Vec::new();
        for (g, (o, p)) in stats.outage.iter().zip(&stats.power).enumerate() {
            rows.push(CurveRow::single(method, "power", g as f64, *p));
            rows.push(CurveRow::single(method, "outage", g as f64, *o));
        }
        rows.push(CurveRow::single(method, "infeasible", -1.0, stats.n_infeasible as f64));
        rows
    }

    /// Validation-set rows `val_power_group` / `val_outage_group` at `x = group` (the numbers the
    /// defaults are chosen on; the test rows are only reported).
    pub(crate) fn val_rows(&self, method: &str, stats: &EvalStats) -> Vec<CurveRow> {
        let mut rows = Vec::new();
        for (g, (o, p)) in stats.outage.iter().zip(&stats.power).enumerate() {
            rows.push(CurveRow::single(method, "val_power_group", g as f64, *p));
            rows.push(CurveRow::single(method, "val_outage_group", g as f64, *o));
        }
        rows
    }

    fn run(&self, unit: usize, seed: u64) -> Result<Vec<CurveRow>, Error> {
        let method = METHODS.get(unit).ok_or_else(|| Error::InvalidInput(format!("no unit {unit}")))?;
        let _span = tracing::info_span!("outage_table_unit", method).entered();
        let (n_groups, p_max, eps) = (self.groups.len(), self.params.power_budget, self.params.epsilon);
        let test = self.dataset(self.params.n_test, 2)?;
        match unit {
            0 => {
                let stats = evaluate_designs(&test, n_groups, p_max, |i| self.greedy_design(i, true, 1.0, false))?;
                Ok(self.table_rows(method, &stats))
            }
            1 | 7 => {
                let val = self.dataset(self.params.n_val, 1)?;
                let design = |i: &Instance, m: f64| {
                    if unit == 1 {
                        self.greedy_design(i, false, m, true)
                    } else {
                        self.digital_design(i, false, m, true)
                    }
                };
                let (margins, mut rows) = self.calibrated_margins(method, &val, design)?;
                let stats =
                    evaluate_designs(&test, n_groups, p_max, |i| design(i, margins[i.group.min(n_groups - 1)]))?;
                rows.extend(self.table_rows(method, &stats));
                Ok(rows)
            }
            6 => {
                let stats = evaluate_designs(&test, n_groups, p_max, |i| self.digital_design(i, true, 1.0, false))?;
                Ok(self.table_rows(method, &stats))
            }
            _ => {
                let train = self.dataset(self.params.n_train, 0)?;
                let val = self.dataset(self.params.n_val, 1)?;
                let gcn = if unit == 3 {
                    GcnConfig { filter_order: 0, ..self.params.gcn.clone() }
                } else {
                    self.params.gcn.clone()
                };
                let loss = if unit == 4 { ConstraintLoss::Quantile } else { self.params.train.loss.clone() };
                let tp = TrainParams { epsilon: eps, loss, ..self.params.train.clone() };
                let arch = if unit == 5 { Architecture::FullyDigital } else { Architecture::Hybrid };
                let trainer = Trainer::new(&gcn, self.settings()?, tp, n_groups, &train, seed)?.with_architecture(arch);
                self.learned_instance_unit(method, trainer, [&train, &val, &test], seed)
            }
        }
    }

    /// A learned unit: trains `trainer` on `data = [train, val, test]` (instances or statistical
    /// systems; batch order from `seed`)
    /// and returns the validation trace, the validation rows at the restored step and the test rows.
    pub(crate) fn learned_unit<S: System>(
        &self,
        method: &str,
        trainer: Trainer,
        data: [&[S]; 3],
        seed: u64,
    ) -> Result<Vec<CurveRow>, Error> {
        Ok(self.trained_rows(method, trainer, data, seed)?.0)
    }

    /// [`Self::learned_unit`] on instances, plus the calibrated series `"<method>+cal"` with
    /// `calibrate_learned_db`.
    pub(crate) fn learned_instance_unit(
        &self,
        method: &str,
        trainer: Trainer,
        data: [&[Instance]; 3],
        seed: u64,
    ) -> Result<Vec<CurveRow>, Error> {
        let (mut rows, trainer) = self.trained_rows(method, trainer, data, seed)?;
        if let Some(c) = self.params.calibrate_learned_db {
            rows.extend(self.calibrated_learned_rows(
                &format!("{method}+cal"),
                c,
                &|i| trainer.infer(i),
                data[1],
                data[2],
            )?);
        }
        Ok(rows)
    }

    /// The rows of [`Self::learned_unit`] and the trained model.
    fn trained_rows<S: System>(
        &self,
        method: &str,
        mut trainer: Trainer,
        data: [&[S]; 3],
        seed: u64,
    ) -> Result<(Vec<CurveRow>, Trainer), Error> {
        let [train, val, test] = data;
        let report = trainer.train(train, val, &mut ChaCha8Rng::seed_from_u64(seed ^ 0x5eed))?;
        let mut rows = Vec::new();
        for p in &report.points {
            let x = p.step as f64;
            rows.push(CurveRow::single(method, "val_metric", x, p.metric));
            rows.push(CurveRow::single(method, "val_power", x, p.stats.mean_power));
            let o: Vec<f64> = p.stats.outage.iter().copied().filter(|o| o.is_finite()).collect();
            rows.push(CurveRow::summarise(method, "val_outage", x, &o));
            for (g, (mu, og)) in p.duals.iter().zip(&p.stats.outage).enumerate() {
                rows.push(CurveRow::single(method, &format!("val_dual_g{g}"), x, *mu));
                rows.push(CurveRow::single(method, &format!("val_outage_g{g}"), x, *og));
            }
        }
        if let Some(best) = report.points.iter().find(|p| p.step == report.best_step) {
            rows.extend(self.val_rows(method, &best.stats));
        }
        rows.push(CurveRow::single(method, "best_step", -1.0, report.best_step as f64));
        rows.push(CurveRow::single(method, "skipped_steps", -1.0, report.n_skipped as f64));
        rows.extend(self.table_rows(method, &trainer.evaluate(test)?));
        Ok((rows, trainer))
    }

    /// The trained model with per-group target offsets bisected on `val` in `±c` dB (the
    /// instance's targets scaled by the offset for the network's features and the solver; outage
    /// still counted against the true targets): `margin_db`, validation and test rows under
    /// `method`.
    fn calibrated_learned_rows<F>(
        &self,
        method: &str,
        c: f64,
        infer: &F,
        val: &[Instance],
        test: &[Instance],
    ) -> Result<Vec<CurveRow>, Error>
    where
        F: Fn(&Instance) -> Result<UnrolledOutput, Error> + Sync,
    {
        let (n_groups, p_max) = (self.groups.len(), self.params.power_budget);
        let design = |inst: &Instance, offset: f64| {
            let mut scaled = inst.clone();
            scaled.targets.iter_mut().for_each(|g| *g *= offset);
            design_of(infer(&scaled))
        };
        let outage_at = |g: usize, m: f64| -> Result<f64, Error> {
            let members: Vec<Instance> = val.iter().filter(|i| i.group == g).cloned().collect();
            Ok(evaluate_designs(&members, n_groups, p_max, |i| design(i, m))?.outage[g])
        };
        let mut offsets = Vec::with_capacity(n_groups);
        let mut rows = Vec::new();
        for g in 0..n_groups {
            let mut offset =
                calibrate_margin(|m| outage_at(g, m), self.params.epsilon, -c, c, self.params.margin_steps)?;
            // Outage need not fall with the targets (higher targets push powers into the
            // projection): when the search ends at its upper end still above ε, keep the
            // uncalibrated model if that is better.
            if (10.0 * offset.log10() - c).abs() < 1e-9 {
                let at_end = outage_at(g, offset)?;
                if at_end > self.params.epsilon && outage_at(g, 1.0)? < at_end {
                    offset = 1.0;
                }
            }
            rows.push(CurveRow::single(method, "margin_db", g as f64, 10.0 * offset.log10()));
            offsets.push(offset);
        }
        let offset_of = |i: &Instance| offsets[i.group.min(n_groups - 1)];
        rows.extend(self.val_rows(method, &evaluate_designs(val, n_groups, p_max, |i| design(i, offset_of(i)))?));
        rows.extend(self.table_rows(method, &evaluate_designs(test, n_groups, p_max, |i| design(i, offset_of(i)))?));
        Ok(rows)
    }
}

/// `(power, true SINRs)` of a learned model's output; `None` when its virtual problem was
/// infeasible or singular (counted as an infeasible instance).
fn design_of(out: Result<UnrolledOutput, Error>) -> Result<Option<(f64, Vec<f64>)>, Error> {
    match out {
        Ok(out) => Ok(Some((out.power(), out.sinr))),
        Err(Error::Infeasible { .. } | Error::Singular { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Baseband QoS design for a fixed analog matrix `a: [N × M]` (`Φ = I_M`) on the true channel or
/// the estimate of `inst` with targets `γ·margin`; powers above `p_max` are scaled down when
/// `project`, otherwise such instances are infeasible. Returns `(power, true SINRs)`, `None` when
/// infeasible. With `a = I_N` this is the fully digital design.
///
/// # Errors
/// Shape errors; solver errors other than infeasibility.
pub(crate) fn baseband_design(
    a: &Array2<c64>,
    p_max: f64,
    inst: &Instance,
    use_truth: bool,
    margin: f64,
    project: bool,
) -> Result<Option<(f64, Vec<f64>)>, Error> {
    let r = rank_one_covariances(if use_truth { &inst.h } else { &inst.h_est });
    let ah = crate::util::adjoint(a);
    let projected: Vec<Array2<c64>> = r.iter().map(|x| ah.dot(x).dot(a)).collect();
    let targets: Vec<f64> = inst.targets.iter().map(|g| g * margin).collect();
    let sys = QosSystem::new(projected.clone(), projected, Array2::eye(a.ncols()), targets)?;
    match solve_qos(&sys, &QosOptions::default(), None) {
        Ok(sol) => {
            let total = sol.weighted_power();
            if !project && total > p_max {
                return Ok(None);
            }
            let s = (p_max / total).min(1.0);
            let mut w = sol.beams.clone();
            for (mut col, p) in w.columns_mut().into_iter().zip(&sol.powers) {
                col.mapv_inplace(|z| z * (s * p).sqrt());
            }
            Ok(Some((total * s, sinrs(a.dot(&w).view(), &inst.h)?)))
        }
        Err(Error::Infeasible { .. } | Error::Singular { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Draws `n` items with `draw(group, rng)`, cycling through `n_groups` groups, and keeps those
/// `feasible` accepts (redrawing the others). Draws happen in chunks on one RNG stream seeded with
/// `seed`; feasibility is checked in parallel and the kept items stay in draw order, so the result
/// does not depend on the thread count.
///
/// # Errors
/// Errors of `draw` and `feasible`; [`Error::InvalidInput`] when almost nothing is feasible.
pub(crate) fn draw_feasible<T, D, F>(
    seed: u64,
    n: usize,
    n_groups: usize,
    mut draw: D,
    feasible: F,
) -> Result<Vec<T>, Error>
where
    T: Send + Sync,
    D: FnMut(usize, &mut ChaCha8Rng) -> Result<T, Error>,
    F: Fn(&T) -> Result<bool, Error> + Sync,
{
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    let mut n_drawn = 0usize;
    while out.len() < n {
        if n_drawn > 100 * n + 100 {
            return Err(Error::InvalidInput("almost every instance is infeasible under perfect CSI".into()));
        }
        let need = n - out.len();
        let chunk =
            (0..need).map(|j| draw((n_drawn + j) % n_groups.max(1), &mut rng)).collect::<Result<Vec<_>, _>>()?;
        n_drawn += need;
        let ok = chunk.par_iter().map(&feasible).collect::<Result<Vec<bool>, Error>>()?;
        out.extend(chunk.into_iter().zip(ok).filter(|(_, f)| *f).map(|(i, _)| i));
    }
    Ok(out)
}

/// Metrics whose rows sit at `x = group` (moved by [`relabel_groups`]).
const PER_GROUP: [&str; 5] = ["power", "outage", "margin_db", "val_power_group", "val_outage_group"];

/// Moves per-group rows from `x = group` to `x = xs[group]` (Table 3: `K`, Table 4: `L`) and
/// drops validation rows whose value is NaN (groups absent from the validation set, e.g. the
/// unseen numbers of users of Table 3's `U-G-HBF-GCN*`).
pub(crate) fn relabel_groups(mut rows: Vec<CurveRow>, xs: &[f64]) -> Vec<CurveRow> {
    rows.retain(|r| !(r.mean.is_nan() && r.metric.starts_with("val_")));
    for r in &mut rows {
        if PER_GROUP.contains(&r.metric.as_str()) && r.x >= 0.0 {
            if let Some(&x) = xs.get(r.x as usize) {
                r.x = x;
            }
        }
    }
    rows
}

impl_table_experiment!(OutageTable);

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
        assert!(outage_table(OutageTableParams { n_rf: 17, ..tiny() }).is_err());
        assert!(outage_table(OutageTableParams { epsilon: 0.0, ..tiny() }).is_err());
        assert!(outage_table(OutageTableParams { rho_db: vec![], ..tiny() }).is_err());
        // Group inputs must match the number of groups (the fixed pilot powers plus the uniform one).
        let gi = |n, rho_db: Vec<f64>| OutageTableParams {
            gcn: GcnConfig { group_inputs: std::num::NonZeroUsize::new(n), ..GcnConfig::default() },
            rho_db,
            ..tiny()
        };
        assert!(outage_table(gi(4, vec![0.0, 5.0, 10.0])).is_ok() && outage_table(gi(3, vec![0.0, 10.0])).is_ok());
        assert!(outage_table(gi(3, vec![0.0, 5.0, 10.0])).is_err() && outage_table(gi(4, vec![0.0, 10.0])).is_err());
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
