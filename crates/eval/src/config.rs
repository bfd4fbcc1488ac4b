//! Experiment configuration: the schema of `configs/*.toml`.
//!
//! Every table denies unknown fields, so a misspelt key is an error that names the key and the
//! line (the TOML parser reports both), never a silently ignored setting.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::EvalError;

/// One experiment: a scenario, a sweep axis, methods, figures and claim checks.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExperimentConfig {
    /// Name; results go to `results/<experiment>/`.
    pub experiment: String,
    /// Human-readable title (figure captions, REPORT.md).
    pub title: String,
    /// Context printed under the title in REPORT.md (e.g. how a paper's claim is tested).
    #[serde(default)]
    pub notes: Option<String>,
    /// Base seed; every channel draw and every method's randomness derives from it.
    pub seed: u64,
    /// Channel model and sizes.
    pub scenario: ScenarioConfig,
    /// CSI model (default: perfect CSI).
    #[serde(default)]
    pub csi: CsiConfig,
    /// The swept parameter.
    pub sweep: SweepConfig,
    /// Profiles (`quick`, `paper`, ...): sample counts and optional sweep overrides.
    pub profile: BTreeMap<String, ProfileConfig>,
    /// Methods compared.
    pub method: Vec<MethodConfig>,
    /// Figures drawn from the results.
    #[serde(default)]
    pub figure: Vec<FigureConfig>,
    /// Claims checked against the results and listed in REPORT.md.
    #[serde(default)]
    pub check: Vec<CheckConfig>,
    /// Adaptation claims on series figures: at each phase boundary, the method's mean over the
    /// first `window` samples after it must reach `min_ratio` of its mean over the last `window`
    /// samples before it (no lasting dip after a change).
    #[serde(default)]
    pub adaptation: Vec<AdaptationCheck>,
    /// Complexity table: method name → complexity expression, printed in REPORT.md beside the
    /// measured time per sample at every sweep point (e.g. the GLNN paper's Table I).
    #[serde(default)]
    pub complexity: BTreeMap<String, String>,
}

/// Channel model and sizes (`[scenario]`).
///
/// The tables are flat structs (not tagged enums) so that the TOML parser can point at the exact
/// key and line of an unknown key or a wrong type; which keys apply to which `model` is checked
/// afterwards, again with the line.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScenarioConfig {
    /// Channel model.
    pub model: ScenarioModel,
    /// Transmit antennas `M`.
    pub n_tx: usize,
    /// Users `K`.
    pub n_users: usize,
    /// Receive antennas per user `N_k` (Rayleigh only; default 1).
    #[serde(default)]
    pub n_rx: Option<usize>,
    /// Clusters (Saleh–Valenzuela; default 3).
    #[serde(default)]
    pub n_clusters: Option<usize>,
    /// Rays per cluster (Saleh–Valenzuela; default 30).
    #[serde(default)]
    pub n_rays: Option<usize>,
    /// Angular spread in degrees (Saleh–Valenzuela; default 10).
    #[serde(default)]
    pub angular_spread_deg: Option<f64>,
    /// RF chains of hybrid precoders (default: one per user). Digital methods ignore it.
    #[serde(default)]
    pub n_rf: Option<usize>,
}

/// Channel models.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ScenarioModel {
    /// i.i.d. Rayleigh MU-MIMO.
    Rayleigh,
    /// Saleh–Valenzuela mmWave ULA, single-antenna users.
    SalehValenzuela,
    /// Moving users in a street canyon (geometric, 3.5 GHz, speeds 6/15/30 m/s over
    /// 700/600/500 slots of 1 ms); sample `s` is slot `s` of one trajectory, so online methods
    /// see a consistent channel evolution. `n_rx` defaults to 2.
    StreetCanyon,
}

/// CSI at the transmitter (`[csi]`; default perfect).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CsiConfig {
    /// Error model.
    pub model: CsiKind,
    /// `10 log10(E‖Ĥ − H‖² / E‖H‖²)` for `awgn`.
    #[serde(default)]
    pub cee_db: Option<f64>,
    /// `δ` for `relative` (`e_k ~ CN(0, δ ‖h_k‖²/M I)`).
    #[serde(default)]
    pub delta: Option<f64>,
}

impl Default for CsiConfig {
    fn default() -> Self {
        Self { model: CsiKind::Perfect, cee_db: None, delta: None }
    }
}

/// CSI error models.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CsiKind {
    /// The transmitter knows the true channel.
    Perfect,
    /// Additive white Gaussian error at a CEE level.
    Awgn,
    /// Relative error.
    Relative,
}

/// The swept parameter and its values.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// Which parameter is swept.
    pub axis: SweepAxis,
    /// Its values (used unless the profile overrides them).
    pub values: Vec<f64>,
    /// Noise power in dBm for the `power_dbm` axis (default 0 dBm), or the transmit power in dBm
    /// for the `cee_db` axis (default 10 dBm with 0 dBm noise).
    #[serde(default)]
    pub fixed_dbm: Option<f64>,
}

/// A sweep axis.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SweepAxis {
    /// `SNR = P/σ²` in dB with `σ² = 1`.
    SnrDb,
    /// Transmit power in dBm, noise at `fixed_dbm` (default 0 dBm).
    PowerDbm,
    /// CSI error level in dB (requires `csi.model = "awgn"`; its `cee_db` is replaced).
    CeeDb,
    /// Number of transmit antennas `M` (replaces `scenario.n_tx`; SNR from `fixed_dbm`, default
    /// 10 dB).
    NTx,
    /// RF chains of hybrid precoders (replaces `scenario.n_rf`; SNR from `fixed_dbm`, default 10 dB).
    NRf,
    /// Number of users `K` (replaces `scenario.n_users`; SNR from `fixed_dbm`, default 10 dB).
    NUsers,
    /// Relative CSI error `δ` (requires `csi.model = "relative"`, whose `delta` it replaces; SNR
    /// from `fixed_dbm`, default 10 dB).
    Delta,
}

impl SweepAxis {
    /// Axis label with unit, for figures and tables.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            SweepAxis::SnrDb => "SNR (dB)",
            SweepAxis::PowerDbm => "Transmit power P (dBm)",
            SweepAxis::CeeDb => "Channel estimation error CEE (dB)",
            SweepAxis::NTx => "Transmit antennas M",
            SweepAxis::NRf => "RF chains",
            SweepAxis::NUsers => "Users K",
            SweepAxis::Delta => "Relative CSI error δ",
        }
    }
}

/// A run profile.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// Monte-Carlo samples per sweep point.
    pub samples: usize,
    /// Optional replacement for the sweep values.
    #[serde(default)]
    pub values: Option<Vec<f64>>,
}

/// A method and its hyper-parameters (`[[method]]`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MethodConfig {
    /// Which method.
    pub kind: MethodId,
    /// Display name (default: the method's usual name, e.g. "WMMSE").
    #[serde(default)]
    pub name: Option<String>,
    /// RZF regularisation (default `K σ²/P`).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// WMMSE iteration cap (default 100).
    #[serde(default)]
    pub max_n_iterations: Option<usize>,
    /// WMMSE relative WSR change to stop at (default 1e-3).
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// WMMSE initialisation: `"rzf"` (default), `"random"` or `"mrt"`.
    #[serde(default)]
    pub init: Option<String>,
    /// Learning rate (GLNN 0.01, LAGD 0.01).
    #[serde(default)]
    pub learning_rate: Option<f64>,
    /// GLNN passes per sample `N_e` (3).
    #[serde(default)]
    pub n_passes: Option<usize>,
    /// LAGD training iterations per sample (500).
    #[serde(default)]
    pub n_iterations: Option<usize>,
    /// Upper bound: random restarts of WMMSE (100).
    #[serde(default)]
    pub n_restarts: Option<usize>,
    /// Hybrid baselines MO-AltMin and MM-AltMin: the fully digital precoder they approximate,
    /// `"wmmse"` (default) or `"zf"`.
    #[serde(default)]
    pub target: Option<String>,
    /// GGML outer steps `L` (default 500).
    #[serde(default)]
    pub n_steps: Option<usize>,
}

/// Methods the runner knows (also the values of the CLI's `solve --method`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum MethodId {
    /// Maximum-ratio transmission.
    Mrt,
    /// Zero-forcing (block diagonalisation).
    Zf,
    /// Regularised zero-forcing.
    Rzf,
    /// WMMSE.
    Wmmse,
    /// GLNN as published (with the power constraint kept exactly).
    Glnn,
    /// GLNN with beamlab's documented improvements.
    GlnnPlus,
    /// LAGD (learning to optimise by gradient descent).
    Lagd,
    /// The GLNN pipeline with an LSTM (30 hidden units) in place of the CfC.
    Lstm,
    /// The GLNN paper's upper bound: best of WMMSE from `n_restarts` random starts, WMMSE from
    /// RZF, ZF, RZF, MRT and LAGD, judged by the WSR on the problem's channel (use with perfect
    /// CSI).
    UpperBound,
    /// Hybrid: manifold-optimisation alternating minimisation (Yu et al. 2016).
    MoAltmin,
    /// Hybrid: WMMSE with manifold optimisation of the analog precoder (GGML author's baseline).
    HybridWmmseMo,
    /// Hybrid: element-wise analog updates with a ZF digital stage (Sohrabi and Yu 2016).
    ElementAltmax,
    /// Hybrid: majorisation-minimisation alternating minimisation (Arora et al. 2020 stand-in for
    /// the GGML paper's MM baseline).
    MmAltmin,
    /// GGML with KAN gradient networks (fresh per realisation).
    GgmlKan,
    /// GGML with the reference code's MLP gradient networks.
    GgmlMlp,
    /// GGML-ImCSI (worst-case robust, KAN networks); needs `csi.model = "relative"`.
    GgmlImcsi,
    /// GGML-ImCSI with MLP networks.
    GgmlImcsiMlp,
}

impl MethodConfig {
    /// A method with default hyper-parameters.
    #[must_use]
    pub fn of(kind: MethodId) -> Self {
        Self {
            kind,
            name: None,
            alpha: None,
            max_n_iterations: None,
            tolerance: None,
            init: None,
            learning_rate: None,
            n_passes: None,
            n_iterations: None,
            n_restarts: None,
            target: None,
            n_steps: None,
        }
    }

    /// Display name of the method.
    #[must_use]
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            match self.kind {
                MethodId::Mrt => "MRT",
                MethodId::Zf => "ZF",
                MethodId::Rzf => "RZF",
                MethodId::Wmmse => "WMMSE",
                MethodId::Glnn => "GLNN",
                MethodId::GlnnPlus => "GLNN+",
                MethodId::Lagd => "LAGD",
                MethodId::Lstm => "LSTM",
                MethodId::UpperBound => "Upper bound",
                MethodId::MoAltmin => "MO-AltMin",
                MethodId::HybridWmmseMo => "WMMSE-MO",
                MethodId::ElementAltmax => "Element-AltMax",
                MethodId::MmAltmin => "MM-AltMin",
                MethodId::GgmlKan => "GGML-KAN",
                MethodId::GgmlMlp => "GGML-MLP",
                MethodId::GgmlImcsi => "GGML-ImCSI",
                MethodId::GgmlImcsiMlp => "GGML-ImCSI-MLP",
            }
            .to_string()
        })
    }

    /// Keys set in this table that do not apply to its `kind`.
    fn misplaced_keys(&self) -> Vec<&'static str> {
        let mut bad = Vec::new();
        if self.alpha.is_some() && self.kind != MethodId::Rzf {
            bad.push("alpha");
        }
        if self.kind != MethodId::Wmmse {
            if self.max_n_iterations.is_some() {
                bad.push("max_n_iterations");
            }
            if self.tolerance.is_some() {
                bad.push("tolerance");
            }
            if self.init.is_some() {
                bad.push("init");
            }
        }
        let glnn = matches!(self.kind, MethodId::Glnn | MethodId::GlnnPlus | MethodId::Lstm);
        if self.learning_rate.is_some() && !(glnn || self.kind == MethodId::Lagd) {
            bad.push("learning_rate");
        }
        if self.n_passes.is_some() && !glnn {
            bad.push("n_passes");
        }
        if self.n_iterations.is_some() && self.kind != MethodId::Lagd {
            bad.push("n_iterations");
        }
        if self.n_restarts.is_some() && self.kind != MethodId::UpperBound {
            bad.push("n_restarts");
        }
        if self.target.is_some() && !matches!(self.kind, MethodId::MoAltmin | MethodId::MmAltmin) {
            bad.push("target");
        }
        let ggml =
            matches!(self.kind, MethodId::GgmlKan | MethodId::GgmlMlp | MethodId::GgmlImcsi | MethodId::GgmlImcsiMlp);
        if self.n_steps.is_some() && !ggml {
            bad.push("n_steps");
        }
        bad
    }
}

/// A figure. `kind = "sweep"` (default): one metric against the sweep axis, one line per method.
/// `kind = "series"`: the per-sample metric at one sweep point against the sample index (e.g. the
/// slot of a moving-user trajectory), smoothed by a moving average that does not cross
/// `phase_boundaries`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FigureConfig {
    /// File stem (`<name>.svg`, `<name>.png`).
    pub name: String,
    /// Metric on the y axis.
    pub metric: Metric,
    /// `"sweep"` (default) or `"series"`.
    #[serde(default)]
    pub kind: FigureKind,
    /// Series: moving-average window in samples (default 50).
    #[serde(default)]
    pub window: Option<usize>,
    /// Series: sample indices where a new phase starts (smoothing restarts there).
    #[serde(default)]
    pub phase_boundaries: Vec<usize>,
    /// Series: index of the sweep point shown (default 0).
    #[serde(default)]
    pub point: usize,
}

/// A "fast adaptation" claim, checked on the per-sample results of a series figure's point.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdaptationCheck {
    /// Text of the claim.
    pub claim: String,
    /// Method.
    pub method: String,
    /// Name of the series figure whose point, window and phases are used.
    pub figure: String,
    /// Required ratio of the early mean to the phase mean (e.g. 0.95).
    pub min_ratio: f64,
}

/// Kinds of figure.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum FigureKind {
    /// Metric against the sweep axis.
    #[default]
    Sweep,
    /// Per-sample metric against the sample index.
    Series,
}

/// A per-sample metric.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Sum spectral efficiency `Σ_k R_k` on the true channel (bit/s/Hz).
    SumSe,
    /// Solve time per sample (ms).
    TimeMs,
}

impl Metric {
    /// Axis label with unit.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Metric::SumSe => "Sum spectral efficiency (bit/s/Hz)",
            Metric::TimeMs => "Time per sample (ms)",
        }
    }
}

/// A claim: `better` scores at least `margin` above `than` on the mean sum SE at every point.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// Text of the claim, as the report prints it.
    pub claim: String,
    /// Method expected to be better.
    pub better: String,
    /// Method it is compared with.
    pub than: String,
    /// Required advantage in the metric's unit (default 0; negative allows a tolerance). For
    /// `time_ms` the advantage is `than − better` (faster is better).
    #[serde(default)]
    pub margin: f64,
    /// Required relative advantage, e.g. 0.0415 for "+4.15 %" (SE: `(better − than)/than`; time:
    /// `(than − better)/than`, so 0.9839 means "at most 1.61 % of the time").
    #[serde(default)]
    pub relative_margin: Option<f64>,
    /// Only at this sweep value (default: every point).
    #[serde(default)]
    pub at: Option<f64>,
    /// Metric compared (default sum SE).
    #[serde(default = "default_metric")]
    pub metric: Metric,
}

fn default_metric() -> Metric {
    Metric::SumSe
}

impl ExperimentConfig {
    /// Parses a TOML string; `origin` names the file in errors.
    ///
    /// # Errors
    /// [`EvalError::Config`] with the parser's message (key, line and column) or a semantic
    /// check's message.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, EvalError> {
        let cfg: Self = toml::from_str(text)
            .map_err(|e| EvalError::Config { origin: origin.to_string(), message: e.to_string() })?;
        cfg.check(text).map_err(|message| EvalError::Config { origin: origin.to_string(), message })?;
        Ok(cfg)
    }

    /// Reads and parses a config file.
    ///
    /// # Errors
    /// [`EvalError::Io`] or [`EvalError::Config`].
    pub fn from_file(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::Io { path: path.to_path_buf(), source: e })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Semantic checks that the schema cannot express; `text` is the source, to give line numbers.
    fn check(&self, text: &str) -> Result<(), String> {
        if self.experiment.is_empty()
            || !self.experiment.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("experiment name {:?} must be non-empty [A-Za-z0-9_-]", self.experiment));
        }
        let sc = &self.scenario;
        let misplaced_scenario: Vec<&str> = match sc.model {
            ScenarioModel::Rayleigh | ScenarioModel::StreetCanyon => [
                ("n_clusters", sc.n_clusters.is_some()),
                ("n_rays", sc.n_rays.is_some()),
                ("angular_spread_deg", sc.angular_spread_deg.is_some()),
            ]
            .iter()
            .filter(|(_, set)| *set)
            .map(|(k, _)| *k)
            .collect(),
            ScenarioModel::SalehValenzuela => {
                if sc.n_rx.is_some_and(|n| n != 1) {
                    vec!["n_rx"]
                } else {
                    vec![]
                }
            }
        };
        if let Some(key) = misplaced_scenario.first() {
            return Err(format!(
                "{}key `{key}` does not apply to scenario model {:?}",
                at_line(text, "scenario", 0, key),
                sc.model
            ));
        }
        if sc.n_tx == 0 || sc.n_users == 0 || sc.n_rx == Some(0) {
            return Err(format!(
                "scenario: n_tx, n_users, n_rx must be >= 1 (got {}, {}, {:?})",
                sc.n_tx, sc.n_users, sc.n_rx
            ));
        }
        if sc.n_clusters == Some(0)
            || sc.n_rays == Some(0)
            || sc.angular_spread_deg.is_some_and(|a| !(a.is_finite() && a >= 0.0))
        {
            return Err("scenario: n_clusters, n_rays must be >= 1 and angular_spread_deg finite >= 0".into());
        }
        let csi = &self.csi;
        match csi.model {
            CsiKind::Perfect if csi.cee_db.is_some() || csi.delta.is_some() => {
                let key = if csi.cee_db.is_some() { "cee_db" } else { "delta" };
                return Err(format!(
                    "{}key `{key}` does not apply to csi model \"perfect\"",
                    at_line(text, "csi", 0, key)
                ));
            }
            CsiKind::Awgn if csi.delta.is_some() || csi.cee_db.is_some_and(|c| !c.is_finite()) => {
                return Err(format!(
                    "{}csi model \"awgn\" takes a finite `cee_db` only",
                    at_line(text, "csi", 0, "delta")
                ));
            }
            CsiKind::Awgn if csi.cee_db.is_none() && self.sweep.axis != SweepAxis::CeeDb => {
                return Err("csi model \"awgn\" needs `cee_db` (or sweep.axis = \"cee_db\")".into());
            }
            CsiKind::Relative
                if csi.cee_db.is_some()
                    || !(csi.delta.is_some_and(|d| d.is_finite() && d >= 0.0)
                        || (csi.delta.is_none() && self.sweep.axis == SweepAxis::Delta)) =>
            {
                return Err("csi model \"relative\" needs a finite `delta` >= 0 and no `cee_db`".into());
            }
            _ => {}
        }
        for (i, m) in self.method.iter().enumerate() {
            if let Some(key) = m.misplaced_keys().first() {
                return Err(format!(
                    "{}key `{key}` does not apply to method kind {:?}",
                    at_line(text, "method", i, key),
                    m.kind
                ));
            }
            if let Some(t) = &m.target {
                if !["wmmse", "zf"].contains(&t.as_str()) {
                    return Err(format!(
                        "{}target must be \"wmmse\" or \"zf\", got {t:?}",
                        at_line(text, "method", i, "target")
                    ));
                }
            }
            if let Some(init) = &m.init {
                if !["rzf", "random", "mrt"].contains(&init.as_str()) {
                    return Err(format!(
                        "{}init must be \"rzf\", \"random\" or \"mrt\", got {init:?}",
                        at_line(text, "method", i, "init")
                    ));
                }
            }
        }
        if self.sweep.values.is_empty() || self.sweep.values.iter().any(|v| !v.is_finite()) {
            return Err("sweep.values must be a non-empty list of finite numbers".into());
        }
        let all_values = self.profile.values().filter_map(|p| p.values.as_ref()).flatten().chain(&self.sweep.values);
        let whole = matches!(self.sweep.axis, SweepAxis::NTx | SweepAxis::NRf | SweepAxis::NUsers);
        if whole && all_values.clone().any(|v| !(*v >= 1.0 && v.fract() == 0.0)) {
            return Err(format!("sweep.axis = {:?} needs whole numbers >= 1", self.sweep.axis));
        }
        if self.sweep.axis == SweepAxis::Delta && all_values.clone().any(|v| *v < 0.0) {
            return Err("sweep.axis = \"delta\" needs values >= 0".into());
        }
        if self.sweep.axis == SweepAxis::Delta && self.csi.model != CsiKind::Relative {
            return Err("sweep.axis = \"delta\" needs csi.model = \"relative\"".into());
        }
        if self.scenario.n_rf == Some(0) {
            return Err("scenario.n_rf must be >= 1".into());
        }
        if self.sweep.axis == SweepAxis::CeeDb && self.csi.model != CsiKind::Awgn {
            return Err("sweep.axis = \"cee_db\" needs csi.model = \"awgn\"".into());
        }
        if self.profile.is_empty() {
            return Err("at least one [profile.NAME] table is required".into());
        }
        for (name, p) in &self.profile {
            if p.samples == 0 {
                return Err(format!("profile.{name}.samples must be >= 1"));
            }
            if self.scenario.model == ScenarioModel::StreetCanyon && p.samples > 1800 {
                return Err(format!("profile.{name}.samples: the street-canyon trajectory has 1800 slots"));
            }
            if let Some(v) = &p.values {
                if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
                    return Err(format!("profile.{name}.values must be a non-empty list of finite numbers"));
                }
            }
        }
        if self.method.is_empty() {
            return Err("at least one [[method]] is required".into());
        }
        let names: Vec<String> = self.method.iter().map(MethodConfig::display_name).collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(format!("method name {n:?} is used twice; give one a `name`"));
            }
        }
        for a in &self.adaptation {
            if !names.contains(&a.method) {
                return Err(format!("adaptation check {:?} names unknown method {:?}", a.claim, a.method));
            }
            if !self.figure.iter().any(|f| f.name == a.figure && f.kind == FigureKind::Series) {
                return Err(format!("adaptation check {:?} needs a series figure named {:?}", a.claim, a.figure));
            }
        }
        for m in self.complexity.keys() {
            if !names.contains(m) {
                return Err(format!("complexity names unknown method {m:?}"));
            }
        }
        for f in &self.figure {
            if f.kind == FigureKind::Series && f.window == Some(0) {
                return Err(format!("figure {}: window must be >= 1", f.name));
            }
        }
        for c in &self.check {
            for m in [&c.better, &c.than] {
                if !names.contains(m) {
                    return Err(format!("check {:?} names unknown method {m:?}", c.claim));
                }
            }
        }
        Ok(())
    }

    /// Sweep values for a profile.
    ///
    /// # Errors
    /// [`EvalError::Config`] when the profile does not exist.
    pub fn resolve_profile(&self, profile: &str) -> Result<(usize, Vec<f64>), EvalError> {
        let p = self.profile.get(profile).ok_or_else(|| EvalError::Config {
            origin: self.experiment.clone(),
            message: format!(
                "no profile {profile:?} (available: {})",
                self.profile.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })?;
        Ok((p.samples, p.values.clone().unwrap_or_else(|| self.sweep.values.clone())))
    }
}

/// `"line N: "` for `key` inside the `index`-th `[table]` or `[[table]]` of `text` (empty when
/// the key cannot be located, e.g. written as an inline table).
fn at_line(text: &str, table: &str, index: usize, key: &str) -> String {
    let headers = [format!("[{table}]"), format!("[[{table}]]")];
    let mut seen = 0usize;
    let mut inside = false;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = headers.iter().any(|h| t.starts_with(h.as_str())) && {
                seen += 1;
                seen == index + 1
            };
            continue;
        }
        if inside && t.split('=').next().is_some_and(|k| k.trim() == key) {
            return format!("line {}: ", n + 1);
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"
experiment = "t"
title = "test"
seed = 1
[scenario]
model = "rayleigh"
n_tx = 8
n_users = 2
n_rx = 2
[sweep]
axis = "snr_db"
values = [0.0, 10.0]
[profile.quick]
samples = 3
[[method]]
kind = "zf"
[[method]]
kind = "wmmse"
max_n_iterations = 20
"#;

    #[test]
    fn parses_good_config() {
        let c = ExperimentConfig::from_toml_str(GOOD, "good.toml").unwrap();
        assert_eq!(c.method.len(), 2);
        assert_eq!(c.csi, CsiConfig::default());
        assert_eq!(c.resolve_profile("quick").unwrap(), (3, vec![0.0, 10.0]));
        assert!(c.resolve_profile("paper").is_err());
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let bad = GOOD.replace("max_n_iterations = 20", "max_n_iteration = 20");
        let e = ExperimentConfig::from_toml_str(&bad, "bad.toml").unwrap_err().to_string();
        assert!(e.contains("max_n_iteration"), "{e}");
        assert!(e.contains("line 19"), "{e}");
        assert!(e.contains("bad.toml"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let bad = GOOD.replace("n_tx = 8", "n_tx = \"eight\"");
        let e = ExperimentConfig::from_toml_str(&bad, "bad.toml").unwrap_err().to_string();
        assert!(e.contains("line 7"), "{e}");
        assert!(e.contains("n_tx"), "{e}");
    }

    #[test]
    fn misplaced_key_names_key_and_line() {
        let bad = GOOD.replace("kind = \"zf\"", "kind = \"zf\"\ntolerance = 0.1");
        let e = ExperimentConfig::from_toml_str(&bad, "bad.toml").unwrap_err().to_string();
        assert!(e.contains("line 17") && e.contains("tolerance"), "{e}");
    }

    #[test]
    fn hybrid_axes() {
        let delta = GOOD
            .replace("axis = \"snr_db\"", "axis = \"delta\"")
            .replace("values = [0.0, 10.0]", "values = [0.0, 0.1, 0.3]")
            .replace("[sweep]", "[csi]\nmodel = \"relative\"\n[sweep]");
        assert!(ExperimentConfig::from_toml_str(&delta, "d").is_ok(), "delta sweep without csi.delta");
        let negative = delta.replace("0.0, 0.1, 0.3", "-0.1");
        assert!(ExperimentConfig::from_toml_str(&negative, "d").is_err());
        let rf = GOOD.replace("axis = \"snr_db\"", "axis = \"n_rf\"").replace("[0.0, 10.0]", "[2.0, 4.0]");
        assert!(ExperimentConfig::from_toml_str(&rf, "r").is_ok());
        assert!(ExperimentConfig::from_toml_str(&rf.replace("[2.0, 4.0]", "[2.5]"), "r").is_err());
    }

    #[test]
    fn semantic_errors() {
        for (from, to) in [
            ("n_users = 2", "n_users = 0"),
            ("values = [0.0, 10.0]", "values = []"),
            ("samples = 3", "samples = 0"),
            ("kind = \"zf\"", "kind = \"wmmse\""),
            ("axis = \"snr_db\"", "axis = \"cee_db\""),
            ("kind = \"zf\"", "kind = \"zf\"\nalpha = 1.0"),
            ("axis = \"snr_db\"", "axis = \"delta\""),
            ("axis = \"snr_db\"", "axis = \"n_rf\""),
            ("n_rx = 2", "n_rx = 2\nn_rf = 0"),
        ] {
            let bad = GOOD.replace(from, to);
            assert!(ExperimentConfig::from_toml_str(&bad, "x").is_err(), "{from} -> {to} accepted");
        }
    }
}
