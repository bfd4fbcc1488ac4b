//! Family experiments: experiments that are not Monte-Carlo sweeps of beamformers (prediction
//! error against horizon, convergence traces, training curves, outage tables).
//!
//! A family config names a `family` (the method family that owns the experiment's code), a
//! `[params]` table handed to that family's parameter struct, and per-profile overrides of those
//! parameters (`[profile.quick]`, `[profile.paper]`, each a table of `params` keys). The family
//! builds a [`FamilyExperiment`]; the harness runs its units in parallel (rayon), stores every
//! finished unit's rows ([`CurveRow`](beamlab_core::experiment::CurveRow)) atomically in
//! `curves.csv` (so an interrupted run resumes without redoing finished units), draws the
//! configured figures from the stored rows, and checks claims.
//!
//! ```toml
//! experiment = "wmmse_convergence"
//! title = "WMMSE: sum SE against iteration"
//! seed = 11
//! family = "wmmse_convergence"
//! [params]
//! n_tx = 16
//! [profile.quick]
//! n_realisations = 10
//! [[figure]]
//! name = "se_vs_iteration"
//! metric = "sum_se"
//! x_label = "Iteration"
//! y_label = "Sum SE (bit/s/Hz)"
//! ```
//!
//! Files: this one holds the configuration, the family registry ([`build_family`]) and the
//! harness ([`run_family`]); `family/report.rs` turns stored rows into figures, claim checks and
//! the report section.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use beamlab_core::derive_seed;
use beamlab_core::experiment::FamilyExperiment;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::EvalError;
use crate::results::{
    code_hash, fnv1a, git_revision, host_name, read_csv, utc_now, write_csv_atomic, write_json_atomic,
};

mod report;

pub use report::{check_curves, curves_of, draw_figures, family_section, read_curves, read_family_manifest};

/// A family experiment's configuration (a `configs/*.toml` file with a top-level `family` key).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FamilyConfig {
    /// Name; results go to `results/<experiment>/`.
    pub experiment: String,
    /// Human-readable title.
    pub title: String,
    /// Context printed under the title in REPORT.md.
    #[serde(default)]
    pub notes: Option<String>,
    /// Base seed; unit `u` runs with `derive_seed(seed, [u])`.
    pub seed: u64,
    /// The method family that owns the experiment (see [`FAMILIES`]).
    pub family: String,
    /// Parameters common to every profile.
    #[serde(default)]
    pub params: toml::Table,
    /// Per-profile parameter overrides (`[profile.quick]`, `[profile.paper]`).
    pub profile: BTreeMap<String, toml::Table>,
    /// Figures: one metric against x, one line per series.
    #[serde(default)]
    pub figure: Vec<CurveFigure>,
    /// Claims checked against the curves.
    #[serde(default)]
    pub check: Vec<CurveCheck>,
}

/// A figure of a family experiment.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CurveFigure {
    /// File stem.
    pub name: String,
    /// Metric shown.
    pub metric: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Series shown (empty: all).
    #[serde(default)]
    pub series: Vec<String>,
}

/// A claim on the curves: `better` beats `than` on `metric` (at `at`, or at every common x).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CurveCheck {
    /// Text of the claim.
    pub claim: String,
    /// Series expected to be better.
    pub better: String,
    /// Series it is compared with (empty when `than_value` is given).
    #[serde(default)]
    pub than: String,
    /// A constant it is compared with instead of a series (e.g. an outage target).
    #[serde(default)]
    pub than_value: Option<f64>,
    /// Metric compared.
    pub metric: String,
    /// Whether lower values are better (errors, power, time).
    #[serde(default)]
    pub lower_is_better: bool,
    /// Required advantage in the metric's unit (default 0, or no absolute requirement when
    /// `relative_margin` is given).
    #[serde(default)]
    pub margin: Option<f64>,
    /// Required relative advantage (advantage / |than|).
    #[serde(default)]
    pub relative_margin: Option<f64>,
    /// Only at this x (default: every x both series have).
    #[serde(default)]
    pub at: Option<f64>,
    /// Compare with `than` at this x instead of the same x (for constant reference lines that
    /// are stored at their end points only).
    #[serde(default)]
    pub than_at: Option<f64>,
}

/// Outcome of a [`CurveCheck`].
#[derive(Clone, Debug, PartialEq)]
pub struct CurveCheckOutcome {
    /// The claim's text.
    pub claim: String,
    /// Whether it holds at every considered x.
    pub holds: bool,
    /// Smallest advantage (metric units, sign such that positive means `better` is better).
    pub worst_margin: f64,
    /// Advantage relative to `|than|` at that x.
    pub worst_relative: f64,
    /// Where the advantage is smallest.
    pub worst_x: f64,
    /// Number of x values compared.
    pub n_compared: usize,
}

/// One stored curve row (`curves.csv`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct StoredCurveRow {
    /// Unit that produced the row.
    pub unit: usize,
    /// Series.
    pub series: String,
    /// Metric.
    pub metric: String,
    /// Abscissa.
    pub x: f64,
    /// Mean.
    pub mean: f64,
    /// Standard deviation.
    pub std: f64,
    /// Number of measurements.
    pub n: usize,
}

/// Provenance of a family experiment's results (`manifest.json`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct FamilyManifest {
    /// Experiment name.
    pub experiment: String,
    /// Family.
    pub family: String,
    /// Profile used.
    pub profile: String,
    /// Base seed.
    pub seed: u64,
    /// The parameters after merging the profile's overrides.
    pub params: toml::Table,
    /// The full configuration.
    pub config: FamilyConfig,
    /// Hash of (configuration, profile, code): results are resumed only when it matches.
    pub fingerprint: String,
    /// Hash of the executable.
    pub code_hash: String,
    /// Git revision (`-dirty` when the work tree had changes).
    pub git_revision: String,
    /// Host name.
    pub host: String,
    /// UTC start time.
    pub timestamp: String,
    /// beamlab version.
    pub beamlab_version: String,
    /// Units finished so far.
    pub units_done: Vec<usize>,
}

/// The families the harness knows, with what their experiments show.
pub const FAMILIES: &[(&str, &str)] = &[
    (
        "wmmse_convergence",
        "WMMSE sum SE after each iteration, averaged over realisations, one series per initialisation",
    ),
    (
        "ggml_convergence",
        "GGML per-user SE against the step (kan crate), with hybrid and digital baselines as constant lines",
    ),
    (
        "prediction",
        "Channel prediction NMSE and SE loss against the horizon (liquid-nn): LTC, CfC, LSTM, GRU, MLP, trivial",
    ),
    ("outage", "Outage-constrained hybrid BF (gnn-unroll): power and outage per pilot-power group, training curves"),
    (
        "outage_generalisation",
        "Outage-constrained hybrid BF (gnn-unroll): power and outage per number of users, incl. a model trained on K = 2, 3",
    ),
    (
        "outage_statistical",
        "Outage-constrained hybrid BF (gnn-unroll): analog beams from statistical CSI, power and outage per feedback level",
    ),
    ("mbmaml", "MB-MAML offline-online robust WMMSE (meta-learn crate): adaptation, SNR, error level, heads, bases"),
];

fn config_error(origin: &str, message: impl Into<String>) -> EvalError {
    EvalError::Config { origin: origin.to_string(), message: message.into() }
}

impl FamilyConfig {
    /// Parses a TOML string; `origin` names the file in errors.
    ///
    /// # Errors
    /// [`EvalError::Config`] naming the key (and line, where the parser knows it); parameters are
    /// checked by building the experiment for every profile.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, EvalError> {
        let cfg: Self = toml::from_str(text).map_err(|e| config_error(origin, e.to_string()))?;
        if cfg.experiment.is_empty()
            || !cfg.experiment.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(config_error(
                origin,
                format!("experiment name {:?} must be non-empty [A-Za-z0-9_-]", cfg.experiment),
            ));
        }
        if cfg.profile.is_empty() {
            return Err(config_error(origin, "at least one [profile.NAME] table is required"));
        }
        for name in cfg.profile.keys() {
            cfg.build(name).map_err(|e| match e {
                EvalError::Config { message, .. } => config_error(origin, message),
                other => other,
            })?;
        }
        for c in &cfg.check {
            // A series may be compared with itself at another x (`than_at`), never at the same x.
            if c.better == c.than && c.than_at.is_none_or(|t| c.at == Some(t)) {
                return Err(config_error(
                    origin,
                    format!("check {:?} compares {:?} with itself at the same x", c.claim, c.better),
                ));
            }
            if c.than.is_empty() == c.than_value.is_none() {
                return Err(config_error(
                    origin,
                    format!("check {:?} needs exactly one of `than` (a series) and `than_value` (a constant)", c.claim),
                ));
            }
        }
        Ok(cfg)
    }

    /// The parameters of `profile`: `[params]` with the profile's keys replacing (deeply merged
    /// into) the common ones.
    ///
    /// # Errors
    /// [`EvalError::Config`] when the profile does not exist.
    pub fn resolve_params(&self, profile: &str) -> Result<toml::Table, EvalError> {
        let overrides = self.profile.get(profile).ok_or_else(|| {
            config_error(
                &self.experiment,
                format!(
                    "no profile {profile:?} (available: {})",
                    self.profile.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let mut merged = self.params.clone();
        merge(&mut merged, overrides);
        Ok(merged)
    }

    /// Builds the experiment of `profile`.
    ///
    /// # Errors
    /// Unknown family, profile or parameter, or parameters the family rejects.
    pub fn build(&self, profile: &str) -> Result<Box<dyn FamilyExperiment>, EvalError> {
        let params = self.resolve_params(profile)?;
        build_family(&self.family, params)
            .map_err(|message| config_error(&self.experiment, format!("[params] / [profile.{profile}]: {message}")))
    }
}

fn merge(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(params: toml::Table) -> Result<T, String> {
    toml::Value::Table(params).try_into().map_err(|e: toml::de::Error| e.to_string())
}

/// Builds the experiment of `family` from its parameters (the one place that maps family names
/// to code).
///
/// # Errors
/// A message naming the unknown family or the bad parameter.
pub fn build_family(family: &str, params: toml::Table) -> Result<Box<dyn FamilyExperiment>, String> {
    match family {
        "wmmse_convergence" => {
            let p: crate::convergence::WmmseConvergenceParams = parse(params)?;
            Ok(Box::new(p.build().map_err(|e| e.to_string())?))
        }
        "ggml_convergence" => {
            let mut params = params;
            let references = match params.remove("references") {
                None => DEFAULT_GGML_REFERENCES.iter().map(|s| (*s).to_string()).collect(),
                Some(v) => {
                    v.try_into::<Vec<String>>().map_err(|e| format!("references: {e} (a list of method kinds)"))?
                }
            };
            let p: beamlab_kan::ConvergenceParams = parse(params)?;
            let n_rf = p.n_rf.unwrap_or(p.n_users);
            let refs = references.iter().map(|r| ggml_reference(r, n_rf)).collect::<Result<Vec<_>, _>>()?;
            Ok(Box::new(beamlab_kan::convergence_experiment(&p, refs).map_err(|e| e.to_string())?))
        }
        "prediction" => {
            let p: beamlab_liquid_nn::PredictionParams = parse(params)?;
            Ok(Box::new(beamlab_liquid_nn::prediction_experiment(&p).map_err(|e| e.to_string())?))
        }
        "outage" => {
            let p: beamlab_gnn_unroll::OutageTableParams = parse(params)?;
            Ok(Box::new(beamlab_gnn_unroll::outage_table(p).map_err(|e| e.to_string())?))
        }
        "outage_generalisation" => {
            let p: beamlab_gnn_unroll::GeneralisationParams = parse(params)?;
            Ok(Box::new(beamlab_gnn_unroll::generalisation_table(p).map_err(|e| e.to_string())?))
        }
        "outage_statistical" => {
            let p: beamlab_gnn_unroll::StatisticalParams = parse(params)?;
            Ok(Box::new(beamlab_gnn_unroll::statistical_table(p).map_err(|e| e.to_string())?))
        }
        "mbmaml" => {
            let p: beamlab_meta_learn::experiment::MbMamlExperimentParams = parse(params)?;
            Ok(Box::new(beamlab_meta_learn::experiment::mbmaml_experiment(p).map_err(|e| e.to_string())?))
        }
        other => Err(format!(
            "unknown family {other:?} (known: {})",
            FAMILIES.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Constant reference lines of the `ggml_convergence` family unless `references` is given.
const DEFAULT_GGML_REFERENCES: &[&str] =
    &["wmmse", "zf", "hybrid_wmmse_mo", "mo_altmin", "element_altmax", "mm_altmin"];

/// A reference method of the GGML convergence figure, by method kind.
fn ggml_reference(kind: &str, n_rf: usize) -> Result<(String, beamlab_kan::ReferenceFactory), String> {
    use beamlab_baselines as b;
    use beamlab_core::Beamformer;
    let n_rf = Some(n_rf);
    let f: beamlab_kan::ReferenceFactory = match kind {
        "wmmse" => Box::new(|| Box::new(b::Wmmse::default()) as Box<dyn Beamformer>),
        "zf" => Box::new(|| Box::new(b::Zf) as Box<dyn Beamformer>),
        "hybrid_wmmse_mo" => Box::new(move || {
            Box::new(b::HybridWmmseMo::new(b::HybridWmmseMoParams { n_rf, ..Default::default() }))
                as Box<dyn Beamformer>
        }),
        "mo_altmin" => Box::new(move || {
            Box::new(b::MoAltMin::new(b::MoAltMinParams { n_rf, ..Default::default() })) as Box<dyn Beamformer>
        }),
        "element_altmax" => Box::new(move || {
            Box::new(b::ElementAltMax::new(b::ElementAltMaxParams { n_rf, ..Default::default() }))
                as Box<dyn Beamformer>
        }),
        "mm_altmin" => Box::new(move || {
            Box::new(b::MmAltMin::new(b::MmAltMinParams { n_rf, ..Default::default() })) as Box<dyn Beamformer>
        }),
        other => {
            return Err(format!(
                "references: unknown method {other:?} (wmmse, zf, hybrid_wmmse_mo, mo_altmin, element_altmax, mm_altmin)"
            ));
        }
    };
    let name = match kind {
        "wmmse" => "WMMSE (fully digital)",
        "zf" => "ZF (fully digital)",
        "hybrid_wmmse_mo" => "WMMSE-MO",
        "mo_altmin" => "MO-AltMin",
        "element_altmax" => "Element-AltMax",
        _ => "MM-AltMin",
    };
    Ok((name.to_string(), f))
}

/// Options of [`run_family`].
#[derive(Clone, Debug)]
pub struct FamilyRunOptions {
    /// Profile name.
    pub profile: String,
    /// Discard existing results.
    pub fresh: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop after this many newly computed units (for interruption tests).
    pub max_new_units: Option<usize>,
}

/// Runs (or resumes) a family experiment into `out_dir` (`curves.csv`, `manifest.json`).
/// Returns every stored row, sorted by (unit, series, metric, x).
///
/// # Errors
/// Config, IO or unit errors (a failing unit stops the run; finished units stay stored).
pub fn run_family(
    cfg: &FamilyConfig,
    out_dir: &Path,
    opts: &FamilyRunOptions,
) -> Result<Vec<StoredCurveRow>, EvalError> {
    let params = cfg.resolve_params(&opts.profile)?;
    let exp = cfg.build(&opts.profile)?;
    let _span = tracing::info_span!("family", name = %cfg.experiment, profile = %opts.profile).entered();
    std::fs::create_dir_all(out_dir).map_err(|e| EvalError::Io { path: out_dir.to_path_buf(), source: e })?;
    let code = code_hash();
    let key = serde_json::to_string(&(cfg, &opts.profile, &code)).unwrap_or_default();
    let mut manifest = FamilyManifest {
        experiment: cfg.experiment.clone(),
        family: cfg.family.clone(),
        profile: opts.profile.clone(),
        seed: cfg.seed,
        params,
        config: cfg.clone(),
        fingerprint: format!("{:016x}", fnv1a(key.as_bytes())),
        code_hash: code,
        git_revision: git_revision(),
        host: host_name(),
        timestamp: utc_now(),
        beamlab_version: env!("CARGO_PKG_VERSION").to_string(),
        units_done: Vec::new(),
    };
    let csv_path = out_dir.join("curves.csv");
    let manifest_path = out_dir.join("manifest.json");
    let mut rows: Vec<StoredCurveRow> = Vec::new();
    if !opts.fresh && csv_path.exists() {
        match read_family_manifest(&manifest_path) {
            Ok(old) if old.fingerprint == manifest.fingerprint => {
                rows = read_csv(&csv_path)?;
                manifest.units_done = old.units_done;
                rows.retain(|r| manifest.units_done.contains(&r.unit));
            }
            _ => tracing::warn!(
                "configuration or code changed since the last run of {}; starting afresh",
                cfg.experiment
            ),
        }
    }
    write_json_atomic(&manifest_path, &manifest)?;
    let n_units = exp.n_units();
    let mut todo: Vec<usize> = (0..n_units).filter(|u| !manifest.units_done.contains(u)).collect();
    if let Some(cap) = opts.max_new_units {
        todo.truncate(cap);
    }
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(n_units as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} units {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_prefix(cfg.experiment.clone());
        b.set_position((n_units - todo.len()) as u64);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let state = Mutex::new((rows, manifest));
    let poisoned = || config_error(&cfg.experiment, "results lock poisoned");
    todo.par_iter().try_for_each(|&u| -> Result<(), EvalError> {
        bar.set_message(exp.unit_label(u));
        let new = exp
            .run_unit(u, derive_seed(cfg.seed, &[u as u64]))
            .map_err(|e| config_error(&cfg.experiment, format!("unit {u} ({}): {e}", exp.unit_label(u))))?;
        let mut guard = state.lock().map_err(|_| poisoned())?;
        let (rows, manifest) = &mut *guard;
        rows.extend(new.into_iter().map(|r| StoredCurveRow {
            unit: u,
            series: r.series,
            metric: r.metric,
            x: r.x,
            mean: r.mean,
            std: r.std,
            n: r.n,
        }));
        rows.sort_by(|a, b| {
            (a.unit, &a.series, &a.metric).cmp(&(b.unit, &b.series, &b.metric)).then(a.x.total_cmp(&b.x))
        });
        manifest.units_done.push(u);
        manifest.units_done.sort_unstable();
        // Rows first, then the manifest that declares them finished: a crash in between only
        // recomputes the unit.
        write_csv_atomic(&csv_path, rows)?;
        write_json_atomic(&manifest_path, &*manifest)?;
        bar.inc(1);
        Ok(())
    })?;
    bar.finish_and_clear();
    let (rows, _) = state.into_inner().map_err(|_| poisoned())?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
experiment = "conv"
title = "t"
seed = 3
family = "wmmse_convergence"
[params]
n_tx = 8
n_users = 2
n_iterations = 6
[profile.quick]
n_realisations = 3
[profile.paper]
n_realisations = 5
n_tx = 12
[[figure]]
name = "f"
metric = "sum_se"
x_label = "Iteration"
y_label = "Sum SE"
[[check]]
claim = "RZF start beats random start at iteration 0"
better = "WMMSE (RZF start)"
than = "WMMSE (random start)"
metric = "sum_se"
at = 0.0
"#;

    #[test]
    fn outage_table3_and_table4_configs_build_every_profile() {
        // Parsing builds the experiment of every profile, so this checks the parameters too.
        for (name, text) in [
            ("outage_table3.toml", include_str!("../../../configs/outage_table3.toml")),
            ("outage_table4.toml", include_str!("../../../configs/outage_table4.toml")),
        ] {
            let cfg = FamilyConfig::from_toml_str(text, name).unwrap();
            assert!(cfg.family.starts_with("outage_"), "{name}");
            assert_eq!(cfg.build("quick").unwrap().n_units(), if name.contains('3') { 5 } else { 4 });
        }
    }

    #[test]
    fn profiles_override_params() {
        let c = FamilyConfig::from_toml_str(GOOD, "g.toml").unwrap();
        let q = c.resolve_params("quick").unwrap();
        assert_eq!(q["n_tx"].as_integer(), Some(8));
        assert_eq!(q["n_realisations"].as_integer(), Some(3));
        assert_eq!(c.resolve_params("paper").unwrap()["n_tx"].as_integer(), Some(12));
        assert!(c.resolve_params("nope").is_err());
    }

    #[test]
    fn bad_configs_name_the_problem() {
        for (from, to, needle) in [
            ("n_tx = 8", "n_txx = 8", "n_txx"),
            ("family = \"wmmse_convergence\"", "family = \"nope\"", "unknown family"),
            ("n_realisations = 5", "n_realisations = \"five\"", "n_realisations"),
            ("n_users = 2", "n_users = 0", "n_users"),
            ("seed = 3", "seed = 3\nfoo = 1", "foo"),
        ] {
            let bad = GOOD.replace(from, to);
            let e = FamilyConfig::from_toml_str(&bad, "bad.toml").unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("bad.toml"), "{from} -> {to}: {e}");
        }
    }

    #[test]
    fn run_resume_and_thread_independence() {
        let c = FamilyConfig::from_toml_str(GOOD, "g.toml").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let opts =
            |max| FamilyRunOptions { profile: "quick".into(), fresh: false, progress: false, max_new_units: max };
        let partial = run_family(&c, dir.path(), &opts(Some(1))).unwrap();
        assert!(!partial.is_empty());
        let m = read_family_manifest(&dir.path().join("manifest.json")).unwrap();
        assert_eq!(m.units_done.len(), 1);
        let full = run_family(&c, dir.path(), &opts(None)).unwrap();
        let fresh_dir = tempfile::tempdir().unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        let single = pool.install(|| run_family(&c, fresh_dir.path(), &opts(None)).unwrap());
        assert_eq!(full, single, "resumed and single-threaded runs differ");
        assert_eq!(read_curves(&dir.path().join("curves.csv")).unwrap(), full);
        draw_figures(&c, dir.path(), &full).unwrap();
        assert!(dir.path().join("f.svg").exists() && dir.path().join("f.png").exists());
        let o = check_curves(&c.check[0], &full);
        assert_eq!(o.n_compared, 1);
        assert!(o.holds, "{o:?}");
        let md = family_section(&c, &read_family_manifest(&dir.path().join("manifest.json")).unwrap(), &full);
        assert!(md.contains("WMMSE (RZF start)") && md.contains("| yes |"), "{md}");
    }

    #[test]
    fn check_directions() {
        let row = |s: &str, x: f64, v: f64| StoredCurveRow {
            unit: 0,
            series: s.into(),
            metric: "e".into(),
            x,
            mean: v,
            std: 0.0,
            n: 1,
        };
        let rows = vec![row("a", 1.0, 1.0), row("b", 1.0, 2.0), row("a", 2.0, 1.0), row("b", 2.0, f64::NAN)];
        let mut c = CurveCheck {
            claim: "c".into(),
            better: "a".into(),
            than: "b".into(),
            metric: "e".into(),
            lower_is_better: true,
            margin: None,
            relative_margin: None,
            at: Some(1.0),
            than_at: None,
            than_value: None,
        };
        assert!(check_curves(&c, &rows).holds);
        c.lower_is_better = false;
        assert!(!check_curves(&c, &rows).holds);
        c.at = None;
        c.lower_is_better = true;
        assert!(!check_curves(&c, &rows).holds, "a NaN comparison must fail the claim");
        c.at = Some(1.0);
        c.lower_is_better = false;
        c.relative_margin = Some(-0.6);
        assert!(check_curves(&c, &rows).holds, "a tolerance of 60 % admits 1 vs 2");
        c.relative_margin = Some(-0.4);
        assert!(!check_curves(&c, &rows).holds);
        c.relative_margin = None;
        c.at = Some(2.0);
        c.than_at = Some(1.0);
        assert!(!check_curves(&c, &rows).holds, "1 at x = 2 does not beat 2 at x = 1");
        c.lower_is_better = true;
        assert!(check_curves(&c, &rows).holds);
        c.than_value = Some(1.5);
        c.than_at = None;
        c.at = None;
        assert!(check_curves(&c, &rows).holds, "1 (at x = 1 and 2) is below 1.5");
        c.than_value = Some(0.5);
        assert!(!check_curves(&c, &rows).holds);
        c.than_value = None;
        c.metric = "other".into();
        assert!(!check_curves(&c, &rows).holds, "nothing compared must not hold");
        // One series against itself at another x (e.g. an OOD gap at M = 8 vs M = 1).
        let gaps = vec![row("gap", 1.0, 3.0), row("gap", 8.0, 2.0)];
        c.metric = "e".into();
        c.than = "gap".into();
        c.better = "gap".into();
        c.at = Some(8.0);
        c.than_at = Some(1.0);
        assert!(check_curves(&c, &gaps).holds, "2 at x = 8 is below 3 at x = 1");
        c.at = Some(1.0);
        c.than_at = Some(8.0);
        assert!(!check_curves(&c, &gaps).holds);
    }

    #[test]
    fn self_comparison_needs_another_x() {
        let with = |extra: &str| {
            GOOD.replace("than = \"WMMSE (random start)\"", "than = \"WMMSE (RZF start)\"").replace("at = 0.0", extra)
        };
        for bad in ["at = 0.0", "at = 0.0\nthan_at = 0.0"] {
            let e = FamilyConfig::from_toml_str(&with(bad), "s.toml").unwrap_err().to_string();
            assert!(e.contains("with itself"), "{e}");
        }
        assert!(FamilyConfig::from_toml_str(&with("at = 5.0\nthan_at = 0.0"), "s.toml").is_ok());
    }
}
