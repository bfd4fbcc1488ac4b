//! Boundary tests of channel prediction (`beamlab_liquid_nn::predict`): closed-form cases of the
//! trivial predictors, learning a single-path channel, determinism, bad input, the experiment.

use beamlab_core::experiment::FamilyExperiment;
use beamlab_linalg_ops::c64;
use beamlab_liquid_nn::predict::{
    ChannelPredictor, LastValue, LearnedPredictor, LinearExtrapolation, ModelConfig, PredictError, PredictionData,
    PredictionParams, PredictorKind, TrainConfig, evaluate, nmse_per_step, prediction_experiment, train_predictor,
};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const M: usize = 4;

/// Windows of `h_t[m] = a · e^{j(ω t − π m cos θ)}`, `t = 0 … window + horizon − 1`, with random
/// amplitude, phase, angle and `ω ∈ [−0.3, 0.3]` rad per sample (normalised Doppler ≤ 0.048).
fn single_path(n: usize, window: usize, horizon: usize, rng: &mut ChaCha8Rng) -> PredictionData {
    let mut data = PredictionData::default();
    for _ in 0..n {
        let a = c64::from_polar(rng.random_range(0.2..3.0), rng.random_range(0.0..std::f64::consts::TAU));
        let omega = rng.random_range(-0.3..0.3);
        let cos = rng.random_range(-1.0f64..1.0);
        let h = |t: usize, m: usize| a * c64::from_polar(1.0, omega * t as f64 - std::f64::consts::PI * m as f64 * cos);
        data.histories.push(Array2::from_shape_fn((window, M), |(t, m)| h(t, m)));
        data.futures.push(Array2::from_shape_fn((horizon, M), |(k, m)| h(window + k, m)));
    }
    data
}

fn model(kind: PredictorKind, window: usize, horizon: usize, hidden: usize) -> ModelConfig {
    ModelConfig { kind, window, horizon, n_antennas: M, hidden, ode_unfolds: 6 }
}

#[test]
fn trivial_predictors_are_exact_in_closed_form() {
    // Constant channel: both trivial predictors have zero error.
    let h0 = [c64::new(0.3, -1.2), c64::new(2.0, 0.5), c64::new(-0.7, 0.1), c64::new(0.0, 1.0)];
    let constant = Array2::from_shape_fn((20, M), |(_, m)| h0[m]);
    for p in [
        Box::new(LastValue::new(20, 5).unwrap()) as Box<dyn ChannelPredictor>,
        Box::new(LinearExtrapolation::new(20, 5).unwrap()),
    ] {
        let pred = p.predict(constant.view()).unwrap();
        assert_eq!(pred.dim(), (5, M));
        assert!(pred.iter().all(|x| *x == h0[0] || h0.contains(x)));
        assert_eq!(pred.row(4).to_vec(), h0.to_vec());
    }
    // Linear channel h_t = a + b t: linear extrapolation is exact; the last value's NMSE at step k
    // is Σ|k b|² / Σ|a + b (t + k)|² (closed form).
    let (a, b) =
        ([c64::new(1.0, 0.0), c64::new(0.5, 2.0), c64::new(-1.0, 1.0), c64::new(0.2, 0.3)], c64::new(0.03, -0.02));
    let line = |t: usize, m: usize| a[m] + b * (t as f64) * (m + 1) as f64;
    let hist = Array2::from_shape_fn((20, M), |(t, m)| line(t, m));
    let fut = Array2::from_shape_fn((5, M), |(k, m)| line(20 + k, m));
    let lin = LinearExtrapolation::new(20, 5).unwrap().predict(hist.view()).unwrap();
    assert!(lin.iter().zip(&fut).all(|(p, f)| (p - f).norm() < 1e-12));
    let last = LastValue::new(20, 5).unwrap().predict(hist.view()).unwrap();
    let nmse = nmse_per_step(&[last], std::slice::from_ref(&fut)).unwrap();
    for (k, got) in nmse.iter().enumerate() {
        let steps = (k + 1) as f64;
        let err: f64 = (0..M).map(|m| (b * steps * (m + 1) as f64).norm_sqr()).sum();
        let pow: f64 = (0..M).map(|m| line(20 + k, m).norm_sqr()).sum();
        assert!((got - err / pow).abs() < 1e-12 * (err / pow), "step {k}: {got} vs {}", err / pow);
    }
}

/// Every learned model learns to extrapolate one rotating path (history 10, horizon 5, 256
/// training windows, 40 epochs, hidden 16). Measured NMSE (dB) per step with these seeds:
/// MLP −23.7 … −15.2, LSTM −28.4 … −20.4, GRU −26.7 … −18.5, CfC −26.8 … −18.3,
/// LTC (lr 0.03) −24.7 … −11.7; last value −16.6 … −3.0. The bounds leave ≥ 2.5 dB of margin.
#[test]
fn learned_predictors_learn_a_single_path_channel() {
    let (window, horizon) = (10, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let train = single_path(256, window, horizon, &mut rng);
    let test = single_path(64, window, horizon, &mut rng);
    let last = evaluate(&LastValue::new(window, horizon).unwrap(), &test, 10.0).unwrap();
    // (kind, learning rate, bound at step 1, bound at every step) in dB.
    let cases = [
        (PredictorKind::Mlp, 1e-2, -20.0, -12.0),
        (PredictorKind::Lstm, 1e-2, -22.0, -15.0),
        (PredictorKind::Gru, 1e-2, -22.0, -15.0),
        (PredictorKind::Cfc, 1e-2, -22.0, -15.0),
        (PredictorKind::Ltc, 3e-2, -20.0, -9.0),
    ];
    for (kind, learning_rate, first, every) in cases {
        let cfg = TrainConfig { epochs: 40, batch_size: 32, learning_rate };
        let (p, report) = train_predictor(&model(kind, window, horizon, 16), &cfg, &train, 3).unwrap();
        let m = evaluate(p.as_ref(), &test, 10.0).unwrap();
        println!("{:<5} final loss {:.2e}  nmse_db {:?}", kind.name(), report.epoch_losses[39], m.nmse_db);
        assert!(m.nmse_db[0] <= first, "{}: {:?}", kind.name(), m.nmse_db);
        for (k, (got, lv)) in m.nmse_db.iter().zip(&last.nmse_db).enumerate() {
            assert!(*got <= every && *got <= lv - 3.0, "{} step {}: {got} dB (last value {lv} dB)", kind.name(), k + 1);
        }
        assert!(report.epoch_losses[39] < report.epoch_losses[0] / 3.0);
        // The SE loss of MRT on the prediction is small where the NMSE is.
        let mean_loss = m.se_loss[0].iter().sum::<f64>() / m.se_loss[0].len() as f64;
        assert!((0.0..0.05).contains(&mean_loss), "{}: se loss {mean_loss}", kind.name());
    }
}

#[test]
fn training_is_deterministic() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let train = single_path(48, 6, 2, &mut rng);
    let test = single_path(8, 6, 2, &mut rng);
    let cfg = TrainConfig { epochs: 2, batch_size: 16, learning_rate: 1e-2 };
    for kind in [PredictorKind::Gru, PredictorKind::Ltc, PredictorKind::Mlp] {
        let run = |seed| {
            let (p, _) = train_predictor(&model(kind, 6, 2, 6), &cfg, &train, seed).unwrap();
            p.predict_batch(&test.histories).unwrap()
        };
        let a = run(5);
        assert_eq!(a, run(5), "{}", kind.name());
        assert_ne!(a, run(6), "{}", kind.name());
    }
}

#[test]
fn bad_input_gives_typed_errors() {
    let short = Array2::from_elem((19, M), c64::new(1.0, 0.0));
    let mut nan = Array2::from_elem((20, M), c64::new(1.0, 0.0));
    nan[[19, 2]] = c64::new(f64::NAN, 0.0);
    let learned = LearnedPredictor::new(&model(PredictorKind::Cfc, 20, 5, 4), 0).unwrap();
    let predictors: [Box<dyn ChannelPredictor>; 3] = [
        Box::new(LastValue::new(20, 5).unwrap()),
        Box::new(LinearExtrapolation::new(20, 5).unwrap()),
        Box::new(learned),
    ];
    for p in &predictors {
        assert!(matches!(p.predict(short.view()), Err(PredictError::Shape(_))));
        assert!(matches!(p.predict(nan.view()), Err(PredictError::NonFinite(_))));
    }
    let wrong_m = Array2::from_elem((20, 3), c64::new(1.0, 0.0));
    assert!(matches!(predictors[2].predict(wrong_m.view()), Err(PredictError::Shape(_))));
    assert!(matches!(LastValue::new(20, 0), Err(PredictError::InvalidParameter(_))));
    assert!(matches!(LinearExtrapolation::new(1, 5), Err(PredictError::InvalidParameter(_))));
    assert!(matches!(
        LearnedPredictor::new(&model(PredictorKind::Ltc, 20, 0, 4), 0),
        Err(PredictError::InvalidParameter(_))
    ));
    assert!(matches!(
        LearnedPredictor::new(&model(PredictorKind::Linear, 20, 5, 4), 0),
        Err(PredictError::InvalidParameter(_))
    ));
    // Training data with NaN, or no data, or bad settings.
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let mut data = single_path(4, 20, 5, &mut rng);
    let cfg = TrainConfig { epochs: 1, batch_size: 2, learning_rate: 1e-2 };
    let gru = model(PredictorKind::Gru, 20, 5, 4);
    assert!(matches!(
        train_predictor(&gru, &TrainConfig { batch_size: 0, ..cfg }, &data, 0),
        Err(PredictError::InvalidParameter(_))
    ));
    assert!(matches!(
        train_predictor(&gru, &cfg, &PredictionData::default(), 0),
        Err(PredictError::InvalidParameter(_))
    ));
    data.futures[1][[0, 0]] = c64::new(f64::INFINITY, 0.0);
    assert!(matches!(train_predictor(&gru, &cfg, &data, 0), Err(PredictError::NonFinite(_))));
    data.histories[0][[3, 1]] = c64::new(0.0, f64::NAN);
    assert!(matches!(train_predictor(&gru, &cfg, &data, 0), Err(PredictError::NonFinite(_))));
}

#[test]
fn params_parse_strictly_and_validate() {
    let p: PredictionParams =
        toml::from_str("horizon = 5\npredictors = [\"ltc\", \"last_value\"]\nepochs = 3").unwrap();
    assert_eq!(p.horizon, 5);
    assert_eq!(p.predictors, vec![PredictorKind::Ltc, PredictorKind::LastValue]);
    assert_eq!(p.window, 20);
    assert_eq!(p.training(PredictorKind::Ltc).learning_rate, 0.03);
    let q: PredictionParams = toml::from_str("learning_rate = 0.002\n[learning_rates]\ngru = 0.01").unwrap();
    assert_eq!(q.training(PredictorKind::Gru).learning_rate, 0.01);
    assert_eq!(q.training(PredictorKind::Ltc).learning_rate, 0.002);
    let neg: PredictionParams = toml::from_str("[learning_rates]\ncfc = -1.0").unwrap();
    assert!(matches!(prediction_experiment(&neg), Err(PredictError::InvalidParameter(_))));
    assert!(toml::from_str::<PredictionParams>("horizn = 5").is_err());
    assert!(toml::from_str::<PredictionParams>("predictors = [\"transformer\"]").is_err());
    let ok = PredictionParams::default();
    assert!(ok.check().is_ok());
    for bad in [
        PredictionParams { horizon: 0, ..ok.clone() },
        PredictionParams { window: 1, ..ok.clone() },
        PredictionParams { predictors: vec![], ..ok.clone() },
        PredictionParams { predictors: vec![PredictorKind::Gru, PredictorKind::Gru], ..ok.clone() },
        PredictionParams { samples_per_trajectory: 25, ..ok.clone() },
        PredictionParams { learning_rate: f64::NAN, ..ok.clone() },
        PredictionParams { rate_snr_db: f64::INFINITY, ..ok.clone() },
        PredictionParams { speed_mps: -2.0, ..ok.clone() },
    ] {
        assert!(prediction_experiment(&bad).is_err(), "{bad:?}");
    }
}

#[test]
fn experiment_units_give_deterministic_rows() {
    let params = PredictionParams {
        predictors: vec![PredictorKind::LastValue, PredictorKind::Linear, PredictorKind::Gru],
        horizon: 3,
        n_train_trajectories: 4,
        n_test_trajectories: 2,
        samples_per_trajectory: 30,
        hidden: 4,
        epochs: 2,
        ..PredictionParams::default()
    };
    let exp = prediction_experiment(&params).unwrap();
    assert_eq!(exp.n_units(), 3);
    assert_eq!(exp.train_data().len(), 4 * 2);
    assert_eq!(exp.unit_label(2), "predictor gru");
    let rows = exp.run_unit(2, 9).unwrap();
    assert_eq!(rows, exp.run_unit(2, 9).unwrap());
    let count = |metric: &str| rows.iter().filter(|r| r.metric == metric).count();
    assert_eq!((count("nmse_db"), count("nmse"), count("se_loss"), count("train_loss")), (3, 3, 3, 2));
    assert!(rows.iter().all(|r| r.series == "GRU" && r.mean.is_finite()));
    // The trivial units ignore the seed; the SE loss is never negative.
    let lv = exp.run_unit(0, 1).unwrap();
    assert_eq!(lv, exp.run_unit(0, 2).unwrap());
    assert!(lv.iter().filter(|r| r.metric == "se_loss").all(|r| r.mean >= 0.0));
    // NMSE in dB and linear agree.
    for (d, l) in lv.iter().filter(|r| r.metric == "nmse_db").zip(lv.iter().filter(|r| r.metric == "nmse")) {
        assert!((d.mean - 10.0 * l.mean.log10()).abs() < 1e-12 && d.x == l.x);
    }
    assert!(exp.run_unit(3, 0).is_err());
}
