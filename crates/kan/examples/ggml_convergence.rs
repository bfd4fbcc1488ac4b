//! Runs the convergence experiment (paper Figs. 4/7) on a few realisations and prints the mean
//! per-user SE (true channel) at selected steps. Usage:
//! `cargo run --release -p beamlab-kan --example ggml_convergence -- <n_real> <delta|none> <method...>`.
#![allow(clippy::unwrap_used)] // a measurement script: any failure should abort loudly.

use beamlab_baselines::{WmmseParams, wmmse};
use beamlab_core::experiment::FamilyExperiment;
use beamlab_core::{Beamformer, CoreError, Diagnostics, Precoder, Problem, Solution};
use beamlab_kan::{ConvergenceParams, ReferenceFactory, convergence_experiment};

/// Fully digital WMMSE on the estimate (an upper reference line).
struct DigitalWmmse;

impl Beamformer for DigitalWmmse {
    fn name(&self) -> &str {
        "WMMSE (digital)"
    }
    fn solve(&mut self, problem: &Problem, rng: &mut dyn rand::RngCore) -> Result<Solution, CoreError> {
        let (w, diagnostics) = wmmse(problem, &WmmseParams::default(), rng)
            .map_err(|e| CoreError::Method { method: "wmmse".into(), source: Box::new(e) })?;
        Ok(Solution { precoder: Precoder::Digital { w }, diagnostics: Diagnostics { ..diagnostics } })
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n_real: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4);
    let delta: Option<f64> = args.get(2).and_then(|s| s.parse().ok());
    let methods: Vec<String> = if args.len() > 3 { args[3..].to_vec() } else { vec!["ggml-mlp".into()] };
    let params = ConvergenceParams { n_realisations: n_real, delta, methods, ..ConvergenceParams::default() };
    let refs: Vec<(String, ReferenceFactory)> =
        vec![("WMMSE (digital)".into(), Box::new(|| Box::new(DigitalWmmse) as Box<dyn Beamformer>))];
    let e = convergence_experiment(&params, refs).unwrap();
    for u in 0..e.n_units() {
        let t0 = std::time::Instant::now();
        let rows = e.run_unit(u, 42).unwrap();
        let pick = |x: f64| rows.iter().find(|r| r.x == x).map_or(f64::NAN, |r| r.mean);
        let last = rows.last().unwrap();
        println!(
            "{:<18} step0 {:.3} 50 {:.3} 86 {:.3} 100 {:.3} 200 {:.3} 500 {:.3} (n = {}, {:.1} s)",
            e.unit_label(u),
            pick(0.0),
            pick(50.0),
            pick(86.0),
            pick(100.0),
            pick(200.0),
            last.mean,
            last.n,
            t0.elapsed().as_secs_f64()
        );
    }
}
