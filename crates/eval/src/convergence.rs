//! The built-in `wmmse_convergence` family: WMMSE's sum SE after each iteration, averaged over
//! i.i.d. Rayleigh realisations with perfect CSI, one series per initialisation. It shows how much
//! of the GLNN paper's WMMSE baseline gap comes from its random start (docs/baselines.md).

use beamlab_baselines::{WmmseInit, WmmseParams, wmmse};
use beamlab_channel::rayleigh;
use beamlab_core::experiment::{CurveRow, FamilyExperiment};
use beamlab_core::{CoreError, Problem, derive_seed};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

/// Parameters of the `wmmse_convergence` family.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WmmseConvergenceParams {
    /// Transmit antennas (default 16).
    #[serde(default = "d_n_tx")]
    pub n_tx: usize,
    /// Users (default 4).
    #[serde(default = "d_n_users")]
    pub n_users: usize,
    /// Receive antennas per user (default 1).
    #[serde(default = "d_n_rx")]
    pub n_rx: usize,
    /// SNR `P/σ²` in dB (default 10).
    #[serde(default = "d_snr")]
    pub snr_db: f64,
    /// Realisations averaged (default 20).
    #[serde(default = "d_n_real")]
    pub n_realisations: usize,
    /// Iterations run (no early stop; default 30).
    #[serde(default = "d_n_it")]
    pub n_iterations: usize,
    /// Initialisations compared (`rzf`, `random`, `mrt`; default all three).
    #[serde(default = "d_inits")]
    pub inits: Vec<String>,
}

fn d_n_tx() -> usize {
    16
}
fn d_n_users() -> usize {
    4
}
fn d_n_rx() -> usize {
    1
}
fn d_snr() -> f64 {
    10.0
}
fn d_n_real() -> usize {
    20
}
fn d_n_it() -> usize {
    30
}
fn d_inits() -> Vec<String> {
    vec!["rzf".into(), "random".into(), "mrt".into()]
}

/// The built experiment: one unit per initialisation.
#[derive(Clone, Debug)]
pub struct WmmseConvergence {
    params: WmmseConvergenceParams,
    inits: Vec<(String, WmmseInit)>,
}

impl WmmseConvergenceParams {
    /// Checks the parameters and builds the experiment.
    ///
    /// # Errors
    /// [`CoreError::InvalidProblem`] naming the bad parameter.
    pub fn build(self) -> Result<WmmseConvergence, CoreError> {
        let bad = |m: String| Err(CoreError::InvalidProblem(m));
        if self.n_tx == 0 || self.n_users == 0 || self.n_rx == 0 {
            return bad(format!(
                "n_tx, n_users, n_rx must be >= 1 (got {}, {}, {})",
                self.n_tx, self.n_users, self.n_rx
            ));
        }
        if self.n_realisations == 0 || self.n_iterations == 0 {
            return bad("n_realisations and n_iterations must be >= 1".into());
        }
        if !self.snr_db.is_finite() {
            return bad(format!("snr_db must be finite, got {}", self.snr_db));
        }
        let mut inits = Vec::new();
        for s in &self.inits {
            let (name, init) = match s.as_str() {
                "rzf" => ("RZF", WmmseInit::Rzf),
                "random" => ("random", WmmseInit::Random),
                "mrt" => ("MRT", WmmseInit::Mrt),
                other => return bad(format!("inits: unknown initialisation {other:?} (rzf, random, mrt)")),
            };
            inits.push((format!("WMMSE ({name} start)"), init));
        }
        if inits.is_empty() {
            return bad("inits must not be empty".into());
        }
        Ok(WmmseConvergence { params: self, inits })
    }
}

impl FamilyExperiment for WmmseConvergence {
    fn n_units(&self) -> usize {
        self.inits.len()
    }

    fn unit_label(&self, unit: usize) -> String {
        self.inits.get(unit).map(|i| i.0.clone()).unwrap_or_default()
    }

    fn run_unit(&self, unit: usize, seed: u64) -> Result<Vec<CurveRow>, CoreError> {
        let p = &self.params;
        let (name, init) =
            self.inits.get(unit).cloned().ok_or_else(|| CoreError::InvalidProblem(format!("no unit {unit}")))?;
        let wp = WmmseParams { max_n_iterations: p.n_iterations, tolerance: 0.0, init };
        let mut traces = vec![Vec::with_capacity(p.n_realisations); p.n_iterations + 1];
        for r in 0..p.n_realisations {
            // The channels depend on the realisation only (the same for every initialisation); the
            // initialisation's randomness on the unit seed.
            let mut ch_rng = ChaCha8Rng::seed_from_u64(derive_seed(0x5eed, &[r as u64]));
            let h = rayleigh(p.n_users, p.n_rx, p.n_tx, &mut ch_rng)
                .map_err(|e| CoreError::Method { method: "rayleigh".into(), source: Box::new(e) })?;
            let problem = Problem::new(h, 1.0, 10f64.powf(p.snr_db / 10.0))?;
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &[r as u64]));
            let (_, diag) = wmmse(&problem, &wp, &mut rng)?;
            // The trace holds the initial point and one value per iteration; an early stop (exact
            // fixed point) repeats the last value.
            let last = diag.objective_trace.last().copied().unwrap_or(f64::NAN);
            for (i, t) in traces.iter_mut().enumerate() {
                t.push(diag.objective_trace.get(i).copied().unwrap_or(last));
            }
        }
        Ok(traces.iter().enumerate().map(|(i, v)| CurveRow::summarise(&name, "sum_se", i as f64, v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wmmse_traces_are_monotone_and_start_where_the_init_is() {
        let p = WmmseConvergenceParams {
            n_tx: 8,
            n_users: 3,
            n_rx: 1,
            snr_db: 10.0,
            n_realisations: 4,
            n_iterations: 8,
            inits: vec!["rzf".into(), "random".into()],
        };
        let e = p.build().unwrap();
        assert_eq!(e.n_units(), 2);
        let rzf = e.run_unit(0, 1).unwrap();
        let rnd = e.run_unit(1, 1).unwrap();
        assert_eq!(rzf.len(), 9);
        for w in rzf.windows(2).chain(rnd.windows(2)) {
            assert!(w[1].mean >= w[0].mean - 1e-9, "WMMSE mean trace decreased: {w:?}");
        }
        assert!(rzf[0].mean > rnd[0].mean, "RZF start should beat a random start");
        assert_eq!(e.run_unit(1, 1).unwrap(), rnd, "not deterministic");
        assert_ne!(e.run_unit(1, 2).unwrap(), rnd, "seed ignored");
    }
}
