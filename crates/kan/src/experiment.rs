//! Convergence traces of GGML (paper Fig. 4, perfect CSI) and GGML-ImCSI (Fig. 7, relative CSI
//! error `δ`) as a [`FamilyExperiment`].
//!
//! Setting: Saleh–Valenzuela channels (`N` antennas, `K` users, GGML's defaults), `P = 1`,
//! `σ² = 10^{−SNR/10}`, `M` RF chains. Each GGML series is one unit: every realisation is solved
//! from scratch and the per-user SE `Σ_k R_k/K` of the iterate after each step, **scored on the
//! true channel**, is averaged over realisations (metric `se_per_user`, `x` = step, 0 = the
//! initialisation). Each caller-supplied reference method is one unit too: it solves each
//! realisation once and gives a constant line (two rows, at `x = 0` and `x = n_steps`).
//!
//! Randomness: realisation `r`'s channel (and CSI error) comes from
//! `derive_seed(channel_seed, [r])`, the same for every unit; a method's own randomness from
//! `derive_seed(seed, [r])` with the harness's unit seed. Rows are a deterministic function of the
//! parameters and the unit seed.

use beamlab_channel::{SvParams, relative_estimate, saleh_valenzuela};
use beamlab_core::experiment::{CurveRow, FamilyExperiment};
use beamlab_core::{Beamformer, CoreError, ErrorStats, Problem, derive_seed};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::ggml::{GgmlParams, HybridSetup, Objective, method_error, run_ggml};
use crate::imcsi::{ImcsiParams, worst_case_setup};
use crate::net::NetKind;
use crate::{KanError, invalid};

/// Parameters of the convergence experiment.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConvergenceParams {
    /// Antennas `N` (default 64).
    pub n_tx: usize,
    /// RF chains `M` (default: `n_users`).
    pub n_rf: Option<usize>,
    /// Users `K` (default 4).
    pub n_users: usize,
    /// SNR `P/σ²` in dB (default 10).
    pub snr_db: f64,
    /// Relative CSI error `δ` (default none: perfect CSI, Fig. 4; Fig. 7 uses 0.2).
    pub delta: Option<f64>,
    /// Realisations averaged (default 100).
    pub n_realisations: usize,
    /// GGML steps `L` (default 500).
    pub n_steps: usize,
    /// GGML series: any of `ggml-kan`, `ggml-mlp`, `ggml-imcsi` (KAN; needs `delta`),
    /// `ggml-imcsi-mlp` (default `ggml-kan`, `ggml-mlp`).
    pub methods: Vec<String>,
    /// Seed of the channel realisations (default 0x5eed).
    pub channel_seed: u64,
    /// Monte-Carlo draws of GGML-ImCSI's error bound (default 20 000).
    pub n_mc_draws: usize,
    /// Base GGML parameters of every series (the series sets `net`, `n_steps` and `n_rf`).
    pub ggml: GgmlParams,
}

impl Default for ConvergenceParams {
    fn default() -> Self {
        Self {
            n_tx: 64,
            n_rf: None,
            n_users: 4,
            snr_db: 10.0,
            delta: None,
            n_realisations: 100,
            n_steps: 500,
            methods: vec!["ggml-kan".into(), "ggml-mlp".into()],
            channel_seed: 0x5eed,
            n_mc_draws: 20_000,
            ggml: GgmlParams::default(),
        }
    }
}

/// A factory of a reference beamformer (a classical method drawn as a constant line).
pub type ReferenceFactory = Box<dyn Fn() -> Box<dyn Beamformer> + Send + Sync>;

#[derive(Clone, Debug)]
enum Series {
    Ggml { label: String, params: GgmlParams },
    Imcsi { label: String, params: ImcsiParams },
}

/// The built experiment: GGML series first, then the references.
pub struct ConvergenceExperiment {
    params: ConvergenceParams,
    series: Vec<Series>,
    references: Vec<(String, ReferenceFactory)>,
}

impl std::fmt::Debug for ConvergenceExperiment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConvergenceExperiment")
            .field("params", &self.params)
            .field("series", &self.series)
            .field("references", &self.references.iter().map(|r| &r.0).collect::<Vec<_>>())
            .finish()
    }
}

/// Checks the parameters and builds the experiment (`references`: display name and factory of
/// each classical method drawn as a constant line, e.g. the hybrid baselines).
///
/// # Errors
/// [`KanError::InvalidParameter`] naming the bad parameter (sizes, SNR, `δ`, unknown or duplicate
/// method names, `ggml-imcsi` without `delta`); [`KanError::TooFewRfChains`] /
/// [`KanError::TooManyRfChains`] unless `K ≤ M ≤ N`.
pub fn convergence_experiment(
    params: &ConvergenceParams,
    references: Vec<(String, ReferenceFactory)>,
) -> Result<ConvergenceExperiment, KanError> {
    let bad = |name: &'static str, m: String| Err(invalid(name, m));
    let p = params;
    for (name, v) in
        [("n_tx", p.n_tx), ("n_users", p.n_users), ("n_realisations", p.n_realisations), ("n_steps", p.n_steps)]
    {
        if v == 0 {
            return bad(name, "must be >= 1".into());
        }
    }
    let n_rf = p.n_rf.unwrap_or(p.n_users);
    if n_rf < p.n_users {
        return Err(KanError::TooFewRfChains { n_rf, n_users: p.n_users });
    }
    if n_rf > p.n_tx {
        return Err(KanError::TooManyRfChains { n_rf, n_tx: p.n_tx });
    }
    if !p.snr_db.is_finite() {
        return bad("snr_db", format!("must be finite, got {}", p.snr_db));
    }
    if let Some(d) = p.delta {
        if !(d.is_finite() && d >= 0.0) {
            return bad("delta", format!("must be finite and >= 0, got {d}"));
        }
    }
    let base = GgmlParams { n_steps: p.n_steps, n_rf: Some(n_rf), ..p.ggml.clone() };
    base.check()?;
    let mut series = Vec::new();
    for m in &p.methods {
        let s = match m.as_str() {
            "ggml-kan" => {
                Series::Ggml { label: "GGML-KAN".into(), params: GgmlParams { net: NetKind::Kan, ..base.clone() } }
            }
            "ggml-mlp" => {
                Series::Ggml { label: "GGML-MLP".into(), params: GgmlParams { net: NetKind::Mlp, ..base.clone() } }
            }
            "ggml-imcsi" | "ggml-imcsi-mlp" => {
                if p.delta.is_none() {
                    return bad("delta", format!("method {m} needs it"));
                }
                let (label, net) =
                    if m == "ggml-imcsi" { ("GGML-ImCSI", NetKind::Kan) } else { ("GGML-ImCSI-MLP", NetKind::Mlp) };
                let params = ImcsiParams {
                    ggml: GgmlParams { net, ..base.clone() },
                    n_mc_draws: p.n_mc_draws,
                    ..ImcsiParams::default()
                };
                params.check()?;
                Series::Imcsi { label: label.into(), params }
            }
            other => {
                return bad(
                    "methods",
                    format!("unknown method {other:?} (ggml-kan, ggml-mlp, ggml-imcsi, ggml-imcsi-mlp)"),
                );
            }
        };
        series.push(s);
    }
    let mut names: Vec<String> = series
        .iter()
        .map(|s| match s {
            Series::Ggml { label, .. } | Series::Imcsi { label, .. } => label.clone(),
        })
        .chain(references.iter().map(|r| r.0.clone()))
        .collect();
    if names.is_empty() {
        return bad("methods", "no methods and no references".into());
    }
    names.sort();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return bad("methods", format!("duplicate series names in {names:?}"));
    }
    Ok(ConvergenceExperiment { params: params.clone(), series, references })
}

impl ConvergenceExperiment {
    /// The realisation `r`: the problem the transmitter sees and the true channel.
    fn realisation(&self, r: usize) -> Result<(Problem, beamlab_core::Channel), CoreError> {
        let p = &self.params;
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(p.channel_seed, &[r as u64]));
        let wrap =
            |e: beamlab_channel::ChannelError| CoreError::Method { method: "channel".into(), source: Box::new(e) };
        let truth = saleh_valenzuela(&SvParams::default(), p.n_users, p.n_tx, &mut rng).map_err(wrap)?;
        let noise = 10f64.powf(-p.snr_db / 10.0);
        let problem = match p.delta {
            None => Problem::new(truth.clone(), noise, 1.0)?,
            Some(d) => Problem::new(relative_estimate(&truth, d, &mut rng).map_err(wrap)?, noise, 1.0)?
                .with_error_stats(ErrorStats::Relative { delta: d })?,
        };
        Ok((problem, truth))
    }

    fn label(&self, unit: usize) -> String {
        match self.series.get(unit) {
            Some(Series::Ggml { label, .. } | Series::Imcsi { label, .. }) => label.clone(),
            None => self.references.get(unit - self.series.len()).map(|r| r.0.clone()).unwrap_or_default(),
        }
    }
}

const METRIC: &str = "se_per_user";

impl FamilyExperiment for ConvergenceExperiment {
    fn n_units(&self) -> usize {
        self.series.len() + self.references.len()
    }

    fn unit_label(&self, unit: usize) -> String {
        self.label(unit)
    }

    fn run_unit(&self, unit: usize, seed: u64) -> Result<Vec<CurveRow>, CoreError> {
        let p = &self.params;
        if unit >= self.n_units() {
            return Err(CoreError::InvalidProblem(format!("no unit {unit}")));
        }
        let label = self.label(unit);
        let _span = tracing::info_span!("ggml_convergence", unit = %label).entered();
        if let Some(series) = self.series.get(unit) {
            let mut per_step = vec![Vec::with_capacity(p.n_realisations); p.n_steps + 1];
            for r in 0..p.n_realisations {
                let (problem, truth) = self.realisation(r)?;
                let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[r as u64]));
                let out = match series {
                    Series::Ggml { params, .. } => {
                        let mut setup =
                            HybridSetup::from_problem(&problem, params.n_rf).map_err(|e| method_error(&label, e))?;
                        setup.score_channel = Some(truth.blocks().to_vec());
                        run_ggml(&setup, Objective::Rate { var_weight: params.var_weight }, params, &mut rng)
                    }
                    Series::Imcsi { params, .. } => {
                        let (mut setup, _) =
                            worst_case_setup(&problem, params, &mut rng).map_err(|e| method_error(&label, e))?;
                        setup.score_channel = Some(truth.blocks().to_vec());
                        run_ggml(
                            &setup,
                            Objective::WorstCaseMmse { var_weight: params.ggml.var_weight },
                            &params.ggml,
                            &mut rng,
                        )
                    }
                }
                .map_err(|e| method_error(&label, e))?;
                let tr = out.score_trace.unwrap_or_default();
                // A run stopped by a non-finite iterate repeats its last value.
                let last = tr.last().copied().unwrap_or(f64::NAN);
                for (t, v) in per_step.iter_mut().enumerate() {
                    v.push(tr.get(t).copied().unwrap_or(last));
                }
            }
            Ok(per_step.iter().enumerate().map(|(t, v)| CurveRow::summarise(&label, METRIC, t as f64, v)).collect())
        } else {
            let (_, factory) = &self.references[unit - self.series.len()];
            let mut values = Vec::with_capacity(p.n_realisations);
            for r in 0..p.n_realisations {
                let (problem, truth) = self.realisation(r)?;
                let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[r as u64]));
                let mut method = factory();
                let sol = method.solve(&problem, &mut rng)?;
                let rates = sol.precoder.rates(&truth, &problem.noise_power)?;
                values.push(rates.sum() / p.n_users as f64);
            }
            Ok([0.0, p.n_steps as f64].iter().map(|&x| CurveRow::summarise(&label, METRIC, x, &values)).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> ConvergenceParams {
        ConvergenceParams {
            n_tx: 8,
            n_users: 2,
            n_realisations: 2,
            n_steps: 12,
            ggml: GgmlParams { hidden: 16, ..GgmlParams::default() },
            n_mc_draws: 200,
            ..ConvergenceParams::default()
        }
    }

    struct FixedZf;
    impl Beamformer for FixedZf {
        fn name(&self) -> &str {
            "ZF"
        }
        fn solve(
            &mut self,
            problem: &Problem,
            rng: &mut dyn rand::RngCore,
        ) -> Result<beamlab_core::Solution, CoreError> {
            let hs = problem.channel.stacked();
            let f = crate::ggml::random_phase_analog(problem.n_tx(), problem.n_users(), rng);
            let d = crate::ggml::zf_digital(&hs, &f, problem.power_budget).map_err(|e| method_error("ZF", e))?;
            Ok(beamlab_core::Solution {
                precoder: beamlab_core::Precoder::Hybrid { f, d },
                diagnostics: beamlab_core::Diagnostics::default(),
            })
        }
    }

    #[test]
    fn units_rows_and_determinism() {
        let refs: Vec<(String, ReferenceFactory)> =
            vec![("hybrid ZF".into(), Box::new(|| Box::new(FixedZf) as Box<dyn Beamformer>))];
        let e = convergence_experiment(&ConvergenceParams { n_steps: 40, ..small() }, refs).unwrap();
        assert_eq!(e.n_units(), 3);
        assert_eq!(e.unit_label(0), "GGML-KAN");
        assert_eq!(e.unit_label(2), "hybrid ZF");
        let rows = e.run_unit(1, 5).unwrap();
        assert_eq!(rows.len(), 41);
        assert!(rows.iter().all(|r| r.n == 2 && r.metric == METRIC && r.mean.is_finite()));
        assert_eq!(rows, e.run_unit(1, 5).unwrap());
        assert_ne!(rows, e.run_unit(1, 6).unwrap());
        let zf = e.run_unit(2, 5).unwrap();
        assert_eq!(zf.len(), 2);
        // Step 0 of GGML is its ZF init (random F0): same kind of value as the reference line.
        assert!(rows[40].mean > rows[0].mean, "{} -> {}", rows[0].mean, rows[40].mean);
        assert!(e.run_unit(3, 0).is_err());
    }

    #[test]
    fn imperfect_csi_series_and_validation() {
        let p = ConvergenceParams {
            delta: Some(0.2),
            methods: vec!["ggml-imcsi-mlp".into(), "ggml-mlp".into()],
            ..small()
        };
        let e = convergence_experiment(&p, vec![]).unwrap();
        let rows = e.run_unit(0, 1).unwrap();
        assert_eq!(rows.len(), 13);
        assert!(rows.iter().all(|r| r.mean.is_finite()));
        let bad = |q: ConvergenceParams| convergence_experiment(&q, vec![]).is_err();
        assert!(bad(ConvergenceParams { methods: vec!["ggml-imcsi".into()], ..small() }));
        assert!(bad(ConvergenceParams { methods: vec!["nope".into()], ..small() }));
        assert!(bad(ConvergenceParams { methods: vec!["ggml-kan".into(), "ggml-kan".into()], ..small() }));
        assert!(bad(ConvergenceParams { delta: Some(-0.1), ..small() }));
        assert!(bad(ConvergenceParams { n_rf: Some(1), ..small() }));
        assert!(bad(ConvergenceParams { n_rf: Some(9), ..small() }));
        assert!(bad(ConvergenceParams { snr_db: f64::NAN, ..small() }));
        let parsed: ConvergenceParams = toml::from_str("n_tx = 16\ndelta = 0.2\nmethods = [\"ggml-imcsi\"]\n").unwrap();
        assert_eq!(parsed.n_tx, 16);
        assert!(toml::from_str::<ConvergenceParams>("n_txx = 16\n").is_err());
    }
}
