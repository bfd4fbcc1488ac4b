//! Tests of the training loop, the step's gradients (against finite differences) and the
//! statistical-CSI systems.

use beamlab_candle_bridge::{all_finite, restore, snapshot};
use beamlab_linalg_ops::c64;
use ndarray::Array2;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::objective::quantile;
use super::*;
use crate::data::{Instance, Scenario, StatInstance, draw_instance};
use crate::model::{GcnConfig, coefficients};
use crate::unroll::tests::settings;
use crate::unroll::{UnrollSettings, UnrolledOutput, backward, evaluate_analog, straight_through_gradient_cov};
use crate::{CsiKind, Error};

fn data(n: usize, seed: u64) -> Vec<Instance> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let groups = crate::data::pilot_groups(&[0.0, 10.0]);
    (0..n).map(|i| draw_instance(&Scenario::default(), &groups[i % 2], i % 2, &mut rng).unwrap()).collect()
}

fn quick() -> TrainParams {
    TrainParams { batch_size: 8, n_steps: 6, eval_every: 3, ..TrainParams::default() }
}

#[test]
fn quantile_interpolates_and_weights_sum_to_one() {
    let (q, w) = quantile(&[3.0, 1.0, 2.0, 5.0, 4.0], 0.1);
    assert!((q - 1.4).abs() < 1e-12);
    assert_eq!((w[0].0, w[1].0), (1, 2));
    assert!((w[0].1 + w[1].1 - 1.0).abs() < 1e-12);
}

#[test]
fn untrained_network_starts_near_the_estimate_as_truth_coefficients() {
    let train = data(4, 1);
    let t = Trainer::new(&GcnConfig::default(), settings(100.0), quick(), 2, &train, 7).unwrap();
    let (_, c) = coefficients(t.model(), &train[0]).unwrap();
    for row in c.rows() {
        assert!((row[0] - 1.0).abs() < 0.1 && (row[2] - 1.0).abs() < 0.1, "{row:?}");
        assert!((row[1] - (-3f64).exp()).abs() < 0.01 && (row[3] - (-3f64).exp()).abs() < 0.01, "{row:?}");
    }
    // Deterministic for a seed.
    let t2 = Trainer::new(&GcnConfig::default(), settings(100.0), quick(), 2, &train, 7).unwrap();
    assert_eq!(coefficients(t2.model(), &train[1]).unwrap().1, coefficients(t.model(), &train[1]).unwrap().1);
}

#[test]
fn power_only_training_lowers_the_power() {
    // With no constraint term the primal steps must reduce the mean power on the batch.
    let train = data(8, 2);
    let params = TrainParams { mu_init: 0.0, lr_dual: 0.0, lr: 2e-2, clip_percentile: 100.0, ..quick() };
    let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), params, 2, &train, 3).unwrap();
    let before = t.evaluate(&train).unwrap().mean_power;
    let batch: Vec<System> = train.iter().map(System::from).collect();
    for _ in 0..8 {
        assert!(!t.step(&batch).unwrap().skipped);
    }
    let after = t.evaluate(&train).unwrap().mean_power;
    assert!(after < 0.9 * before, "power {before} -> {after}");
}

#[test]
fn step_decay_shrinks_only_the_primal_learning_rate() {
    // lr = 1e-300 leaves every parameter bit-identical, so V never improves and the learning
    // rate decays at every validation (decay_patience = 1); the dual step stays η_μ.
    let train = data(8, 10);
    let val = data(4, 11);
    let params = TrainParams { lr: 1e-300, lr_dual: 0.3, n_steps: 4, eval_every: 1, decay_patience: 1, ..quick() };
    let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), params, 2, &train, 3).unwrap();
    let report = t.train(&train, &val, &mut ChaCha8Rng::seed_from_u64(1)).unwrap();
    assert_eq!(report.n_decays, 4, "{report:?}");
    assert!((t.learning_rate() - 1e-300 * 0.5f64.powi(4)).abs() < 1e-310);
    assert_eq!(report.points.len(), 5);
    assert!(report.points.iter().all(|p| p.duals.len() == 2 && p.kappas.len() == 2));
    assert_eq!(report.points.last().unwrap().duals, t.duals());
    // After the four decays a step still moves the duals by the full η_μ (ô − ε).
    let before = t.duals().to_vec();
    let batch: Vec<System> = train.iter().map(System::from).collect();
    let r = t.step(&batch).unwrap();
    for (g, mu0) in before.iter().enumerate() {
        let want = (mu0 + 0.3 * (r.outage[g] - 0.1)).clamp(0.0, 100.0);
        assert!((t.duals()[g] - want).abs() < 1e-12, "g{g}: {} vs {want}", t.duals()[g]);
    }
}

#[test]
fn dual_step_follows_the_signal_of_the_loss() {
    let train = data(12, 12);
    let batch: Vec<System> = train.iter().map(System::from).collect();
    let mut discriminates = false;
    for loss in [ConstraintLoss::default(), ConstraintLoss::Quantile] {
        let params = TrainParams { loss: loss.clone(), lr_dual: 0.7, mu_init: 0.5, ..quick() };
        let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), params, 2, &train, 4).unwrap();
        // The batch outage is the exact outage of the network before the step.
        let before = t.evaluate(&train).unwrap();
        let r = t.step(&batch).unwrap();
        assert_eq!(r.n_masked, 0);
        for g in 0..2 {
            assert!((r.outage[g] - before.outage[g]).abs() < 1e-12, "{r:?} vs {before:?}");
            let delta = match loss {
                ConstraintLoss::Annealing { .. } => r.outage[g] - 0.1,
                ConstraintLoss::Quantile => r.constraint[g],
            };
            let mu = (0.5 + 0.7 * delta).clamp(0.0, 100.0);
            assert!((t.duals()[g] - mu).abs() < 1e-12, "{loss:?} g{g}: {} vs {mu}", t.duals()[g]);
            discriminates |= (r.outage[g] - 0.1 - r.constraint[g]).abs() > 1e-3;
        }
    }
    assert!(discriminates, "quantile and exact outage coincide: the test cannot tell them apart");
}

#[test]
fn dual_lower_bound_lets_an_over_fulfilled_group_go_negative() {
    let train = data(12, 12);
    let batch: Vec<System> = train.iter().map(System::from).collect();
    // ε = 0.9: the batch outage is far below ε, so the dual step is negative.
    for mu_min in [0.0, -1.0, -0.01] {
        let constraint_form =
            if mu_min < 0.0 { ConstraintForm::Equality { mu_min } } else { ConstraintForm::Inequality };
        let params = TrainParams { epsilon: 0.9, lr_dual: 0.7, mu_init: 0.0, constraint_form, ..quick() };
        let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), params, 2, &train, 4).unwrap();
        let r = t.step(&batch).unwrap();
        for g in 0..2 {
            assert!(r.outage[g] < 0.9, "{r:?}");
            let want = (0.7 * (r.outage[g] - 0.9)).max(mu_min);
            assert!((t.duals()[g] - want).abs() < 1e-12, "mu_min {mu_min} g{g}: {} vs {want}", t.duals()[g]);
            assert!(if mu_min < -0.7 { t.duals()[g] < -0.01 } else { t.duals()[g] == mu_min });
        }
    }
    for bad in [0.0, 0.1, f64::NAN, -f64::INFINITY] {
        let constraint_form = ConstraintForm::Equality { mu_min: bad };
        assert!(
            matches!(
                TrainParams { constraint_form, ..quick() }.check(),
                Err(Error::InvalidParameter { name: "constraint_form.mu_min", .. })
            ),
            "{bad}"
        );
    }
    let p: TrainParams = serde_json::from_str(r#"{"constraint_form": {"equality": {"mu_min": -1.0}}}"#).unwrap();
    assert_eq!(p.constraint_form, ConstraintForm::Equality { mu_min: -1.0 });
}

#[test]
fn hostile_batch_never_yields_non_finite_parameters() {
    let mut train = data(6, 4);
    train[0].h_est[0].fill(beamlab_linalg_ops::c64::new(0.0, 0.0)); // zero estimate
    train[1].targets = vec![1e12; 3]; // absurd targets
    train[2].h[1][0] = beamlab_linalg_ops::c64::new(f64::NAN, 0.0); // corrupted truth
    train[3].h_est[2].mapv_inplace(|z| z * 1e120); // overflowing estimate
    train[4].zeta = 0.0;
    for loss in [ConstraintLoss::default(), ConstraintLoss::Quantile] {
        let params = TrainParams { lr: 10.0, clip_percentile: 100.0, loss, ..quick() };
        let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), params, 2, &train, 5).unwrap();
        let batch: Vec<System> = train.iter().map(System::from).collect();
        for _ in 0..3 {
            let r = t.step(&batch).unwrap();
            assert!(r.n_masked >= 2, "{r:?}");
            assert!(all_finite(&t.vars).unwrap());
            assert!(t.duals().iter().chain(t.kappas()).all(|x| x.is_finite()));
        }
    }
}

#[test]
fn infeasible_instances_get_only_the_recovery_gradient() {
    let mut train = data(2, 8);
    for inst in &mut train {
        inst.targets = vec![1e9; 3];
    }
    let batch: Vec<System> = train.iter().map(System::from).collect();
    let masked = TrainParams { infeasible_penalty: 0.0, ..quick() };
    let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), masked, 2, &train, 5).unwrap();
    let r = t.step(&batch).unwrap();
    assert!(r.skipped && r.n_masked == 2, "{r:?}");
    let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), quick(), 2, &train, 5).unwrap();
    let before = coefficients(t.model(), &train[0]).unwrap().1;
    assert!(!t.step(&batch).unwrap().skipped);
    let after = coefficients(t.model(), &train[0]).unwrap().1;
    assert!(before != after);
}

fn stat_data(n: usize, seed: u64, n_samples: usize) -> Vec<StatInstance> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sc = Scenario { angular_spread_deg: 5.0, ..Scenario::default() };
    (0..n).map(|i| crate::data::draw_stat_instance(&sc, [1, 4][i % 2], n_samples, i % 2, &mut rng).unwrap()).collect()
}

fn stat_trainer(params: TrainParams, train: &[StatInstance], seed: u64, two: bool, kb: f64) -> Trainer {
    let st = UnrollSettings { softmin_sharpness: kb, ..settings(100.0) };
    Trainer::statistical(&GcnConfig::default(), st, params, 2, train, seed, two).unwrap()
}

/// The system step's coefficient gradients (both networks' heads) against central
/// differences of `L = Σ_t (Σ_k g_tk d_tk + g_P P_t)` with the analog selection fixed.
#[test]
fn statistical_system_gradient_matches_finite_differences() {
    let systems = stat_data(6, 31, 3);
    for two in [false, true] {
        let t = stat_trainer(quick(), &systems, 3, two, 0.0);
        let mut checked = 0;
        for sys in &systems {
            let view = System::from(sys);
            let heads = t.heads(view).unwrap();
            assert_eq!(heads.heads.len(), if two { 4 } else { 1 });
            let fwd = t.forward_system(view, &heads);
            let outs: Vec<_> = fwd
                .samples
                .iter()
                .zip(&heads.of_sample)
                .map(|(o, &h)| o.as_ref().ok().map(|o| (heads.heads[h].0.clone(), heads.heads[h].1.clone(), o.clone())))
                .collect();
            if outs.iter().any(Option::is_none) {
                continue;
            }
            let gm: Vec<Vec<f64>> =
                (0..3).map(|s| (0..3).map(|k| 0.3 * (s as f64 + 1.0) - 0.2 * k as f64).collect()).collect();
            let gp = 0.04;
            let grads = t.backward_system(view, &heads, &fwd.steps, &outs, &gm, &[gp; 3]).unwrap();
            let (selection, analog) = {
                let o = outs[0].as_ref().unwrap();
                (o.2.selection.clone(), o.2.analog.clone())
            };
            // The loss with every sample's coefficients given by `coeffs_of(sample)`.
            let loss = |coeffs_of: &dyn Fn(usize) -> Array2<f64>| -> f64 {
                sys.samples
                    .iter()
                    .enumerate()
                    .map(|(s, sample)| {
                        let o =
                            evaluate_analog(sample, &coeffs_of(s), analog.clone(), &selection, &t.settings).unwrap();
                        o.margin_db.iter().zip(&gm[s]).map(|(d, g)| d * g).sum::<f64>() + gp * o.power()
                    })
                    .sum()
            };
            for (h, (_, c)) in heads.heads.iter().enumerate() {
                let uses = |s: usize| heads.of_sample[s] == h;
                if !(0..3).any(uses) {
                    // The analog head of the 2GCN: no gradient with the selection fixed.
                    assert!(grads[h].is_none(), "head {h} has a gradient without straight-through");
                    continue;
                }
                let an = grads[h].as_ref().unwrap();
                for ((u, i), &g) in an.indexed_iter() {
                    let step = 1e-6 * c[[u, i]];
                    let at = |delta: f64| {
                        let mut cp = c.clone();
                        cp[[u, i]] += delta;
                        loss(&|s| if uses(s) { cp.clone() } else { heads.heads[heads.of_sample[s]].1.clone() })
                    };
                    let fd = (at(step) - at(-step)) / (2.0 * step);
                    let rel = (fd - g).abs() / fd.abs().max(1e-2);
                    assert!(rel < 1e-5, "two {two} head {h} c[{u},{i}]: fd {fd} vs {g} (rel {rel:e})");
                }
            }
            checked += 1;
        }
        assert!(checked >= 2, "only {checked} systems with every sample feasible");
    }
}

/// `∂L/∂A*` summed over the samples (the input of the straight-through path) against central
/// differences of the system loss moving the common `A` of all samples.
#[test]
fn statistical_analog_gradient_is_the_sum_over_samples() {
    let systems = stat_data(4, 32, 3);
    let t = stat_trainer(quick(), &systems, 3, true, 5.0);
    let sys = &systems[0];
    let heads = t.heads(System::from(sys)).unwrap();
    let fwd = t.forward_system(System::from(sys), &heads);
    let outs: Vec<&UnrolledOutput> = fwd.samples.iter().map(|o| o.as_ref().unwrap()).collect();
    let gm = [0.4, -0.3, 0.2];
    let mut d_a = Array2::<c64>::zeros(outs[0].analog.dim());
    for (sample, o) in sys.samples.iter().zip(&outs) {
        d_a += &backward(sample, o, &gm, 0.05).unwrap().analog;
    }
    let loss = |a: &Array2<c64>| -> f64 {
        sys.samples
            .iter()
            .zip(&outs)
            .map(|(sample, o)| {
                let e = evaluate_analog(sample, &o.coeffs, a.clone(), &o.selection, &t.settings).unwrap();
                e.margin_db.iter().zip(&gm).map(|(d, g)| d * g).sum::<f64>() + 0.05 * e.power()
            })
            .sum()
    };
    for seed in 0..2 {
        let e = crate::util::testutil::rand_mat(16, 5, 90 + seed);
        let step = 1e-6;
        let a0 = &outs[0].analog;
        let fd = (loss(&(a0 + &e.mapv(|z| z * step))) - loss(&(a0 - &e.mapv(|z| z * step)))) / (2.0 * step);
        let an = 2.0 * d_a.iter().zip(e.iter()).map(|(g, d)| (g.conj() * d).re).sum::<f64>();
        assert!((fd - an).abs() < 1e-5 * fd.abs().max(1e-2), "fd {fd} vs {an}");
    }
    // The step routes it through the straight-through path to the analog head.
    let outs_t: Vec<_> = fwd
        .samples
        .iter()
        .zip(&heads.of_sample)
        .map(|(o, &h)| o.as_ref().ok().map(|o| (heads.heads[h].0.clone(), heads.heads[h].1.clone(), o.clone())))
        .collect();
    assert!(!fwd.steps.is_empty(), "the selection recorded no trials");
    let grads =
        t.backward_system(System::from(sys), &heads, &fwd.steps, &outs_t, &vec![gm.to_vec(); 3], &[0.05; 3]).unwrap();
    let mut sel = outs[0].clone();
    sel.coeffs.clone_from(&heads.heads[0].1);
    sel.steps.clone_from(&fwd.steps);
    let expected = straight_through_gradient_cov(&sys.r_hat, sys.targets(), &sel, &d_a, &t.settings).unwrap();
    let got = grads[0].as_ref().unwrap();
    assert!(expected.iter().any(|x| x.abs() > 1e-9), "{expected}");
    assert!(got.iter().zip(&expected).all(|(a, b)| (a - b).abs() <= 1e-12 * b.abs().max(1.0)), "{got} vs {expected}");
}

#[test]
fn hostile_statistical_batch_never_yields_non_finite_parameters() {
    let mut systems = stat_data(6, 33, 3);
    let zero = beamlab_linalg_ops::c64::new(0.0, 0.0);
    systems[0].r_hat[0].fill(zero); // zero statistics
    for s in &mut systems[0].samples {
        s.h_est[0].fill(zero);
    }
    for s in &mut systems[1].samples {
        s.targets = vec![1e12; 3]; // absurd targets
    }
    systems[2].samples[1].h[1][0] = beamlab_linalg_ops::c64::new(f64::NAN, 0.0); // corrupted truth
    systems[3].r_hat[2].mapv_inplace(|z| z * 1e120); // overflowing statistics
    systems[3].samples[0].h_est[2].mapv_inplace(|z| z * 1e120);
    systems[4].r_hat[1][[0, 0]] = beamlab_linalg_ops::c64::new(f64::NAN, 0.0); // corrupted statistics
    for s in &mut systems[5].samples {
        s.zeta = 0.0;
    }
    for two in [false, true] {
        for loss in [ConstraintLoss::default(), ConstraintLoss::Quantile] {
            let params = TrainParams { lr: 10.0, clip_percentile: 100.0, loss: loss.clone(), ..quick() };
            let mut t = stat_trainer(params, &systems, 5, two, 5.0);
            let batch: Vec<System> = systems.iter().map(System::from).collect();
            for _ in 0..3 {
                let r = t.step(&batch).unwrap();
                assert!(r.n_masked >= 4, "{two} {loss:?}: {r:?}");
                assert!(t.var_maps().into_iter().all(|m| all_finite(m).unwrap()));
                assert!(t.duals().iter().chain(t.kappas()).all(|x| x.is_finite()));
            }
        }
    }
}

#[test]
fn statistical_training_is_deterministic_and_checkpoints_both_networks() {
    let train = stat_data(8, 34, 3);
    let val = stat_data(4, 35, 3);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| {
            let mut t = stat_trainer(quick(), &train, 9, true, 5.0);
            let report = t.train(&train, &val, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
            (t, report)
        })
    };
    let (t, report) = run(2);
    let (t1, report1) = run(1);
    assert_eq!(report, report1, "thread count changed the training run");
    assert_eq!(report.points.len(), 3);
    assert!(report.n_skipped < report.n_steps, "{report:?}");
    let outs = |t: &Trainer| -> Vec<(Vec<usize>, Vec<f64>)> {
        t.infer_statistical(&val[0])
            .unwrap()
            .into_iter()
            .filter_map(Result::ok)
            .map(|o| (o.selection, o.powers))
            .collect()
    };
    assert_eq!(outs(&t), outs(&t1));
    assert!(!outs(&t).is_empty());
    // The restored parameters give the best validation metric.
    let best = report.points.iter().map(|p| p.metric).fold(f64::INFINITY, f64::min);
    let now = t.evaluate(&val).unwrap().metric(1000.0, 0.1);
    assert!((now - best).abs() < 1e-9 * best.abs().max(1.0), "restored {now} vs best {best}");
    // Checkpoint round trip of both networks (weights and both feature statistics) into a
    // trainer with another seed and other training data (hence other statistics).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("2gcn.safetensors");
    t.save(&path).unwrap();
    let other = stat_trainer(quick(), &val, 99, true, 5.0);
    assert_ne!(outs(&other), outs(&t));
    other.load(&path).unwrap();
    assert_eq!(outs(&other), outs(&t));
    // A one-network checkpoint does not fit the two-network model, nor an instance model.
    let single = stat_trainer(quick(), &train, 9, false, 5.0);
    let p1 = dir.path().join("gcn.safetensors");
    single.save(&p1).unwrap();
    assert!(other.load(&p1).is_err());
    assert!(single.load(&path).is_err());
    // Systems of the wrong kind are typed errors.
    assert!(matches!(
        single.evaluate(&data(2, 1)),
        Err(Error::WrongCsiKind { expected: CsiKind::Statistical, found: CsiKind::Instantaneous })
    ));
    let inst_trainer = Trainer::new(&GcnConfig::default(), settings(100.0), quick(), 2, &data(4, 1), 1).unwrap();
    assert!(matches!(
        inst_trainer.evaluate(&val),
        Err(Error::WrongCsiKind { expected: CsiKind::Instantaneous, found: CsiKind::Statistical })
    ));
    assert!(matches!(
        crate::LearnedHbf::new(single, 1.0),
        Err(Error::WrongCsiKind { expected: CsiKind::Statistical, found: CsiKind::Instantaneous })
    ));
    assert!(
        Trainer::statistical(&GcnConfig::default(), settings(100.0), quick(), 2, &[], 1, false).is_err(),
        "empty training set"
    );
}

#[test]
fn param_averaging_validates_the_average_and_trains_the_iterate() {
    let train = data(8, 6);
    let val = data(6, 7);
    let params = |beta| TrainParams {
        n_steps: 2,
        batch_size: 8,
        eval_every: 1,
        lr: 3e-2,
        param_averaging: beta,
        ..TrainParams::default()
    };
    let beta = 0.5;
    let run = |b| {
        let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), params(b), 2, &train, 9).unwrap();
        let r = t.train(&train, &val, &mut ChaCha8Rng::seed_from_u64(3)).unwrap();
        r.points.iter().map(|p| p.metric).collect::<Vec<_>>()
    };
    let (plain, averaged) = (run(None), run(Some(beta)));
    // Replay the iterates by hand: the same two batches (the whole set each time, in the
    // order the training loop shuffles it).
    let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), params(None), 2, &train, 9).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut average = snapshot(&t.vars).unwrap();
    for step in 1..=2 {
        let mut perm: Vec<usize> = (0..train.len()).collect();
        perm.shuffle(&mut rng);
        let batch: Vec<System> = perm.iter().map(|&i| System::from(&train[i])).collect();
        t.step(&batch).unwrap();
        let iterate = snapshot(&t.vars).unwrap();
        let metric_of = |vars| {
            restore(&t.vars, vars).unwrap();
            t.evaluate(&val).unwrap().metric(1000.0, 0.1)
        };
        for ((_, a), (_, x)) in average.iter_mut().zip(&iterate) {
            *a = ((&*a * beta).unwrap() + (x * (1.0 - beta)).unwrap()).unwrap();
        }
        let (m_iterate, m_average) = (metric_of(&iterate), metric_of(&average));
        restore(&t.vars, &iterate).unwrap(); // training continues from the iterate
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(1.0);
        assert!(close(plain[step], m_iterate), "step {step}: {} vs {m_iterate}", plain[step]);
        assert!(close(averaged[step], m_average), "step {step}: {} vs {m_average}", averaged[step]);
        assert!(!close(m_iterate, m_average), "step {step}: averaging changed nothing");
    }
    for bad in [0.0, 1.0, f64::NAN] {
        assert!(matches!(
            Trainer::new(&GcnConfig::default(), settings(100.0), params(Some(bad)), 2, &train, 9),
            Err(Error::InvalidParameter { name: "param_averaging", .. })
        ));
    }
}

#[test]
fn train_loop_validates_restores_and_checkpoints() {
    let train = data(8, 6);
    let val = data(4, 7);
    let mut t = Trainer::new(&GcnConfig::default(), settings(100.0), quick(), 2, &train, 9).unwrap();
    let report = t.train(&train, &val, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    assert_eq!(report.points.len(), 3);
    let best = report.points.iter().map(|p| p.metric).fold(f64::INFINITY, f64::min);
    let now = t.evaluate(&val).unwrap().metric(1000.0, 0.1);
    assert!((now - best).abs() < 1e-9 * best.abs().max(1.0), "restored {now} vs best {best}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gcn.safetensors");
    t.save(&path).unwrap();
    let other = Trainer::new(&GcnConfig::default(), settings(100.0), quick(), 2, &train, 99).unwrap();
    other.load(&path).unwrap();
    assert_eq!(coefficients(other.model(), &val[0]).unwrap().1, coefficients(t.model(), &val[0]).unwrap().1);
    let fcn = GcnConfig { filter_order: 0, ..GcnConfig::default() };
    let small = Trainer::new(&fcn, settings(100.0), quick(), 2, &train, 1).unwrap();
    assert!(small.load(&path).is_err());
    for (bad, field) in [
        (GcnConfig { n_layers: 0, ..GcnConfig::default() }, "n_layers"),
        (GcnConfig { bound: 2.0, ..GcnConfig::default() }, "bound"),
    ] {
        let err = Trainer::new(&bad, settings(100.0), quick(), 2, &train, 1).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name, .. } if name == field), "{err}");
    }
    // A caller can tell which field is out of range, and the message shows the value.
    for (params, field, value) in [
        (TrainParams { epsilon: 1.5, ..quick() }, "epsilon", "1.5"),
        (TrainParams { lr: -1.0, ..quick() }, "lr", "-1"),
        (TrainParams { batch_size: 0, ..quick() }, "batch_size", "0"),
        (TrainParams { mu_init: 200.0, ..quick() }, "mu_init", "200"),
    ] {
        let err = Trainer::new(&GcnConfig::default(), settings(100.0), params, 2, &train, 1).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { name, .. } if name == field), "{err}");
        assert!(err.to_string().contains(field) && err.to_string().contains(value), "{err}");
    }
    assert!(matches!(t.train(&train, &val[..0], &mut ChaCha8Rng::seed_from_u64(0)), Err(Error::Empty { .. })));
}
