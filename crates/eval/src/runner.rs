//! The Monte-Carlo runner: sweep points × samples × methods, every method on the same draws.
//!
//! # Seeds and determinism
//! Sample `s` draws its true channel and CSI error from `derive_seed(seed, [0, s])`, the same at
//! every sweep point (common random numbers: curves differ by the swept parameter, not by the
//! draws); method `m` at point `p` gets `derive_seed(seed, [1, p, s, m])`. Samples of classical
//! methods run in parallel (rayon), online methods in sample order; per-sample results are kept in
//! sample order and reduced in that order, so the numbers do not depend on the thread count.
//!
//! # Resume
//! After each point the results CSV is rewritten atomically (temp file + rename). A rerun with the
//! same resolved configuration and the same executable skips every (point, method) row already
//! present; a changed configuration or a rebuilt program starts afresh.

use std::path::Path;
use std::time::Instant;

use beamlab_baselines::{
    BestOf, DigitalTarget, ElementAltMax, ElementAltMaxParams, HybridWmmseMo, HybridWmmseMoParams, Lagd, LagdParams,
    LagdSpace, MmAltMin, MmAltMinParams, MoAltMin, MoAltMinParams, Mrt, Rzf, Wmmse, WmmseInit, WmmseParams, Zf,
};
use std::sync::{Arc, Mutex};

use beamlab_channel::{CsiModel, StreetCanyon, StreetCanyonParams, SvParams, rayleigh, saleh_valenzuela};
use beamlab_core::{Beamformer, Channel, MethodKind, Problem, Sample, derive_seed};
use beamlab_kan::{Ggml, GgmlImcsi, GgmlParams, ImcsiParams};
use beamlab_liquid_nn::{CellKind, Glnn, GlnnParams, Variant};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::EvalError;
use crate::config::{CsiKind, ExperimentConfig, MethodConfig, MethodId, ScenarioModel, SweepAxis};
use crate::results::{
    Manifest, ResultRow, SampleRow, read_rows, read_samples, write_json_atomic, write_rows_atomic, write_samples_atomic,
};

/// What a method needs to know about the system beyond the [`Problem`]
/// it solves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodContext {
    /// RF chains of hybrid precoders.
    pub n_rf: usize,
}

/// The method context at sweep value `x`.
#[must_use]
pub fn method_context(cfg: &ExperimentConfig, x: f64) -> MethodContext {
    let n_rf = if cfg.sweep.axis == SweepAxis::NRf {
        x as usize
    } else {
        cfg.scenario.n_rf.unwrap_or_else(|| n_users_at(cfg, x))
    };
    MethodContext { n_rf }
}

fn n_users_at(cfg: &ExperimentConfig, x: f64) -> usize {
    if cfg.sweep.axis == SweepAxis::NUsers { x as usize } else { cfg.scenario.n_users }
}

/// Builds the beamformer a method table describes; `seed` initialises learned methods' weights.
///
/// # Errors
/// [`EvalError::Config`] for an invalid hyper-parameter.
pub fn build_method(cfg: &MethodConfig, seed: u64, ctx: &MethodContext) -> Result<Box<dyn Beamformer>, EvalError> {
    Ok(match cfg.kind {
        MethodId::Mrt => Box::new(Mrt),
        MethodId::Zf => Box::new(Zf),
        MethodId::Rzf => Box::new(Rzf { alpha: cfg.alpha }),
        MethodId::Wmmse => {
            let mut p = WmmseParams::default();
            if let Some(n) = cfg.max_n_iterations {
                p.max_n_iterations = n;
            }
            if let Some(t) = cfg.tolerance {
                p.tolerance = t;
            }
            p.init = match cfg.init.as_deref() {
                None | Some("rzf") => WmmseInit::Rzf,
                Some("random") => WmmseInit::Random,
                Some("mrt") => WmmseInit::Mrt,
                Some(other) => {
                    return Err(EvalError::Config {
                        origin: "method wmmse".into(),
                        message: format!("init must be \"rzf\", \"random\" or \"mrt\", got {other:?}"),
                    });
                }
            };
            p.check().map_err(|e| EvalError::Config { origin: "method wmmse".into(), message: e.to_string() })?;
            Box::new(Wmmse::new(p))
        }
        MethodId::Glnn | MethodId::GlnnPlus | MethodId::Lstm => {
            let variant = if cfg.kind == MethodId::GlnnPlus { Variant::Plus } else { Variant::Paper };
            let cell = if cfg.kind == MethodId::Lstm { CellKind::Lstm { hidden: 30 } } else { CellKind::Cfc };
            let d = GlnnParams::default();
            let params = GlnnParams {
                learning_rate: cfg.learning_rate.unwrap_or(d.learning_rate),
                n_passes: cfg.n_passes.unwrap_or(d.n_passes),
                variant,
                seed,
                cell,
                ..d
            };
            let glnn = Glnn::new(params)
                .map_err(|e| EvalError::Config {
                    origin: format!("method {}", cfg.display_name()),
                    message: e.to_string(),
                })?
                .with_name(&cfg.display_name());
            Box::new(glnn)
        }
        MethodId::UpperBound => {
            let random = WmmseParams { init: WmmseInit::Random, ..WmmseParams::default() };
            Box::new(BestOf::new(
                &cfg.display_name(),
                vec![
                    (Box::new(Wmmse::new(random)) as Box<dyn Beamformer>, cfg.n_restarts.unwrap_or(100)),
                    (Box::new(Wmmse::new(WmmseParams::default())), 1),
                    (Box::new(Zf), 1),
                    (Box::new(Rzf { alpha: None }), 1),
                    (Box::new(Mrt), 1),
                    (Box::new(Lagd { params: sweep_lagd_defaults() }), 1),
                ],
            ))
        }
        MethodId::MoAltmin | MethodId::MmAltmin | MethodId::HybridWmmseMo | MethodId::ElementAltmax => {
            let target = match cfg.target.as_deref() {
                Some("zf") => DigitalTarget::Zf,
                _ => DigitalTarget::default(),
            };
            let n_rf = Some(ctx.n_rf);
            let invalid = |e: beamlab_baselines::BaselineError| EvalError::Config {
                origin: format!("method {}", cfg.display_name()),
                message: e.to_string(),
            };
            match cfg.kind {
                MethodId::MoAltmin => {
                    let p = MoAltMinParams { n_rf, target, ..MoAltMinParams::default() };
                    p.check().map_err(invalid)?;
                    Box::new(MoAltMin::new(p))
                }
                MethodId::MmAltmin => {
                    let p = MmAltMinParams { n_rf, target, ..MmAltMinParams::default() };
                    p.check().map_err(invalid)?;
                    Box::new(MmAltMin::new(p))
                }
                MethodId::HybridWmmseMo => {
                    let p = HybridWmmseMoParams { n_rf, ..HybridWmmseMoParams::default() };
                    p.check().map_err(invalid)?;
                    Box::new(HybridWmmseMo::new(p))
                }
                _ => {
                    let p = ElementAltMaxParams { n_rf, ..ElementAltMaxParams::default() };
                    p.check().map_err(invalid)?;
                    Box::new(ElementAltMax::new(p))
                }
            }
        }
        MethodId::GgmlKan | MethodId::GgmlMlp | MethodId::GgmlImcsi | MethodId::GgmlImcsiMlp => {
            let mlp = matches!(cfg.kind, MethodId::GgmlMlp | MethodId::GgmlImcsiMlp);
            let base = if mlp { GgmlParams::mlp() } else { GgmlParams::default() };
            let ggml = GgmlParams { n_rf: Some(ctx.n_rf), n_steps: cfg.n_steps.unwrap_or(base.n_steps), ..base };
            let invalid = |e: beamlab_kan::KanError| EvalError::Config {
                origin: format!("method {}", cfg.display_name()),
                message: e.to_string(),
            };
            if matches!(cfg.kind, MethodId::GgmlImcsi | MethodId::GgmlImcsiMlp) {
                let p = ImcsiParams { ggml, ..ImcsiParams::default() };
                Box::new(GgmlImcsi::new(p).map_err(invalid)?.with_name(cfg.display_name()))
            } else {
                Box::new(Ggml::new(ggml).map_err(invalid)?.with_name(cfg.display_name()))
            }
        }
        MethodId::Lagd => {
            let d = sweep_lagd_defaults();
            Box::new(Lagd {
                params: LagdParams {
                    learning_rate: cfg.learning_rate.unwrap_or(d.learning_rate),
                    n_iterations: cfg.n_iterations.unwrap_or(d.n_iterations),
                    ..d
                },
            })
        }
    })
}

/// LAGD as the sweep configs run it: the GLNN paper's base-matrix form `W = Ĥ^H X` (the sweeps
/// reproduce the GLNN paper's figures; the MB-MAML family runs the precoder form itself).
fn sweep_lagd_defaults() -> LagdParams {
    LagdParams { space: LagdSpace::BaseMatrix, ..LagdParams::default() }
}

/// Linear power budget, noise power and CSI model at one sweep value.
fn point_parameters(cfg: &ExperimentConfig, x: f64) -> (f64, f64, CsiModel) {
    let db = |v: f64| 10f64.powf(v / 10.0);
    let csi = match cfg.csi.model {
        CsiKind::Perfect => CsiModel::Perfect,
        CsiKind::Awgn => CsiModel::Awgn { cee_db: cfg.csi.cee_db.unwrap_or(f64::NAN) },
        CsiKind::Relative => CsiModel::Relative { delta: cfg.csi.delta.unwrap_or(f64::NAN) },
    };
    match cfg.sweep.axis {
        SweepAxis::SnrDb => (db(x), 1.0, csi),
        SweepAxis::PowerDbm => (db(x), db(cfg.sweep.fixed_dbm.unwrap_or(0.0)), csi),
        SweepAxis::CeeDb => (db(cfg.sweep.fixed_dbm.unwrap_or(10.0)), 1.0, CsiModel::Awgn { cee_db: x }),
        SweepAxis::NTx | SweepAxis::NRf | SweepAxis::NUsers => (db(cfg.sweep.fixed_dbm.unwrap_or(10.0)), 1.0, csi),
        SweepAxis::Delta => (db(cfg.sweep.fixed_dbm.unwrap_or(10.0)), 1.0, CsiModel::Relative { delta: x }),
    }
}

/// Draws sample `sample` of the experiment at sweep value `x`: the true channel, its estimate, and
/// the problem the transmitter sees.
///
/// # Errors
/// Channel-model or validation errors.
pub fn draw_sample(cfg: &ExperimentConfig, x: f64, sample: usize) -> Result<Sample, EvalError> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(cfg.seed, &[0, sample as u64]));
    let mut sc = cfg.scenario.clone();
    if cfg.sweep.axis == SweepAxis::NTx {
        sc.n_tx = x as usize;
    }
    sc.n_users = n_users_at(cfg, x);
    let truth: Channel = match sc.model {
        ScenarioModel::Rayleigh => rayleigh(sc.n_users, sc.n_rx.unwrap_or(1), sc.n_tx, &mut rng)?,
        ScenarioModel::SalehValenzuela => {
            let d = SvParams::default();
            let params = SvParams {
                n_clusters: sc.n_clusters.unwrap_or(d.n_clusters),
                n_rays: sc.n_rays.unwrap_or(d.n_rays),
                angular_spread_deg: sc.angular_spread_deg.unwrap_or(d.angular_spread_deg),
            };
            saleh_valenzuela(&params, sc.n_users, sc.n_tx, &mut rng)?
        }
        ScenarioModel::StreetCanyon => {
            street_canyon(cfg.seed, sc.n_users, sc.n_tx, sc.n_rx.unwrap_or(2))?.channel_at(sample)?
        }
    };
    let (power, noise, model) = point_parameters(cfg, x);
    // Both channel models have unit expected power per entry.
    let estimate = model.estimate(&truth, &mut rng)?;
    let problem = Problem::new(estimate, noise, power)?.with_error_stats(model.error_stats(1.0))?;
    Ok(Sample { problem, truth })
}

/// The street-canyon scenario of an experiment, built once per (seed, sizes) and shared.
fn street_canyon(seed: u64, n_users: usize, n_tx: usize, n_rx: usize) -> Result<Arc<StreetCanyon>, EvalError> {
    type Key = (u64, usize, usize, usize);
    static CACHE: Mutex<Vec<(Key, Arc<StreetCanyon>)>> = Mutex::new(Vec::new());
    let key = (seed, n_users, n_tx, n_rx);
    let mut cache = CACHE
        .lock()
        .map_err(|_| EvalError::Config { origin: "street canyon".into(), message: "cache lock poisoned".into() })?;
    if let Some((_, sc)) = cache.iter().find(|(k, _)| *k == key) {
        return Ok(Arc::clone(sc));
    }
    let params = StreetCanyonParams { n_tx, n_rx, ..StreetCanyonParams::default() };
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[3]));
    let sc = Arc::new(StreetCanyon::new(params, n_users, &mut rng)?);
    if cache.len() >= 8 {
        cache.remove(0);
    }
    cache.push((key, Arc::clone(&sc)));
    Ok(sc)
}

/// Per-sample outcome of one method.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleOutcome {
    /// Sum SE on the true channel (bit/s/Hz), `None` when the method failed on this sample.
    pub sum_se: Option<f64>,
    /// Solve time (ms).
    pub time_ms: f64,
    /// Iterations reported by the method.
    pub n_iterations: usize,
    /// The error message when it failed.
    pub error: Option<String>,
}

fn run_one(method: &mut dyn Beamformer, sample: &Sample, seed: u64) -> SampleOutcome {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let start = Instant::now();
    let result = method.solve(&sample.problem, &mut rng);
    let time_ms = start.elapsed().as_secs_f64() * 1e3;
    match result.and_then(|s| {
        let r = s.precoder.rates(&sample.truth, &sample.problem.noise_power)?;
        let power = s.precoder.total_power()?;
        if power > sample.problem.power_budget * (1.0 + 1e-6) {
            return Err(beamlab_core::CoreError::InvalidProblem(format!(
                "precoder power {power} exceeds the budget {}",
                sample.problem.power_budget
            )));
        }
        Ok((r.sum(), s.diagnostics.n_iterations))
    }) {
        Ok((se, it)) => SampleOutcome { sum_se: Some(se), time_ms, n_iterations: it, error: None },
        Err(e) => SampleOutcome { sum_se: None, time_ms, n_iterations: 0, error: Some(e.to_string()) },
    }
}

/// Runs every method of `cfg` at sweep value index `point` (value `x`) on `n_samples` samples.
/// Returns per-method outcomes in sample order.
///
/// # Errors
/// Sample-generation or method-construction errors (method failures on a sample are outcomes).
pub fn run_point(
    cfg: &ExperimentConfig,
    methods: &[usize],
    point: usize,
    x: f64,
    n_samples: usize,
) -> Result<Vec<Vec<SampleOutcome>>, EvalError> {
    let samples: Vec<Sample> =
        (0..n_samples).into_par_iter().map(|s| draw_sample(cfg, x, s)).collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(methods.len());
    for &m in methods {
        let mcfg = &cfg.method[m];
        let seed_of = |s: usize| derive_seed(cfg.seed, &[1, point as u64, s as u64, m as u64]);
        let ctx = method_context(cfg, x);
        let probe = build_method(mcfg, derive_seed(cfg.seed, &[2, point as u64, m as u64]), &ctx)?;
        let outcomes: Vec<SampleOutcome> = if probe.kind() == MethodKind::Online {
            let mut method = probe;
            samples.iter().enumerate().map(|(s, smp)| run_one(method.as_mut(), smp, seed_of(s))).collect()
        } else {
            samples
                .par_iter()
                .enumerate()
                .map(|(s, smp)| -> Result<SampleOutcome, EvalError> {
                    let mut method = build_method(mcfg, derive_seed(cfg.seed, &[2, point as u64, m as u64]), &ctx)?;
                    Ok(run_one(method.as_mut(), smp, seed_of(s)))
                })
                .collect::<Result<_, _>>()?
        };
        out.push(outcomes);
    }
    Ok(out)
}

/// Reduces outcomes to one result row (mean and sample standard deviation over successful samples).
#[must_use]
pub fn summarise(experiment: &str, point: usize, x: f64, method: &str, outcomes: &[SampleOutcome]) -> ResultRow {
    let se: Vec<f64> = outcomes.iter().filter_map(|o| o.sum_se).collect();
    let n = se.len();
    let mean = if n > 0 { se.iter().sum::<f64>() / n as f64 } else { f64::NAN };
    let std = if n > 1 { (se.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt() } else { 0.0 };
    let n_all = outcomes.len().max(1) as f64;
    ResultRow {
        experiment: experiment.to_string(),
        point,
        x,
        method: method.to_string(),
        n,
        n_failed: outcomes.len() - n,
        sum_se_mean: mean,
        sum_se_std: std,
        time_ms_mean: outcomes.iter().map(|o| o.time_ms).sum::<f64>() / n_all,
        iterations_mean: outcomes.iter().map(|o| o.n_iterations as f64).sum::<f64>() / n_all,
        first_error: outcomes.iter().find_map(|o| o.error.clone()).unwrap_or_default(),
    }
}

/// A rayon thread pool (re-exported so callers need no rayon dependency of their own).
pub type ThreadPool = rayon::ThreadPool;

/// Builds a thread pool with `n_threads` workers; run work inside it with `pool.install(..)`.
///
/// # Errors
/// [`EvalError::Config`] when the pool cannot be created.
pub fn thread_pool(n_threads: usize) -> Result<ThreadPool, EvalError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n_threads)
        .build()
        .map_err(|e| EvalError::Config { origin: "threads".into(), message: e.to_string() })
}

/// Options of [`run_experiment`].
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Profile name (`quick`, `paper`, ...).
    pub profile: String,
    /// Discard existing results instead of resuming.
    pub fresh: bool,
    /// Show a progress bar.
    pub progress: bool,
    /// Stop after this many newly computed points (for tests of interruption).
    pub max_new_points: Option<usize>,
}

/// Runs (or resumes) an experiment into `out_dir`, writing `results.csv` and `manifest.json`.
/// Returns all rows, in (point, method) order.
///
/// # Errors
/// Config, IO or sample-generation errors.
pub fn run_experiment(cfg: &ExperimentConfig, out_dir: &Path, opts: &RunOptions) -> Result<Vec<ResultRow>, EvalError> {
    let (n_samples, values) = cfg.resolve_profile(&opts.profile)?;
    let _span = tracing::info_span!("experiment", name = %cfg.experiment, profile = %opts.profile).entered();
    std::fs::create_dir_all(out_dir).map_err(|e| EvalError::Io { path: out_dir.to_path_buf(), source: e })?;
    let manifest = Manifest::new(cfg, &opts.profile, n_samples, &values);
    let csv_path = out_dir.join("results.csv");
    let manifest_path = out_dir.join("manifest.json");
    let samples_path = out_dir.join("samples.csv");
    let mut rows: Vec<ResultRow> = Vec::new();
    let mut sample_rows: Vec<SampleRow> = Vec::new();
    if !opts.fresh && csv_path.exists() {
        match Manifest::read(&manifest_path) {
            Ok(old) if old.fingerprint == manifest.fingerprint => {
                rows = read_rows(&csv_path)?;
                if samples_path.exists() {
                    sample_rows = read_samples(&samples_path)?;
                }
            }
            _ => tracing::warn!("configuration changed since the last run of {}; starting afresh", cfg.experiment),
        }
    }
    write_json_atomic(&manifest_path, &manifest)?;
    let names: Vec<String> = cfg.method.iter().map(MethodConfig::display_name).collect();
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new((values.len() * names.len()) as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} points×methods {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_prefix(cfg.experiment.clone());
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut n_new = 0;
    for (p, &x) in values.iter().enumerate() {
        let todo: Vec<usize> = (0..names.len())
            .filter(|&m| !rows.iter().any(|r| r.point == p && r.method == names[m] && r.x == x))
            .collect();
        bar.inc((names.len() - todo.len()) as u64);
        if todo.is_empty() {
            continue;
        }
        if opts.max_new_points.is_some_and(|cap| n_new >= cap) {
            break;
        }
        let outcomes = run_point(cfg, &todo, p, x, n_samples)?;
        for (&m, o) in todo.iter().zip(&outcomes) {
            rows.push(summarise(&cfg.experiment, p, x, &names[m], o));
            sample_rows.retain(|r| !(r.point == p && r.method == names[m]));
            sample_rows.extend(o.iter().enumerate().map(|(s, oc)| SampleRow {
                point: p,
                x,
                method: names[m].clone(),
                sample: s,
                sum_se: oc.sum_se.unwrap_or(f64::NAN),
                time_ms: oc.time_ms,
            }));
            bar.inc(1);
        }
        rows.sort_by(|a, b| {
            let ia = names.iter().position(|n| *n == a.method).unwrap_or(usize::MAX);
            let ib = names.iter().position(|n| *n == b.method).unwrap_or(usize::MAX);
            (a.point, ia).cmp(&(b.point, ib))
        });
        write_samples_atomic(&samples_path, &sample_rows)?;
        write_rows_atomic(&csv_path, &rows)?;
        n_new += 1;
    }
    bar.finish_and_clear();
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ExperimentConfig {
        ExperimentConfig::from_toml_str(
            r#"
experiment = "runner_test"
title = "t"
seed = 7
[scenario]
model = "rayleigh"
n_tx = 8
n_users = 3
n_rx = 2
[csi]
model = "awgn"
cee_db = -10.0
[sweep]
axis = "snr_db"
values = [0.0, 10.0, 20.0]
[profile.quick]
samples = 6
[[method]]
kind = "mrt"
[[method]]
kind = "zf"
[[method]]
kind = "wmmse"
"#,
            "test",
        )
        .unwrap()
    }

    #[test]
    fn same_channels_for_every_method_and_point() {
        let c = cfg();
        let a = draw_sample(&c, 0.0, 2).unwrap();
        let b = draw_sample(&c, 10.0, 2).unwrap();
        assert_eq!(a.truth, b.truth);
        assert_ne!(a.problem.channel, a.truth, "CSI error must be applied");
        assert!((b.problem.power_budget - 10.0).abs() < 1e-12);
        assert_ne!(draw_sample(&c, 0.0, 3).unwrap().truth, a.truth);
    }

    #[test]
    fn street_canyon_samples_follow_one_trajectory() {
        let text = r#"
experiment = "sc"
title = "t"
seed = 5
[scenario]
model = "street_canyon"
n_tx = 16
n_users = 2
[sweep]
axis = "snr_db"
values = [0.0, 10.0]
[profile.quick]
samples = 3
[[method]]
kind = "zf"
"#;
        let c = ExperimentConfig::from_toml_str(text, "sc").unwrap();
        let a = draw_sample(&c, 0.0, 1).unwrap();
        assert_eq!(a.truth.n_rx(), vec![2, 2]);
        assert_eq!(a.truth, draw_sample(&c, 10.0, 1).unwrap().truth);
        let b = draw_sample(&c, 0.0, 2).unwrap();
        // Consecutive slots of a slow trajectory are strongly correlated but not identical.
        let (x, y) = (a.truth.stacked(), b.truth.stacked());
        let ip: beamlab_linalg_ops::c64 = x.iter().zip(y.iter()).map(|(p, q)| p.conj() * q).sum();
        let corr = ip.norm() / (a.truth.energy() * b.truth.energy()).sqrt();
        assert!(corr > 0.9 && corr < 1.0, "correlation {corr}");
        let too_long = text.replace("samples = 3", "samples = 2000");
        assert!(ExperimentConfig::from_toml_str(&too_long, "sc").is_err());
    }

    #[test]
    fn thread_count_does_not_change_results() {
        let c = cfg();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| run_point(&c, &[0, 1, 2], 1, 10.0, 6).unwrap())
        };
        let a = run(1);
        let b = run(2);
        let se = |v: &Vec<Vec<SampleOutcome>>| {
            v.iter().map(|m| m.iter().map(|o| o.sum_se).collect::<Vec<_>>()).collect::<Vec<_>>()
        };
        assert_eq!(se(&a), se(&b));
    }
}
