//! Bad input never panics: every public entry point returns a typed error (property tests over
//! random shapes with NaN/Inf/zero injection, plus the named cases of the foundation issue).

use beamlab_baselines::{Mrt, Rzf, Wmmse, Zf};
use beamlab_core::{Beamformer, Channel, CoreError, Problem};
use beamlab_linalg_ops::{LinalgError, c64};
use ndarray::Array2;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn methods() -> Vec<Box<dyn Beamformer>> {
    vec![Box::new(Mrt), Box::new(Zf), Box::new(Rzf::default()), Box::new(Wmmse::default())]
}

fn special(code: u8) -> c64 {
    match code % 6 {
        0 => c64::new(f64::NAN, 0.0),
        1 => c64::new(0.0, f64::INFINITY),
        2 => c64::new(f64::NEG_INFINITY, 1.0),
        3 => c64::new(0.0, 0.0),
        4 => c64::new(1e300, -1e300),
        _ => c64::new(1e-300, 0.0),
    }
}

fn blocks(n_users: usize, n_rx: usize, n_tx: usize, vals: &[f64]) -> Vec<Array2<c64>> {
    let mut it = vals.iter().cycle();
    (0..n_users)
        .map(|_| {
            Array2::from_shape_fn((n_rx, n_tx), |_| {
                let re = *it.next().unwrap_or(&0.0);
                let im = *it.next().unwrap_or(&0.0);
                c64::new(re, im)
            })
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn solvers_never_panic(
        n_users in 0usize..5,
        n_rx in 0usize..3,
        n_tx in 0usize..6,
        vals in proptest::collection::vec(-3.0f64..3.0, 1..64),
        corrupt in proptest::option::of((0usize..64, any::<u8>())),
        power in prop_oneof![Just(-1.0), Just(0.0), Just(f64::NAN), Just(1e-12), 0.1f64..100.0],
        noise in prop_oneof![Just(0.0), Just(-1.0), Just(f64::INFINITY), 0.01f64..10.0],
    ) {
        let mut b = blocks(n_users, n_rx, n_tx, &vals);
        if let (Some((pos, code)), false) = (corrupt, b.is_empty() || b[0].is_empty()) {
            let k = pos % b.len();
            let idx = (pos / b.len()) % b[k].len();
            let (r, c) = (idx / b[k].ncols(), idx % b[k].ncols());
            b[k][[r, c]] = special(code);
        }
        // Library entry points: either Ok with finite numbers or a typed error.
        let w = Array2::<c64>::from_elem((n_tx, n_users), c64::new(0.1, 0.0));
        if let Ok(r) = beamlab_linalg_ops::user_rates(&b, w.view(), &vec![noise; n_users]) {
            prop_assert!(r.iter().all(|x| x.is_finite()));
        }
        let _ = beamlab_linalg_ops::wsr_gradient(&b, w.view(), &vec![noise; n_users], &vec![1.0; n_users]);
        let Ok(channel) = Channel::new(b) else { return Ok(()); };
        let Ok(problem) = Problem::new(channel, noise, power) else { return Ok(()); };
        for mut m in methods() {
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            if let Ok(sol) = m.solve(&problem, &mut rng) {
                let p = sol.precoder.total_power().expect("power");
                prop_assert!(p.is_finite() && p <= problem.power_budget * (1.0 + 1e-9), "{}: power {p}", m.name());
                let r = sol.precoder.rates(&problem.channel, &problem.noise_power).expect("rates");
                prop_assert!(r.iter().all(|x| x.is_finite() && *x >= 0.0), "{}: rates {r:?}", m.name());
            }
        }
    }
}

fn ok_blocks() -> Vec<Array2<c64>> {
    blocks(2, 2, 4, &[0.3, -1.2, 0.7, 2.0, -0.4, 0.9, 1.1, -0.8, 0.5])
}

#[test]
fn nan_and_inf_channels_are_rejected() {
    for bad in [c64::new(f64::NAN, 0.0), c64::new(0.0, f64::INFINITY)] {
        let mut b = ok_blocks();
        b[1][[0, 2]] = bad;
        let e = Channel::new(b.clone()).unwrap_err();
        assert!(matches!(e, CoreError::InvalidProblem(_)) && e.to_string().contains("user 1"), "{e}");
        let w = Array2::<c64>::zeros((4, 2));
        assert!(matches!(
            beamlab_linalg_ops::user_rates(&b, w.view(), &[1.0, 1.0]),
            Err(LinalgError::NonFinite { .. })
        ));
    }
}

#[test]
fn empty_and_mismatched_shapes_are_rejected() {
    assert!(Channel::new(vec![]).is_err());
    assert!(Channel::new(vec![Array2::zeros((0, 4))]).is_err());
    let mut b = ok_blocks();
    b[1] = Array2::zeros((2, 3));
    assert!(Channel::new(b).is_err());
    let h = ok_blocks();
    let w = Array2::<c64>::zeros((3, 2));
    assert!(matches!(
        beamlab_linalg_ops::user_rates(&h, w.view(), &[1.0, 1.0]),
        Err(LinalgError::ShapeMismatch { .. })
    ));
}

#[test]
fn zero_channels_and_bad_power_give_typed_errors() {
    let zero = Channel::new(vec![Array2::zeros((2, 4)); 2]).unwrap();
    let p = Problem::new(zero, 1.0, 1.0).unwrap();
    for mut m in methods() {
        let r = m.solve(&p, &mut ChaCha8Rng::seed_from_u64(0));
        assert!(r.is_err(), "{} accepted an all-zero channel", m.name());
    }
    let h = Channel::new(ok_blocks()).unwrap();
    for power in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(Problem::new(h.clone(), 1.0, power), Err(CoreError::InvalidProblem(_))));
    }
}

#[test]
fn zf_with_more_users_than_antennas_is_infeasible() {
    let h = Channel::new(blocks(5, 1, 4, &[0.3, -1.2, 0.7, 2.0, -0.4, 0.9, 1.1])).unwrap();
    let p = Problem::new(h, 1.0, 1.0).unwrap();
    let e = Zf.solve(&p, &mut ChaCha8Rng::seed_from_u64(0)).unwrap_err();
    assert!(matches!(e, CoreError::Infeasible(_)), "{e}");
    assert!(e.to_string().contains("antennas"), "{e}");
}
