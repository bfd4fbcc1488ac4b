//! The public surface is enough for a library user: build, train, save, load and run the learned
//! method and the greedy baseline through the crate root and its public modules only, and act on
//! typed errors.

use beamlab_core::{Beamformer, Channel, Problem};
use beamlab_gnn_unroll::data::{Instance, Scenario, dft_codebook, draw_instance, pilot_groups};
use beamlab_gnn_unroll::greedy::{GreedyOptions, rank_one_covariances};
use beamlab_gnn_unroll::{
    Error, GcnConfig, GreedyHbf, InfeasibleReason, LearnedHbf, QosOptions, QosSystem, TrainParams, Trainer,
    UnrollSettings, solve_qos,
};
use ndarray::{Array2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn data(n: usize, seed: u64) -> Vec<Instance> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let groups = pilot_groups(&[0.0, 10.0]);
    (0..n)
        .map(|i| draw_instance(&Scenario::default(), &groups[i % 2], i % 2, &mut rng).expect("valid scenario"))
        .collect()
}

fn settings() -> UnrollSettings {
    UnrollSettings {
        codebook: dft_codebook(4, 4, 1, 1).expect("codebook"),
        n_rf: 5,
        n_selections: 5,
        power_budget: 100.0,
        qos: QosOptions::default(),
        softmin_sharpness: 5.0,
    }
}

/// The problem a transmitter with the estimates of `inst` (unit noise) sees.
fn problem(inst: &Instance) -> Problem {
    let blocks = inst.h_est.iter().map(|h| h.mapv(|z| z.conj()).insert_axis(Axis(0))).collect();
    Problem::new(Channel::new(blocks).expect("finite channel"), 1.0, 100.0)
        .expect("valid problem")
        .with_sinr_targets(inst.targets.clone())
        .expect("one target per user")
}

#[test]
fn build_train_save_load_and_run_through_the_public_api() {
    let (train, val) = (data(8, 1), data(4, 2));
    let params = TrainParams { n_steps: 2, batch_size: 4, eval_every: 1, ..TrainParams::default() };
    let mut trainer = Trainer::new(&GcnConfig::default(), settings(), params.clone(), 2, &train, 3).expect("trainer");
    let report = trainer.train(&train, &val, &mut ChaCha8Rng::seed_from_u64(4)).expect("training");
    assert_eq!(report.n_steps, 2);
    assert_eq!(report.points.len(), 3);

    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("gcn.safetensors");
    trainer.save(&path).expect("save");
    let loaded = Trainer::new(&GcnConfig::default(), settings(), params, 2, &train, 99).expect("trainer");
    loaded.load(&path).expect("load");
    let (a, b) = (trainer.infer(&val[0]).expect("inference"), loaded.infer(&val[0]).expect("inference"));
    assert_eq!((a.selection.clone(), a.powers.clone()), (b.selection, b.powers));

    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut learned = LearnedHbf::new(loaded, val[0].zeta).expect("wrapper");
    let sol = learned.solve(&problem(&val[0]), &mut rng).expect("learned design");
    let w = sol.precoder.effective().expect("precoder");
    assert!((&w - &a.precoder()).mapv(|z| z.norm()).sum() < 1e-8 * a.precoder().mapv(|z| z.norm()).sum());

    let mut greedy =
        GreedyHbf { codebook: settings().codebook, n_rf: 5, margin: 1.0, options: GreedyOptions::default() };
    let sol = greedy.solve(&problem(&val[0]), &mut rng).expect("greedy design");
    let power: f64 = sol.precoder.effective().expect("precoder").iter().map(|z| z.norm_sqr()).sum();
    assert!(power > 0.0 && power <= 100.0 * (1.0 + 1e-9), "{power}");
}

#[test]
fn a_caller_can_act_on_typed_errors() {
    // A bad field is named: fix that key of the config.
    let bad = TrainParams { lr: 0.0, ..TrainParams::default() };
    let err = Trainer::new(&GcnConfig::default(), settings(), bad, 2, &data(4, 1), 1).unwrap_err();
    assert!(matches!(err, Error::InvalidParameter { name: "lr", .. }), "{err}");

    // Infeasible targets: lower them until the QoS problem is solved.
    let inst = &data(1, 3)[0];
    let a = settings().codebook.select(Axis(1), &[0, 1]);
    let ah = a.t().mapv(|z| z.conj());
    let s: Vec<Array2<_>> = rank_one_covariances(&inst.h).iter().map(|r| ah.dot(r).dot(&a)).collect();
    let mut gamma = 1e6;
    let solution = loop {
        let sys = QosSystem::new(s.clone(), s.clone(), Array2::eye(2), vec![gamma; s.len()]).expect("system");
        match solve_qos(&sys, &QosOptions::default(), None) {
            Ok(sol) => break sol,
            Err(Error::Infeasible { reason, .. }) => {
                assert!(matches!(
                    reason,
                    InfeasibleReason::PowerCap
                        | InfeasibleReason::IterationLimit
                        | InfeasibleReason::NoPositiveDownlink
                ));
                gamma /= 10.0;
                assert!(gamma > 1e-9, "never feasible");
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    };
    assert!(gamma < 1e6 && solution.uplink_sum() > 0.0, "the first targets must have been infeasible");
}
