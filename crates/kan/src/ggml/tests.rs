//! Tests of GGML.

use super::solver::{analog_forward, build_net, digital_forward, leaf};
use super::*;
use beamlab_candle_bridge::wirtinger_surrogate;
use beamlab_channel::{SvParams, saleh_valenzuela};
use beamlab_core::ErrorStats;
use beamlab_linalg_ops::PenalisedLoss;
use beamlab_linalg_ops::c64;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn problem(n_tx: usize, n_users: usize, seed: u64) -> Problem {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let h = saleh_valenzuela(&SvParams::default(), n_users, n_tx, &mut rng).unwrap();
    Problem::new(h, 0.1, 1.0).unwrap()
}

fn small(net: NetKind) -> GgmlParams {
    GgmlParams { net, n_steps: 50, hidden: 32, ..GgmlParams::default() }
}

#[test]
fn constraints_hold_and_the_objective_improves_over_the_zf_init() {
    for net in [NetKind::Mlp, NetKind::Kan] {
        for seed in 0..2 {
            let p = problem(16, 2, seed);
            let mut g = Ggml::new(small(net)).unwrap();
            let sol = g.solve(&p, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap();
            let Precoder::Hybrid { f, d } = &sol.precoder else { panic!("not hybrid") };
            assert_eq!(f.dim(), (16, 2));
            assert_eq!(d.dim(), (2, 2));
            assert!(f.iter().all(|z| (z.norm() - 1.0).abs() < 1e-12), "unit modulus violated");
            let power = sol.precoder.total_power().unwrap();
            assert!((power - 1.0).abs() < 1e-10, "power {power}");
            let tr = &sol.diagnostics.objective_trace;
            assert_eq!(tr.len(), 51);
            let rates = sol.precoder.rates(&p.channel, &p.noise_power).unwrap();
            assert!((rates.sum() / 2.0 - tr[50]).abs() < 1e-9, "trace does not match the returned iterate");
            assert!(tr[50] > tr[0] + 0.5, "{net:?} seed {seed}: no improvement over ZF init: {} -> {}", tr[0], tr[50]);
        }
    }
}

#[test]
fn same_seed_same_output_and_options_run() {
    let p = problem(8, 2, 3);
    let run = |params: GgmlParams, seed: u64| {
        let mut g = Ggml::new(params).unwrap();
        g.solve(&p, &mut ChaCha8Rng::seed_from_u64(seed)).unwrap()
    };
    for params in [
        GgmlParams { n_steps: 10, ..small(NetKind::Kan) },
        GgmlParams { n_steps: 10, precision: Precision::F64, ..small(NetKind::Mlp) },
        GgmlParams {
            n_steps: 10,
            gradient_input: GradientInput::Fresh,
            step_base: StepBase::Previous,
            input_scaling: InputScaling::Rms,
            output: OutputChoice::Best,
            n_rf: Some(3),
            ..small(NetKind::Kan)
        },
    ] {
        let a = run(params.clone(), 1);
        assert_eq!(a.precoder, run(params.clone(), 1).precoder, "not deterministic: {params:?}");
        assert_ne!(a.precoder, run(params.clone(), 2).precoder, "seed ignored");
        if params.output == OutputChoice::Best {
            let tr = &a.diagnostics.objective_trace;
            let best = tr.iter().copied().fold(f64::MIN, f64::max);
            let r = a.precoder.rates(&p.channel, &p.noise_power).unwrap().sum() / 2.0;
            assert!((r - best).abs() < 1e-9);
        }
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let p = problem(8, 3, 1);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let err = |params: GgmlParams, p: &Problem, rng: &mut ChaCha8Rng| {
        let e = Ggml::new(params).unwrap().solve(p, rng).unwrap_err();
        let CoreError::Method { source, .. } = e else { panic!("wrong error kind {e}") };
        source.downcast::<KanError>().map(|b| *b).expect("not a KanError")
    };
    let few = GgmlParams { n_rf: Some(2), ..small(NetKind::Mlp) };
    assert!(matches!(err(few, &p, &mut rng), KanError::TooFewRfChains { n_rf: 2, n_users: 3 }));
    let many = GgmlParams { n_rf: Some(9), ..small(NetKind::Mlp) };
    assert!(matches!(err(many, &p, &mut rng), KanError::TooManyRfChains { n_rf: 9, n_tx: 8 }));
    let mut nan = p.clone();
    nan.noise_power[0] = f64::NAN;
    assert!(matches!(err(small(NetKind::Mlp), &nan, &mut rng), KanError::Core(_)));
    let mut zero_w = p.clone();
    zero_w.weights = vec![0.0; 3];
    assert!(matches!(err(small(NetKind::Mlp), &zero_w, &mut rng), KanError::ZeroUserWeights));
    let mut neg = p.clone();
    neg.error_stats = ErrorStats::Relative { delta: -0.1 };
    assert!(matches!(err(small(NetKind::Mlp), &neg, &mut rng), KanError::Core(_)));
    assert!(Ggml::new(GgmlParams { n_steps: 0, ..GgmlParams::default() }).is_err());
    assert!(Ggml::new(GgmlParams { lr_analog: -1.0, ..GgmlParams::default() }).is_err());
    // A non-finite channel cannot even be built.
    let bad = beamlab_core::Channel::new(vec![ndarray::array![[c64::new(f64::NAN, 0.0), c64::new(1.0, 0.0)]]]);
    assert!(bad.is_err());
}

/// The network-parameter gradient GGML's optimisers receive (analytic `∂L/∂W*` injected at
/// `W_t`, candle back-propagating through the nets, the unit-modulus projection and the power
/// normalisation) equals central finite differences of `L(F_t(θ), D_t(θ))` (f64).
#[test]
fn injected_step_gradient_matches_finite_differences() {
    let p = problem(6, 2, 9);
    let setup = HybridSetup::from_problem(&p, None).unwrap();
    let (h, noise, alpha) = (&setup.h, &setup.noise, &setup.alpha);
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let f0 = random_phase_analog(6, 2, &mut rng);
    let d0 = zf_digital(&beamlab_linalg_ops::stack_blocks(h).unwrap(), &f0, 1.0).unwrap();
    let obj = Objective::Rate { var_weight: 0.2 };
    let dt = DType::F64;
    for net in [NetKind::Mlp, NetKind::Kan] {
        let params = GgmlParams { net, hidden: 5, precision: Precision::F64, ..GgmlParams::default() };
        let apn = build_net(&params, 24, 1).unwrap();
        let dpn = build_net(&params, 8, 2).unwrap();
        let x_f: Vec<f64> = (0..24).map(|i| ((i * 7 % 11) as f64 / 11.0 - 0.5) * 1.5).collect();
        let x_d: Vec<f64> = (0..8).map(|i| ((i * 5 % 7) as f64 / 7.0 - 0.5) * 1.5).collect();
        let (fb_re, fb_im) = leaf(&f0, dt).unwrap();
        let (db_re, db_im) = leaf(&d0, dt).unwrap();
        let loss = || {
            let f_t = analog_forward(apn.as_ref(), &x_f, &fb_re, &fb_im, dt).unwrap();
            let (_, w_t) = digital_forward(dpn.as_ref(), &x_d, &db_re, &db_im, &f_t, 1.0, dt).unwrap();
            let w = w_t.to_array().unwrap();
            let r = beamlab_linalg_ops::user_rates(h, w.view(), noise).unwrap();
            (obj.value_and_rate_derivative(r.as_slice().unwrap(), alpha).0, w_t, w)
        };
        let (_, w_t, w) = loss();
        let r = beamlab_linalg_ops::user_rates(h, w.view(), noise).unwrap();
        let (_, c) = obj.value_and_rate_derivative(r.as_slice().unwrap(), alpha);
        let (_, g_w) = beamlab_linalg_ops::rate_gradient(h, w.view(), noise, &c).unwrap();
        let grads = wirtinger_surrogate(&w_t, &g_w).unwrap().backward().unwrap();
        let mut checked = 0;
        for var in apn.trainable_vars().into_iter().chain(dpn.trainable_vars()) {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            let g: Vec<f64> = g.flatten_all().unwrap().to_vec1().unwrap();
            let base: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            for idx in [0, base.len() / 3, base.len() - 1] {
                let set = |delta: f64| {
                    let mut b = base.clone();
                    b[idx] += delta;
                    var.set(&Tensor::from_vec(b, var.shape(), &Device::Cpu).unwrap()).unwrap();
                    loss().0
                };
                let e = 1e-6;
                let fd = (set(e) - set(-e)) / (2.0 * e);
                set(0.0);
                assert!((fd - g[idx]).abs() < 1e-6 * (1.0 + fd.abs()), "{net:?}: fd {fd} vs injected {}", g[idx]);
                checked += 1;
            }
        }
        assert!(checked >= 12, "only {checked} gradient entries checked");
    }
}

#[test]
fn params_parse_from_toml() {
    let p: GgmlParams = toml::from_str(
        "net = \"mlp\"\nn_rf = 6\nn_steps = 300\ngradient_input = \"fresh\"\nstep_base = \"previous\"\n\
         input_scaling = \"max_abs\"\noutput = \"best\"\nprecision = \"f64\"\n[kan]\ngrid_size = 8\n",
    )
    .unwrap();
    assert_eq!(p.net, NetKind::Mlp);
    assert_eq!((p.n_rf, p.n_steps, p.kan.grid_size, p.kan.spline_order), (Some(6), 300, 8, 3));
    assert_eq!(p.input_scaling, InputScaling::MaxAbs);
    assert_eq!(p.output, OutputChoice::Best);
    assert_eq!(p.precision, Precision::F64);
    assert_eq!(toml::from_str::<GgmlParams>("").unwrap(), GgmlParams::default());
    assert!(toml::from_str::<GgmlParams>("n_step = 3\n").is_err());
    assert!(toml::from_str::<GgmlParams>("[kan]\ngrid = 3\n").is_err());
}

#[test]
fn objectives_match_the_shared_loss_and_finite_differences() {
    let rates = [3.1, 5.2, 4.4, 6.0];
    let alpha = [0.25; 4];
    let (v, d) = Objective::Rate { var_weight: 0.2 }.value_and_rate_derivative(&rates, &alpha);
    let (v2, d2) = PenalisedLoss::ggml(4).value_and_rate_derivative(&rates);
    assert!((v - v2).abs() < 1e-12);
    for (a, b) in d.iter().zip(&d2) {
        assert!((a - b).abs() < 1e-12);
    }
    let alpha = [0.1, 0.2, 0.3, 0.4];
    for obj in [Objective::Rate { var_weight: 0.3 }, Objective::WorstCaseMmse { var_weight: 0.2 }] {
        let (_, d) = obj.value_and_rate_derivative(&rates, &alpha);
        for k in 0..4 {
            let e = 1e-6;
            let mut p = rates;
            p[k] += e;
            let mut m = rates;
            m[k] -= e;
            let fd =
                (obj.value_and_rate_derivative(&p, &alpha).0 - obj.value_and_rate_derivative(&m, &alpha).0) / (2.0 * e);
            assert!((fd - d[k]).abs() < 1e-8, "{obj:?} k={k}: fd {fd} vs {}", d[k]);
        }
    }
    // Worst-case MMSE value: Π e_k^α_k with e_k = 2^-R_k.
    let (v, _) = Objective::WorstCaseMmse { var_weight: 0.0 }.value_and_rate_derivative(&rates, &alpha);
    let expect = 2f64.powf(-rates.iter().zip(&alpha).map(|(r, a)| r * a).sum::<f64>());
    assert!((v - expect).abs() < 1e-14);
}
