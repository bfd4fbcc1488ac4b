//! Results on disk: `results.csv` (one row per point × method) and `manifest.json` (resolved
//! configuration, seed, git revision, host, time). Every write is atomic: a temp file in the same
//! directory, then a rename, so an interrupted run never leaves a half-written file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::EvalError;
use crate::config::ExperimentConfig;

/// One (sweep point, method) summary.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ResultRow {
    /// Experiment name.
    pub experiment: String,
    /// Index of the sweep point.
    pub point: usize,
    /// Value of the swept parameter.
    pub x: f64,
    /// Method display name.
    pub method: String,
    /// Samples that succeeded.
    pub n: usize,
    /// Samples on which the method returned an error.
    pub n_failed: usize,
    /// Mean sum SE on the true channel (bit/s/Hz).
    pub sum_se_mean: f64,
    /// Sample standard deviation of the sum SE.
    pub sum_se_std: f64,
    /// Mean solve time per sample (ms).
    pub time_ms_mean: f64,
    /// Mean iterations per sample.
    pub iterations_mean: f64,
    /// The first error message, if any sample failed.
    pub first_error: String,
}

/// One sample of one method at one sweep point (`samples.csv`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SampleRow {
    /// Index of the sweep point.
    pub point: usize,
    /// Value of the swept parameter.
    pub x: f64,
    /// Method display name.
    pub method: String,
    /// Sample index.
    pub sample: usize,
    /// Sum SE on the true channel (NaN when the method failed on this sample).
    pub sum_se: f64,
    /// Solve time (ms).
    pub time_ms: f64,
}

/// Provenance of a results directory.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Experiment name.
    pub experiment: String,
    /// Profile used.
    pub profile: String,
    /// Samples per point.
    pub samples: usize,
    /// Sweep values used.
    pub values: Vec<f64>,
    /// Base seed.
    pub seed: u64,
    /// The full resolved configuration.
    pub config: ExperimentConfig,
    /// Hash of (configuration, profile, samples, values, code): results are resumed only when it
    /// matches, so a rebuilt program never mixes its numbers with those of an older build.
    pub fingerprint: String,
    /// Hash of the executable that produced the results.
    pub code_hash: String,
    /// `git describe`-style revision of the code that produced the results (`-dirty` when the
    /// work tree had changes), or "unknown".
    pub git_revision: String,
    /// Host name.
    pub host: String,
    /// UTC time the run started (RFC 3339).
    pub timestamp: String,
    /// beamlab version.
    pub beamlab_version: String,
}

impl Manifest {
    /// Builds the manifest of a run.
    #[must_use]
    pub fn new(cfg: &ExperimentConfig, profile: &str, samples: usize, values: &[f64]) -> Self {
        let code_hash = code_hash();
        let key = serde_json::to_string(&(cfg, profile, samples, values, &code_hash)).unwrap_or_default();
        Self {
            code_hash,
            experiment: cfg.experiment.clone(),
            profile: profile.to_string(),
            samples,
            values: values.to_vec(),
            seed: cfg.seed,
            config: cfg.clone(),
            fingerprint: format!("{:016x}", fnv1a(key.as_bytes())),
            git_revision: git_revision(),
            host: host_name(),
            timestamp: utc_now(),
            beamlab_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Reads a manifest.
    ///
    /// # Errors
    /// IO or JSON errors.
    pub fn read(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::Io { path: path.to_path_buf(), source: e })?;
        serde_json::from_str(&text).map_err(|e| EvalError::Format { path: path.to_path_buf(), message: e.to_string() })
    }
}

pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// FNV-1a hash of the running executable (computed once per process).
pub(crate) fn code_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        std::env::current_exe()
            .and_then(std::fs::read)
            .map(|bytes| format!("{:016x}", fnv1a(&bytes)))
            .unwrap_or_else(|_| "unknown".into())
    })
    .clone()
}

pub(crate) fn git_revision() -> String {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match run(&["rev-parse", "--short=12", "HEAD"]) {
        Some(rev) => {
            let dirty = run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{rev}-dirty") } else { rev }
        }
        None => "unknown".into(),
    }
}

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

/// Current UTC time as RFC 3339 (civil-from-days conversion; no time-zone database needed).
pub(crate) fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Writes bytes atomically (temp file in the same directory, fsync, rename).
///
/// # Errors
/// [`EvalError::Io`] naming the path.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), EvalError> {
    let tmp = tmp_path(path);
    let io = |e| EvalError::Io { path: path.to_path_buf(), source: e };
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Serialises `value` as pretty JSON, atomically.
///
/// # Errors
/// [`EvalError::Io`] or [`EvalError::Format`].
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), EvalError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| EvalError::Format { path: path.to_path_buf(), message: e.to_string() })?;
    write_atomic(path, text.as_bytes())
}

/// Serialises rows as CSV, atomically.
///
/// # Errors
/// [`EvalError::Io`] or [`EvalError::Format`].
pub(crate) fn write_csv_atomic<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), EvalError> {
    let format = |e: &dyn std::fmt::Display| EvalError::Format { path: path.to_path_buf(), message: e.to_string() };
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in rows {
        w.serialize(r).map_err(|e| format(&e))?;
    }
    let bytes = w.into_inner().map_err(|e| format(&e))?;
    write_atomic(path, &bytes)
}

/// Reads CSV rows (the error names the file and the malformed line).
///
/// # Errors
/// [`EvalError::Format`].
pub(crate) fn read_csv<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, EvalError> {
    let format = |e: csv::Error| EvalError::Format { path: path.to_path_buf(), message: e.to_string() };
    let mut r = csv::Reader::from_path(path).map_err(format)?;
    r.deserialize().collect::<Result<Vec<T>, _>>().map_err(format)
}

/// Writes result rows as CSV, atomically.
///
/// # Errors
/// [`EvalError::Io`] or [`EvalError::Format`].
pub fn write_rows_atomic(path: &Path, rows: &[ResultRow]) -> Result<(), EvalError> {
    write_csv_atomic(path, rows)
}

/// Reads result rows from CSV.
///
/// # Errors
/// [`EvalError::Format`] (with the line of a malformed row).
pub fn read_rows(path: &Path) -> Result<Vec<ResultRow>, EvalError> {
    read_csv(path)
}

/// Writes per-sample rows as CSV, atomically.
///
/// # Errors
/// [`EvalError::Io`] or [`EvalError::Format`].
pub fn write_samples_atomic(path: &Path, rows: &[SampleRow]) -> Result<(), EvalError> {
    write_csv_atomic(path, rows)
}

/// Reads per-sample rows from CSV.
///
/// # Errors
/// [`EvalError::Format`].
pub fn read_samples(path: &Path) -> Result<Vec<SampleRow>, EvalError> {
    read_csv(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        let rows = vec![ResultRow {
            experiment: "e".into(),
            point: 0,
            x: -3.5,
            method: "WMMSE".into(),
            n: 3,
            n_failed: 1,
            sum_se_mean: 12.25,
            sum_se_std: 0.5,
            time_ms_mean: 1.0,
            iterations_mean: 7.0,
            first_error: "infeasible: a, b".into(),
        }];
        write_rows_atomic(&p, &rows).unwrap();
        assert_eq!(read_rows(&p).unwrap(), rows);
        std::fs::write(&p, "garbage,\n1,2\n").unwrap();
        assert!(matches!(read_rows(&p), Err(EvalError::Format { .. })));
    }

    #[test]
    fn timestamp_is_rfc3339() {
        let t = utc_now();
        assert_eq!(t.len(), 20);
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }
}
