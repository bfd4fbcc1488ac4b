//! What the three outage tables share: the scenario, data-set, margin-search, network and
//! training parameters ([`OutageTableParams`]), the base of every table ([`TableBase`]: its
//! constraint groups, classical designs, data sets, margin bisection, learned units and rows),
//! and the helpers Tables 3–4 reuse (`baseband_design`, `draw_feasible`, `relabel_groups`).

use beamlab_core::experiment::CurveRow;
use beamlab_linalg_ops::c64;
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::Error;
use crate::data::dft_codebook;
use crate::data::{CsiModel, Instance, Scenario, draw_instance};
use crate::greedy::{GreedyOptions, PowerWeighting, greedy_hbf, rank_one_covariances, snr_init};
use crate::model::GcnConfig;
use crate::outage::{calibrate_margin, sinrs};
use crate::qos::{QosOptions, QosSystem, solve_qos};
use crate::train::{EvalStats, Systems, TrainParams, Trainer, evaluate_designs};
use crate::unroll::{UnrollSettings, UnrolledOutput};

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

/// The base of a table experiment: validated parameters and the constraint groups (per group the
/// scenario, e.g. Table 3's `K`, and the CSI degradation).
#[derive(Clone, Debug)]
pub(crate) struct TableBase {
    params: OutageTableParams,
    groups: Vec<(Scenario, CsiModel)>,
}

impl TableBase {
    /// Validates `params` and the network's group inputs against `groups`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming the offending field; [`Error::Empty`] without groups.
    pub(crate) fn new(params: OutageTableParams, groups: Vec<(Scenario, CsiModel)>) -> Result<Self, Error> {
        let p = &params;
        if p.n_antennas.contains(&0) {
            return Err(Error::param("n_antennas", format!("UPA sizes must be >= 1, got {:?}", p.n_antennas)));
        }
        let counts = [
            ("n_users", p.n_users),
            ("n_rf", p.n_rf),
            ("n_train", p.n_train),
            ("n_val", p.n_val),
            ("n_test", p.n_test),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(Error::param(name, "must be >= 1, got 0"));
        }
        let n = p.n_antennas[0] * p.n_antennas[1];
        if p.n_rf > n {
            return Err(Error::param("n_rf", format!("{} RF chains exceed the {n} antennas", p.n_rf)));
        }
        if !(p.power_budget.is_finite() && p.power_budget > 0.0) {
            return Err(Error::param("power_budget", format!("must be finite and > 0, got {}", p.power_budget)));
        }
        if p.rho_db.is_empty() || p.rho_db.iter().any(|r| !r.is_finite()) {
            return Err(Error::param("rho_db", format!("must be non-empty and finite, got {:?}", p.rho_db)));
        }
        if !(p.target_db[0].is_finite() && p.target_db[1].is_finite() && p.target_db[0] <= p.target_db[1]) {
            return Err(Error::param("target_db", format!("must be finite and ordered, got {:?}", p.target_db)));
        }
        if !(p.epsilon > 0.0 && p.epsilon < 1.0) {
            return Err(Error::param("epsilon", format!("must be in (0, 1), got {}", p.epsilon)));
        }
        if !(p.margin_max_db >= 0.0 && p.margin_max_db.is_finite()) {
            return Err(Error::param("margin_max_db", format!("must be finite and >= 0, got {}", p.margin_max_db)));
        }
        if let Some(c) = p.calibrate_learned_db.filter(|c| !(*c > 0.0 && *c <= 30.0)) {
            return Err(Error::param("calibrate_learned_db", format!("must be in (0, 30], got {c}")));
        }
        TrainParams { epsilon: p.epsilon, ..p.train.clone() }.check()?;
        p.gcn.check()?;
        if groups.is_empty() {
            return Err(Error::Empty { what: "constraint groups" });
        }
        if let Some(n) = p.gcn.group_inputs {
            if n.get() != groups.len() {
                return Err(Error::param(
                    "gcn.group_inputs",
                    format!("{n} must be the number of constraint groups ({})", groups.len()),
                ));
            }
        }
        Ok(Self { params, groups })
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
    pub(crate) fn digital_design(
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
    pub(crate) fn calibrated_margins<F>(
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

    /// A learned unit: trains `trainer` on `data = [train, val, test]` (instances or statistical
    /// systems; batch order from `seed`)
    /// and returns the validation trace, the validation rows at the restored step and the test rows.
    pub(crate) fn learned_unit(
        &self,
        method: &str,
        trainer: Trainer,
        data: [Systems<'_>; 3],
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
        let systems = data.map(Systems::Instances);
        let (mut rows, trainer) = self.trained_rows(method, trainer, systems, seed)?;
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
    fn trained_rows(
        &self,
        method: &str,
        mut trainer: Trainer,
        data: [Systems<'_>; 3],
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
/// Errors of `draw` and `feasible`; [`Error::NoFeasibleInstances`] when almost nothing is
/// feasible (more than `100 n + 100` draws).
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
            return Err(Error::NoFeasibleInstances { n_wanted: n, n_drawn, n_feasible: out.len() });
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
