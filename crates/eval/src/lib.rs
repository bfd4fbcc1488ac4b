//! # beamlab-eval
//!
//! Everything between a TOML config and a figure: the Monte-Carlo [`runner`] (every method on the
//! same seeded channel draws, scored on the true channel), [`results`] on disk (CSV + manifest,
//! written atomically, resumable), [`figures`] (SVG/PNG from stored results only), the
//! [`report`] (`results/REPORT.md` with claim checks), and the `beamlab` command-line tool.
//!
//! ```no_run
//! use beamlab_eval::{ReproduceOptions, reproduce};
//! let opts = ReproduceOptions { profile: "quick".into(), ..Default::default() };
//! let summary = reproduce(std::path::Path::new("configs"), std::path::Path::new("results"), &opts).unwrap();
//! println!("{} experiments", summary.len());
//! ```

use std::path::{Path, PathBuf};

pub mod config;
pub mod convergence;
pub mod family;
pub mod figures;
pub mod report;
pub mod results;
pub mod runner;

pub use config::ExperimentConfig;
pub use results::{Manifest, ResultRow};
pub use runner::{RunOptions, run_experiment};

/// Errors of the evaluation layer. Messages name the file and the problem.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A configuration is malformed.
    #[error("{origin}: {message}")]
    Config {
        /// File (or table) the error is in.
        origin: String,
        /// What is wrong, with key and line where known.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A file has the wrong content.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Drawing a figure failed.
    #[error("figure {}: {message}", path.display())]
    Figure {
        /// The figure file.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
    /// A channel-model or IO error from the channel crate.
    #[error(transparent)]
    Channel(#[from] beamlab_channel::ChannelError),
    /// A problem-validation error.
    #[error(transparent)]
    Core(#[from] beamlab_core::CoreError),
}

/// Options of [`reproduce`].
#[derive(Clone, Debug)]
pub struct ReproduceOptions {
    /// Profile name.
    pub profile: String,
    /// Only these experiments, by name or name prefix (empty: all).
    pub only: Vec<String>,
    /// Discard existing results.
    pub fresh: bool,
    /// Show progress bars.
    pub progress: bool,
}

impl Default for ReproduceOptions {
    fn default() -> Self {
        Self { profile: "quick".into(), only: Vec::new(), fresh: false, progress: false }
    }
}

/// What [`reproduce`] did for one experiment.
#[derive(Clone, Debug)]
pub struct ExperimentSummary {
    /// Experiment name.
    pub experiment: String,
    /// Result rows (sweep experiments).
    pub rows: Vec<ResultRow>,
    /// Curve rows (family experiments).
    pub curves: Vec<family::StoredCurveRow>,
    /// Claim outcomes (sweep experiments).
    pub checks: Vec<report::CheckOutcome>,
    /// Claim outcomes (family experiments).
    pub curve_checks: Vec<family::CurveCheckOutcome>,
}

/// One configuration file: a Monte-Carlo sweep of beamformers, or a family experiment (a file
/// with a top-level `family` key, see [`family`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Experiment {
    /// A sweep (`runner`).
    Sweep(Box<ExperimentConfig>),
    /// A family experiment.
    Family(Box<family::FamilyConfig>),
}

impl Experiment {
    /// The experiment's name.
    #[must_use]
    pub fn name(&self) -> &str {
        match self {
            Experiment::Sweep(c) => &c.experiment,
            Experiment::Family(c) => &c.experiment,
        }
    }

    /// Reads and parses a config file of either kind.
    ///
    /// # Errors
    /// [`EvalError::Io`] or [`EvalError::Config`].
    pub fn from_file(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::Io { path: path.to_path_buf(), source: e })?;
        let origin = path.display().to_string();
        let is_family = text.parse::<toml::Table>().is_ok_and(|t| t.contains_key("family"));
        if is_family {
            Ok(Experiment::Family(Box::new(family::FamilyConfig::from_toml_str(&text, &origin)?)))
        } else {
            Ok(Experiment::Sweep(Box::new(ExperimentConfig::from_toml_str(&text, &origin)?)))
        }
    }
}

/// Reads every `*.toml` in `configs_dir` (sorted by name).
///
/// # Errors
/// IO or config errors (the first malformed file stops the run before anything is computed).
pub fn load_configs(configs_dir: &Path) -> Result<Vec<Experiment>, EvalError> {
    let rd =
        std::fs::read_dir(configs_dir).map_err(|e| EvalError::Io { path: configs_dir.to_path_buf(), source: e })?;
    let mut paths: Vec<PathBuf> =
        rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    paths.sort();
    let cfgs = paths.iter().map(|p| Experiment::from_file(p)).collect::<Result<Vec<_>, _>>()?;
    for (i, c) in cfgs.iter().enumerate() {
        if cfgs[..i].iter().any(|d| d.name() == c.name()) {
            return Err(EvalError::Config {
                origin: configs_dir.display().to_string(),
                message: format!("experiment name {:?} is used by two configs", c.name()),
            });
        }
    }
    Ok(cfgs)
}

/// Runs the selected experiments of `configs_dir` into `results_dir/<experiment>/`, draws their
/// figures and rewrites `results_dir/REPORT.md` (covering every experiment that has results).
///
/// # Errors
/// Config, IO, figure or sample-generation errors.
pub fn reproduce(
    configs_dir: &Path,
    results_dir: &Path,
    opts: &ReproduceOptions,
) -> Result<Vec<ExperimentSummary>, EvalError> {
    let cfgs = load_configs(configs_dir)?;
    // `--only NAME` selects the experiment NAME, or every experiment whose name starts with NAME
    // (`--only glnn` runs all GLNN experiments).
    let selected = |c: &Experiment| opts.only.is_empty() || opts.only.iter().any(|n| c.name().starts_with(n.as_str()));
    for name in &opts.only {
        if !cfgs.iter().any(|c| c.name().starts_with(name.as_str())) {
            return Err(EvalError::Config {
                origin: configs_dir.display().to_string(),
                message: format!(
                    "no experiment named {name:?} (available: {})",
                    cfgs.iter().map(Experiment::name).collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
    let mut summaries = Vec::new();
    for exp in cfgs.iter().filter(|c| selected(c)) {
        let dir = results_dir.join(exp.name());
        match exp {
            Experiment::Sweep(cfg) => summaries.push(run_sweep(cfg, &dir, opts)?),
            Experiment::Family(cfg) => {
                let run = family::FamilyRunOptions {
                    profile: opts.profile.clone(),
                    fresh: opts.fresh,
                    progress: opts.progress,
                    max_new_units: None,
                };
                let curves = family::run_family(cfg, &dir, &run)?;
                family::draw_figures(cfg, &dir, &curves)?;
                let curve_checks = cfg.check.iter().map(|c| family::check_curves(c, &curves)).collect();
                summaries.push(ExperimentSummary {
                    experiment: cfg.experiment.clone(),
                    rows: Vec::new(),
                    curves,
                    checks: Vec::new(),
                    curve_checks,
                });
            }
        }
    }
    let mut md = String::from(
        "# beamlab results\n\nGenerated by `cargo xtask reproduce` from `configs/*.toml`. Each section lists the \
         configuration's provenance (profile, seed, git revision), its figures, the numbers behind them and the \
         claim checks. Sum SE is measured on the true channel.\n\n",
    );
    for exp in &cfgs {
        let dir = results_dir.join(exp.name());
        match exp {
            Experiment::Sweep(cfg) => {
                let (Ok(manifest), Ok(rows)) =
                    (Manifest::read(&dir.join("manifest.json")), results::read_rows(&dir.join("results.csv")))
                else {
                    continue;
                };
                let samples = results::read_samples(&dir.join("samples.csv")).unwrap_or_default();
                md.push_str(&report::experiment_section(cfg, &manifest, &rows, &samples));
            }
            Experiment::Family(cfg) => {
                let (Ok(manifest), Ok(curves)) = (
                    family::read_family_manifest(&dir.join("manifest.json")),
                    family::read_curves(&dir.join("curves.csv")),
                ) else {
                    continue;
                };
                md.push_str(&family::family_section(cfg, &manifest, &curves));
            }
        }
    }
    std::fs::create_dir_all(results_dir).map_err(|e| EvalError::Io { path: results_dir.to_path_buf(), source: e })?;
    results::write_atomic(&results_dir.join("REPORT.md"), md.as_bytes())?;
    Ok(summaries)
}

fn run_sweep(cfg: &ExperimentConfig, dir: &Path, opts: &ReproduceOptions) -> Result<ExperimentSummary, EvalError> {
    let run =
        RunOptions { profile: opts.profile.clone(), fresh: opts.fresh, progress: opts.progress, max_new_points: None };
    let rows = run_experiment(cfg, dir, &run)?;
    let samples = if cfg.figure.iter().any(|f| f.kind == config::FigureKind::Series) {
        results::read_samples(&dir.join("samples.csv"))?
    } else {
        Vec::new()
    };
    for f in &cfg.figure {
        match f.kind {
            config::FigureKind::Sweep => figures::plot(dir, &f.name, &cfg.title, cfg.sweep.axis, f.metric, &rows)?,
            config::FigureKind::Series => {
                let data =
                    figures::sample_series(&samples, f.point, f.metric, f.window.unwrap_or(50), &f.phase_boundaries);
                figures::plot_series(dir, &f.name, &cfg.title, f.metric, &data)?;
            }
        }
    }
    let checks = cfg.check.iter().map(|c| report::check_claim(c, &rows)).collect();
    Ok(ExperimentSummary {
        experiment: cfg.experiment.clone(),
        rows,
        curves: Vec::new(),
        checks,
        curve_checks: Vec::new(),
    })
}

/// The README's example, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
