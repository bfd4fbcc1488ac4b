//! A trained U-G-HBF-GCN / U-FDBF-GCN model as a [`Beamformer`], so that it can be scored by
//! `eval` next to the classical methods.
//!
//! The trainer's network sees only what the transmitter knows: the estimated channels of the
//! [`Problem`], its SINR targets, the side information `ζ` (the pilot power the model was trained
//! for; `Problem` does not carry it, so the wrapper holds it) and the constraint group (with
//! [`GcnConfig::group_inputs`](crate::model::GcnConfig::group_inputs)). Noise is normalised away:
//! user `k`'s channel is `ĥ_k / σ_k`, which leaves every SINR unchanged, so a model trained with
//! unit noise serves any noise power.

use std::time::Instant;

use beamlab_core::{Beamformer, CoreError, Diagnostics, MethodKind, Precoder, Problem, Solution};
use beamlab_linalg_ops::c64;
use ndarray::Array1;

use crate::data::Instance;
use crate::train::Trainer;
use crate::unroll::Architecture;
use crate::{CsiKind, Error};

/// A trained model applied per problem ([`MethodKind::Offline`]).
pub struct LearnedHbf {
    trainer: Trainer,
    zeta: f64,
    group: usize,
    name: String,
}

impl std::fmt::Debug for LearnedHbf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LearnedHbf")
            .field("name", &self.name)
            .field("zeta", &self.zeta)
            .field("group", &self.group)
            .finish()
    }
}

impl LearnedHbf {
    /// Wraps a trained (or checkpoint-loaded) instance trainer; `zeta` is the side information
    /// the model is told (linear pilot power for the pilot CSI model). Group 0 by default.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a non-finite or non-positive `zeta`,
    /// [`Error::WrongCsiKind`] for a trainer for statistical-CSI systems (Table 4), whose network
    /// takes other inputs.
    pub fn new(trainer: Trainer, zeta: f64) -> Result<Self, Error> {
        if !(zeta.is_finite() && zeta > 0.0) {
            return Err(Error::param("zeta", format!("side information must be finite and > 0, got {zeta}")));
        }
        if trainer.is_statistical() {
            return Err(Error::WrongCsiKind { expected: CsiKind::Statistical, found: CsiKind::Instantaneous });
        }
        let name = match trainer.architecture() {
            Architecture::Hybrid => "U-G-HBF-GCN",
            Architecture::FullyDigital => "U-FDBF-GCN",
        };
        Ok(Self { trainer, zeta, group: 0, name: name.into() })
    }

    /// The constraint group the problems belong to (only a model with group inputs uses it).
    ///
    /// # Errors
    /// [`Error::GroupOutOfRange`] when the model has group inputs and `group` is not one of them.
    pub fn with_group(mut self, group: usize) -> Result<Self, Error> {
        let n = self.trainer.model().n_group_inputs();
        if n > 0 && group >= n {
            return Err(Error::GroupOutOfRange { group, n_groups: n });
        }
        self.group = group;
        Ok(self)
    }

    /// Another display name.
    #[must_use]
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// The wrapped trainer.
    #[must_use]
    pub fn trainer(&self) -> &Trainer {
        &self.trainer
    }

    /// The noise-normalised instance of `problem` the network and the unrolled pass see (its
    /// "true" channels are the estimates: they only set the recorded nominal SINRs).
    ///
    /// # Errors
    /// [`CoreError::InvalidProblem`] for an invalid problem, missing SINR targets, users with
    /// several antennas or a non-finite channel.
    pub(crate) fn instance(&self, problem: &Problem) -> Result<Instance, CoreError> {
        problem.validate()?;
        let bad = |m: &str| CoreError::InvalidProblem(format!("{}: {m}", self.name));
        let targets = problem.sinr_targets.clone().ok_or_else(|| bad("needs SINR targets"))?;
        if problem.channel.n_rx().iter().any(|&r| r != 1) {
            return Err(bad("needs single-antenna users"));
        }
        // Column channels h_k = H_k[0, :]^H, divided by the noise amplitude σ_k.
        let columns: Vec<Array1<c64>> = problem.channel.blocks().iter().map(|b| b.row(0).mapv(|z| z.conj())).collect();
        if columns.iter().flat_map(|h| h.iter()).any(|z| !(z.re.is_finite() && z.im.is_finite())) {
            return Err(bad("non-finite channel"));
        }
        let h_est: Vec<Array1<c64>> =
            columns.into_iter().zip(&problem.noise_power).map(|(h, s2)| h.mapv(|z| z / s2.sqrt())).collect();
        let h = h_est.clone();
        let cov = crate::greedy::rank_one_covariances(&h_est);
        Ok(Instance { group: self.group, cov, h, h_est, err_cov: None, targets, zeta: self.zeta })
    }
}

impl Beamformer for LearnedHbf {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> MethodKind {
        MethodKind::Offline
    }

    fn solve(&mut self, problem: &Problem, _rng: &mut dyn rand::RngCore) -> Result<Solution, CoreError> {
        let start = Instant::now();
        let inst = self.instance(problem)?;
        let out = match self.trainer.infer(&inst) {
            Ok(out) => out,
            Err(Error::Infeasible { reason, .. }) => return Err(CoreError::Infeasible(reason.to_string())),
            Err(e) => return Err(CoreError::Method { method: self.name.clone(), source: Box::new(e) }),
        };
        let mut d = out.solution.beams.clone();
        for (mut col, p) in d.columns_mut().into_iter().zip(&out.powers) {
            col.mapv_inplace(|z| z * p.sqrt());
        }
        let precoder = match self.trainer.architecture() {
            Architecture::Hybrid => Precoder::Hybrid { f: out.analog.clone(), d },
            Architecture::FullyDigital => Precoder::Digital { w: out.analog.dot(&d) },
        };
        let diagnostics = Diagnostics {
            n_iterations: out.steps.len(),
            converged: true,
            objective_trace: vec![out.power()],
            elapsed: start.elapsed(),
            notes: vec![format!("selection {:?}, projection factor {:.6}", out.selection, out.scale)],
        };
        Ok(Solution { precoder, diagnostics })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Scenario, draw_instance, pilot_groups};
    use crate::model::GcnConfig;
    use crate::train::TrainParams;
    use crate::unroll::tests::settings;
    use beamlab_core::Channel;
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn data(n: usize, seed: u64) -> Vec<Instance> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let groups = pilot_groups(&[0.0, 10.0]);
        (0..n).map(|i| draw_instance(&Scenario::default(), &groups[i % 2], i % 2, &mut rng).unwrap()).collect()
    }

    fn trainer(cfg: &GcnConfig, train: &[Instance]) -> Trainer {
        let params = TrainParams { batch_size: 4, n_steps: 2, eval_every: 1, ..TrainParams::default() };
        let mut t = Trainer::new(cfg, settings(100.0), params, 2, train, 3).unwrap();
        t.train(train, &train[..2], &mut ChaCha8Rng::seed_from_u64(5)).unwrap();
        t
    }

    /// The problem a transmitter with estimates `inst.h_est` (scaled by `s`) and noise `s²` sees.
    fn problem(inst: &Instance, s: f64) -> Problem {
        let blocks =
            inst.h_est.iter().map(|h| h.mapv(|z| z.conj() * s).insert_axis(ndarray::Axis(0))).collect::<Vec<_>>();
        Problem::new(Channel::new(blocks).unwrap(), s * s, 100.0)
            .unwrap()
            .with_sinr_targets(inst.targets.clone())
            .unwrap()
    }

    /// The wrapper reproduces the trainer's own inference on the instance (the precoder
    /// `A [√p_k w_k]`) for any noise scaling, in both architectures, and feeds the network the
    /// noise-normalised estimates, targets, group and `ζ`.
    #[test]
    fn wrapper_reproduces_the_trainers_inference_at_any_noise_power() {
        let train = data(8, 1);
        let cfg = GcnConfig { group_inputs: std::num::NonZeroUsize::new(2), ..GcnConfig::default() };
        let t = trainer(&cfg, &train);
        let inst = &train[3];
        let want = t.infer(inst).unwrap();
        let mut bf = LearnedHbf::new(t, inst.zeta).unwrap().with_group(inst.group).unwrap();
        assert_eq!(bf.kind(), MethodKind::Offline);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for s in [1.0, 0.01, 30.0] {
            let sol = bf.solve(&problem(inst, s), &mut rng).unwrap();
            let Precoder::Hybrid { f, d } = &sol.precoder else { panic!("hybrid expected") };
            let w = f.dot(d);
            let diff = (&w - &want.precoder()).mapv(|z| z.norm()).sum();
            assert!(diff < 1e-8 * want.precoder().mapv(|z| z.norm()).sum(), "noise scale {s}: {diff}");
            // The network sees the noise-normalised estimates.
            let seen = bf.instance(&problem(inst, s)).unwrap();
            for (a, b) in seen.h_est.iter().zip(&inst.h_est) {
                assert!((a - b).mapv(|z| z.norm()).sum() < 1e-12 * (1.0 + b.mapv(|z| z.norm()).sum()));
            }
            assert_eq!((seen.group, seen.zeta, seen.targets), (inst.group, inst.zeta, inst.targets.clone()));
        }
        // Another group or ζ changes the design (the network sees them).
        let other = bf.trainer().infer(&Instance { group: 1 - inst.group, ..inst.clone() }).unwrap();
        assert!((&other.precoder() - &want.precoder()).mapv(|z| z.norm()).sum() > 1e-9);
        // Fully digital: a digital precoder equal to the fully digital inference.
        let fd = trainer(&GcnConfig::default(), &train).with_architecture(Architecture::FullyDigital);
        let want = fd.infer(inst).unwrap().precoder();
        let mut bf = LearnedHbf::new(fd, inst.zeta).unwrap();
        assert_eq!(bf.name(), "U-FDBF-GCN");
        let Precoder::Digital { w } = bf.solve(&problem(inst, 2.0), &mut rng).unwrap().precoder else {
            panic!("digital expected")
        };
        assert!((&w - &want).mapv(|z| z.norm()).sum() < 1e-8 * want.mapv(|z| z.norm()).sum());
    }

    /// Bad input: typed errors, never a panic.
    #[test]
    fn wrapper_rejects_bad_problems_and_settings() {
        let train = data(8, 2);
        let cfg = GcnConfig { group_inputs: std::num::NonZeroUsize::new(2), ..GcnConfig::default() };
        let inst = train[0].clone();
        for zeta in [0.0, f64::NAN] {
            assert!(matches!(
                LearnedHbf::new(trainer(&cfg, &train), zeta),
                Err(Error::InvalidParameter { name: "zeta", .. })
            ));
        }
        assert!(matches!(
            LearnedHbf::new(trainer(&cfg, &train), 1.0).unwrap().with_group(2),
            Err(Error::GroupOutOfRange { group: 2, n_groups: 2 })
        ));
        let mut bf = LearnedHbf::new(trainer(&cfg, &train), inst.zeta).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let good = problem(&inst, 1.0);
        // No SINR targets.
        let mut p = good.clone();
        p.sinr_targets = None;
        assert!(matches!(bf.solve(&p, &mut rng), Err(CoreError::InvalidProblem(_))));
        // A NaN channel cannot reach the wrapper: `Channel` rejects it on construction.
        let mut blocks = good.channel.blocks().to_vec();
        blocks[0][[0, 0]] = c64::new(f64::NAN, 0.0);
        assert!(Channel::new(blocks).is_err());
        // Negative noise in a hand-built problem.
        let mut p = good.clone();
        p.noise_power[0] = -1.0;
        assert!(matches!(bf.solve(&p, &mut rng), Err(CoreError::InvalidProblem(_))));
        // Users with two antennas.
        let blocks: Vec<Array2<c64>> = (0..2).map(|_| Array2::from_elem((2, 16), c64::new(0.1, 0.0))).collect();
        let p =
            Problem::new(Channel::new(blocks).unwrap(), 1.0, 100.0).unwrap().with_sinr_targets(vec![1.0, 1.0]).unwrap();
        assert!(matches!(bf.solve(&p, &mut rng), Err(CoreError::InvalidProblem(_))));
        // Unreachable targets: a typed infeasibility or a projected (power-capped) design, no panic.
        let mut p = good.clone();
        p.sinr_targets = Some(vec![1e12; inst.targets.len()]);
        if let Ok(sol) = bf.solve(&p, &mut rng) {
            let Precoder::Hybrid { f, d } = sol.precoder else { panic!("hybrid expected") };
            let power: f64 = f.dot(&d).iter().map(|z| z.norm_sqr()).sum();
            assert!(power.is_finite() && power <= 100.0 * (1.0 + 1e-9), "{power}");
        }
    }
}
