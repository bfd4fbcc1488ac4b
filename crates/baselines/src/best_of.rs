//! The "upper bound" of the GLNN paper: run several methods, each from many independent random
//! starts, and keep the precoder with the largest weighted sum rate on the problem's channel.
//!
//! Under perfect CSI the problem's channel is the true one, so this is an empirical upper bound on
//! what the candidates can reach; under imperfect CSI it is the best on the estimate.

use std::time::Instant;

use beamlab_core::{Beamformer, CoreError, Diagnostics, Problem, Solution};
use rand::RngCore;

/// Best-of-restarts meta-method.
pub struct BestOf {
    name: String,
    candidates: Vec<(Box<dyn Beamformer>, usize)>,
}

impl BestOf {
    /// `candidates`: each method with its number of independent runs (≥ 1).
    #[must_use]
    pub fn new(name: &str, candidates: Vec<(Box<dyn Beamformer>, usize)>) -> Self {
        Self { name: name.to_string(), candidates }
    }
}

impl Beamformer for BestOf {
    fn name(&self) -> &str {
        &self.name
    }

    fn solve(&mut self, problem: &Problem, rng: &mut dyn RngCore) -> Result<Solution, CoreError> {
        let start = Instant::now();
        problem.validate()?;
        let mut best: Option<(f64, Solution)> = None;
        let mut trace = Vec::new();
        let mut n_runs = 0;
        let mut last_error = None;
        for (method, runs) in &mut self.candidates {
            for _ in 0..(*runs).max(1) {
                n_runs += 1;
                match method.solve(problem, rng) {
                    Ok(sol) => {
                        let r = sol.precoder.rates(&problem.channel, &problem.noise_power)?;
                        let wsr: f64 = r.iter().zip(&problem.weights).map(|(a, b)| a * b).sum();
                        trace.push(wsr);
                        if best.as_ref().is_none_or(|(b, _)| wsr > *b) {
                            best = Some((wsr, sol));
                        }
                    }
                    // A candidate that cannot serve this problem (e.g. ZF with too few antennas)
                    // is skipped; the others still compete.
                    Err(e) => last_error = Some(e),
                }
            }
        }
        match best {
            Some((_, sol)) => Ok(Solution {
                precoder: sol.precoder,
                diagnostics: Diagnostics {
                    n_iterations: n_runs,
                    converged: true,
                    objective_trace: trace,
                    elapsed: start.elapsed(),
                    notes: Vec::new(),
                },
            }),
            None => Err(last_error.unwrap_or_else(|| CoreError::InvalidProblem("BestOf has no candidates".into()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::problem;
    use crate::{Mrt, Wmmse, WmmseInit, WmmseParams, Zf};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn never_worse_than_any_candidate() {
        let p = problem(8, 3, 2, 10.0, 11);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let random = WmmseParams { init: WmmseInit::Random, ..Default::default() };
        let mut best =
            BestOf::new("UB", vec![(Box::new(Wmmse::new(random)), 10), (Box::new(Zf), 1), (Box::new(Mrt), 1)]);
        let sol = best.solve(&p, &mut rng).unwrap();
        let wsr = |s: &Solution| s.precoder.rates(&p.channel, &p.noise_power).unwrap().sum();
        let ub = wsr(&sol);
        assert_eq!(sol.diagnostics.n_iterations, 12);
        assert!((sol.diagnostics.objective_trace.iter().cloned().fold(f64::MIN, f64::max) - ub).abs() < 1e-12);
        for mut m in [Box::new(Zf) as Box<dyn Beamformer>, Box::new(Mrt)] {
            assert!(ub >= wsr(&m.solve(&p, &mut rng).unwrap()) - 1e-12);
        }
        // All candidates failing is an error, not a silent result.
        let tiny = problem(2, 3, 1, 1.0, 1);
        assert!(BestOf::new("UB", vec![(Box::new(Zf), 1)]).solve(&tiny, &mut rng).is_err());
    }
}
