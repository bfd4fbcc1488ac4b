//! Finite-difference checks of the unrolled gradients and the test instances other modules share.

use super::*;
use crate::data::dft_codebook;
use crate::data::{CsiModel, Scenario, draw_instance};
use crate::util::adjoint;
use rand::SeedableRng;

pub(crate) fn settings(p_max: f64) -> UnrollSettings {
    UnrollSettings {
        codebook: dft_codebook(4, 4, 1, 1).unwrap(),
        n_rf: 5,
        n_selections: 5,
        power_budget: p_max,
        qos: QosOptions { tolerance: 1e-15, ..QosOptions::default() },
        softmin_sharpness: 5.0,
    }
}

pub(crate) fn instance(seed: u64) -> Instance {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    draw_instance(&Scenario::default(), &CsiModel::Pilot { lo_db: 5.0, hi_db: 5.0 }, 0, &mut rng).unwrap()
}

/// Central differences of `loss` in every coefficient (step `1e-6 c`) against `grad`:
/// relative error below `tol`, relative to `max(|fd|, floor)`.
fn check_coefficient_gradient(
    c: &Array2<f64>,
    grad: &Array2<f64>,
    loss: impl Fn(&Array2<f64>) -> f64,
    floor: f64,
    tol: f64,
    label: &str,
) {
    for ((u, i), &an) in grad.indexed_iter() {
        let t = 1e-6 * c[[u, i]];
        let mut cp = c.clone();
        cp[[u, i]] += t;
        let mut cm = c.clone();
        cm[[u, i]] -= t;
        let fd = (loss(&cp) - loss(&cm)) / (2.0 * t);
        let rel = (fd - an).abs() / fd.abs().max(floor);
        assert!(rel < tol, "{label} c[{u},{i}]: fd {fd} vs {an} (rel {rel:e})");
    }
}

fn coeffs() -> Array2<f64> {
    ndarray::array![[1.0, 0.1, 1.2, 0.05], [0.8, 0.2, 1.0, 0.1], [1.1, 0.05, 0.9, 0.2]]
}

#[test]
fn coefficient_gradient_matches_finite_differences() {
    let gm = [0.7, -0.4, 0.25];
    for (seed, p_max) in [(1, 100.0), (2, 100.0), (1, 0.05)] {
        let inst = instance(seed);
        let st = settings(p_max);
        let c = coeffs();
        let out = forward(&inst, &c, &st).unwrap();
        assert_eq!(out.scale < 1.0, p_max < 1.0, "projection activity, scale {}", out.scale);
        let loss = |c: &Array2<f64>| {
            let o = evaluate_selection(&inst, c, &out.selection, &st).unwrap();
            o.margin_db.iter().zip(&gm).map(|(d, g)| d * g).sum::<f64>() + 0.3 * o.power()
        };
        let dc = coefficient_gradient(&inst, &out, &gm, 0.3).unwrap();
        check_coefficient_gradient(&c, &dc, loss, 1e-2, 1e-5, &format!("seed {seed} P {p_max}"));
    }
}

/// Full-rank covariance chain rule vs central differences of
/// `L(c) = Σ_k Re tr(G^S_k A^H R̃^S_k(c) A + G^I_k A^H R̃^I_k(c) A)` with fixed Hermitian `G`.
#[test]
fn covariance_coefficient_chain_matches_finite_differences() {
    use crate::util::outer;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let (n, m, k) = (6, 3, 3);
    let mut cvec = |len: usize| -> Array1<c64> {
        Array1::from_shape_fn(len, |_| {
            c64::new(rand::Rng::random_range(&mut rng, -1.0..1.0), rand::Rng::random_range(&mut rng, -1.0..1.0))
        })
    };
    let mut cov = || -> Array2<c64> {
        let mut r = Array2::<c64>::zeros((n, n));
        for _ in 0..4 {
            let v = cvec(n);
            r += &outer(v.view(), v.view());
        }
        r
    };
    let r: Vec<Array2<c64>> = (0..k).map(|_| cov()).collect();
    let mut herm = || -> Array2<c64> {
        let mut g = Array2::<c64>::zeros((m, m));
        for s in [1.0, -0.7] {
            let v = cvec(m);
            g.scaled_add(c64::new(s, 0.0), &outer(v.view(), v.view()));
        }
        g
    };
    let g = QosGradient {
        wanted: (0..k).map(|_| herm()).collect(),
        interference: (0..k).map(|_| herm()).collect(),
        phi: Array2::zeros((m, m)),
    };
    let a = Array2::from_shape_fn((n, m), |(i, j)| c64::new((i as f64 + 1.0).sin(), (j as f64 * i as f64).cos()));
    let ah = adjoint(&a);
    let loss = |c: &Array2<f64>| -> f64 {
        let (s, i) = virtual_channels_cov(&r, c).unwrap();
        let tr = |g: &Array2<c64>, e: &Array2<c64>| g.iter().zip(e.t().iter()).map(|(p, q)| (p * q).re).sum::<f64>();
        (0..k).map(|u| tr(&g.wanted[u], &ah.dot(&s[u]).dot(&a)) + tr(&g.interference[u], &ah.dot(&i[u]).dot(&a))).sum()
    };
    let c = coeffs();
    let dc = coefficient_chain_cov(&r, &a, &g);
    check_coefficient_gradient(&c, &dc, loss, 1e-2, 1e-5, "covariance chain");
    // ∂L/∂A*: for L real, dL = 2 Re Σ conj(∂L/∂A*) ∘ dA.
    let da = analog_chain_cov(&r, &a, &c, &g).unwrap();
    let loss_a = |a: &Array2<c64>| -> f64 {
        let (s, i) = virtual_channels_cov(&r, &c).unwrap();
        let ah = adjoint(a);
        let tr = |g: &Array2<c64>, e: &Array2<c64>| g.iter().zip(e.t().iter()).map(|(p, q)| (p * q).re).sum::<f64>();
        (0..k).map(|u| tr(&g.wanted[u], &ah.dot(&s[u]).dot(a)) + tr(&g.interference[u], &ah.dot(&i[u]).dot(a))).sum()
    };
    for (idx, dir) in [(0usize, c64::new(1.0, 0.0)), (7, c64::new(0.0, 1.0)), (13, c64::new(0.6, -0.8))] {
        let (p, q) = (idx / m, idx % m);
        let t = 1e-6;
        let mut ap = a.clone();
        ap[[p, q]] += dir * t;
        let mut am = a.clone();
        am[[p, q]] -= dir * t;
        let fd = (loss_a(&ap) - loss_a(&am)) / (2.0 * t);
        let an = 2.0 * (da[[p, q]].conj() * dir).re;
        let rel = (fd - an).abs() / fd.abs().max(1e-2);
        assert!(rel < 1e-5, "A[{p},{q}] dir {dir}: fd {fd} vs {an} (rel {rel:e})");
    }
    assert!(analog_chain_cov(&r[..2], &a, &c, &g).is_err());
    // Rank-one covariances reproduce the estimate-based chain.
    let inst = instance(3);
    let a = Array2::from_shape_fn((inst.h_est[0].len(), m), |(i, j)| c64::new(((i + j) as f64).cos(), 0.3 * i as f64));
    let d1 = coefficient_chain(&inst.h_est, &a, &g);
    let d2 = coefficient_chain_cov(&rank_one_covariances(&inst.h_est), &a, &g);
    let scale = d1.iter().fold(1.0f64, |mx, x| mx.max(x.abs()));
    assert!(d1.iter().zip(&d2).all(|(x, y)| (x - y).abs() <= 1e-12 * scale), "{d1} vs {d2}");
    assert!(virtual_channels_cov(&[Array2::zeros((2, 3))], &Array2::ones((1, 4))).is_err());
    // The covariance selection on rank-one covariances is the estimate-based selection.
    let st = settings(100.0);
    let c = coeffs();
    let s1 = select(&inst, &c, &st, false).unwrap();
    let s2 = select_cov(&rank_one_covariances(&inst.h_est), &inst.targets, &c, &st, false).unwrap();
    assert_eq!(s1.selection, s2.selection);
    // Straight-through on rank-one covariances matches the estimate-based one.
    let out = forward(&inst, &c, &st).unwrap();
    let d_a =
        Array2::from_shape_fn(out.analog.dim(), |(i, j)| c64::new((i as f64 * 0.7).sin(), (j as f64 + 0.5).cos()));
    let g1 = straight_through_gradient(&inst, &out, &d_a, &st).unwrap();
    let g2 = straight_through_gradient_cov(&rank_one_covariances(&inst.h_est), &inst.targets, &out, &d_a, &st).unwrap();
    let scale = g1.iter().fold(1e-12f64, |mx, x| mx.max(x.abs()));
    assert!(g1.iter().any(|x| *x != 0.0), "straight-through gradient vanished: {g1}");
    assert!(g1.iter().zip(&g2).all(|(x, y)| (x - y).abs() <= 1e-9 * scale), "{g1} vs {g2}");
}

#[test]
fn analog_gradient_matches_finite_differences() {
    let gm = [0.5, 0.3, -0.6];
    for (seed, p_max) in [(4, 100.0), (5, 0.05)] {
        let inst = instance(seed);
        let st = settings(p_max);
        let c = coeffs();
        let out = forward(&inst, &c, &st).unwrap();
        let back = backward(&inst, &out, &gm, 0.3).unwrap();
        let loss = |a: Array2<c64>| {
            let o = evaluate_analog(&inst, &c, a, &out.selection, &st).unwrap();
            o.margin_db.iter().zip(&gm).map(|(d, g)| d * g).sum::<f64>() + 0.3 * o.power()
        };
        for dseed in 0..3 {
            let e = crate::util::testutil::rand_mat(16, 5, 40 + dseed);
            let t = 1e-6;
            let fd = (loss(&out.analog + &e.mapv(|z| z * t)) - loss(&out.analog - &e.mapv(|z| z * t))) / (2.0 * t);
            let an = 2.0 * back.analog.iter().zip(e.iter()).map(|(g, d)| (g.conj() * d).re).sum::<f64>();
            let rel = (fd - an).abs() / fd.abs().max(1e-2);
            assert!(rel < 1e-5, "seed {seed}: fd {fd} vs {an} (rel {rel:e})");
        }
    }
}

#[test]
fn straight_through_gradient_matches_the_relaxed_softmin_objective() {
    // R(c) = Σ_m Σ_i π_i(P(c)) g_i with the trial selections and g held fixed: its gradient
    // is exactly what the straight-through path injects.
    let inst = instance(6);
    let st = settings(100.0);
    let c = coeffs();
    let out = forward(&inst, &c, &st).unwrap();
    assert_eq!(out.steps.len(), 5);
    let back = backward(&inst, &out, &[0.5, 0.3, -0.6], 0.3).unwrap();
    let st_grad = straight_through_gradient(&inst, &out, &back.analog, &st).unwrap();
    assert!(st_grad.iter().any(|x| x.abs() > 1e-8), "{st_grad:?}");
    let relaxed = |c: &Array2<f64>| -> f64 {
        let (wanted, interference) = virtual_channels(&inst.h_est, c).unwrap();
        relaxed_softmin(&wanted, &interference, &inst.targets, &out.steps, &back.analog, &st)
    };
    check_coefficient_gradient(&c, &st_grad, relaxed, 1e-3, 1e-4, "straight-through");
    let w = softmin_weights(&[2.0, 1.0, f64::INFINITY], 5.0);
    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12 && w[2] == 0.0 && w[1] > w[0]);
}

/// Full-rank statistical CSI: the straight-through gradient of a selection made on `R̂`
/// ([`select_cov`]) is the exact gradient of the relaxed softmin objective
/// `R(c) = Σ_m Σ_i π_i(P(c)) 2 Re(c_i^H ∂L/∂a_m*)` built from the virtual channels of `R̂`.
#[test]
fn straight_through_gradient_cov_matches_the_relaxed_softmin_objective_for_full_rank_covariances() {
    let sc = Scenario { angular_spread_deg: 20.0, target_db: (0.0, 3.0), ..Scenario::default() };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(21);
    let st = settings(100.0);
    let c = coeffs();
    // A system whose statistical virtual problem is feasible (full-rank R̂ from 8 samples
    // with L = 4 kept coefficients).
    let (sys, greedy) = (0..20)
        .find_map(|_| {
            let sys = crate::data::draw_stat_instance(&sc, 4, 8, 0, &mut rng).unwrap();
            let g = select_cov(&sys.r_hat, sys.targets(), &c, &st, true).ok()?;
            Some((sys, g))
        })
        .expect("a statistically feasible system");
    // Rank > 1 (PSD: tr(R)² > ‖R‖_F² unless R is rank one): not the rank-one case.
    for r in &sys.r_hat {
        let fro: f64 = r.iter().map(|z| z.norm_sqr()).sum();
        let tr: f64 = r.diag().iter().map(|z| z.re).sum();
        assert!(tr * tr > 1.5 * fro, "R̂ is (nearly) rank one: tr² {} vs ‖R‖² {fro}", tr * tr);
    }
    assert_eq!(greedy.steps.len(), 5);
    let a = st.codebook.select(Axis(1), &greedy.selection);
    let mut out = evaluate_analog(&sys.samples[0], &c, a, &greedy.selection, &st).unwrap();
    out.steps = greedy.steps.clone();
    let d_a = crate::util::testutil::rand_mat(16, 5, 77);
    let st_grad = straight_through_gradient_cov(&sys.r_hat, sys.targets(), &out, &d_a, &st).unwrap();
    assert!(st_grad.iter().any(|x| x.abs() > 1e-6), "{st_grad}");
    let relaxed = |c: &Array2<f64>| -> f64 {
        let (wanted, interference) = virtual_channels_cov(&sys.r_hat, c).unwrap();
        relaxed_softmin(&wanted, &interference, sys.targets(), &out.steps, &d_a, &st)
    };
    let scale = st_grad.iter().fold(0.0f64, |mx, x| mx.max(x.abs()));
    check_coefficient_gradient(&c, &st_grad, relaxed, 1e-3 * scale, 1e-5, "full-rank straight-through");
}

/// The relaxed softmin objective `R = Σ_m Σ_i π_i(P) 2 Re(c_i^H ∂L/∂a_m*)` over the last greedy
/// step of every RF chain, with trial powers `P` from the virtual channels and the trial
/// selections held fixed: its gradient in the coefficients is what the straight-through path
/// injects.
fn relaxed_softmin(
    wanted: &[Array2<c64>],
    interference: &[Array2<c64>],
    targets: &[f64],
    steps: &[GreedyStep],
    d_analog: &Array2<c64>,
    st: &UnrollSettings,
) -> f64 {
    let n_rf = d_analog.ncols();
    let mut total = 0.0;
    for m in 0..n_rf {
        let step = steps.iter().rev().find(|s| s.chain == m).unwrap();
        let powers: Vec<f64> = step
            .trials
            .iter()
            .map(|t| {
                let a = st.codebook.select(Axis(1), &t.selection);
                let sys = QosSystem::through_analog(&a, wanted, interference, targets.to_vec()).unwrap();
                solve_qos(&sys, &st.qos, None).map_or(f64::INFINITY, |s| s.uplink_sum())
            })
            .collect();
        let pi = softmin_weights(&powers, st.softmin_sharpness);
        for (p, t) in pi.iter().zip(&step.trials) {
            let cw = st.codebook.column(t.codeword);
            total += p * 2.0 * cw.iter().zip(d_analog.column(m)).map(|(a, b)| a.conj() * b).sum::<c64>().re;
        }
    }
    total
}

fn perfect_csi(seed: u64) -> (Instance, Array2<f64>) {
    let mut inst = instance(seed);
    inst.h_est = inst.h.clone();
    (inst, Array2::from_shape_fn((3, 4), |(_, i)| if i % 2 == 0 { 1.0 } else { 0.0 }))
}

#[test]
fn fully_digital_perfect_coefficients_on_perfect_csi_meet_targets() {
    let (inst, c) = perfect_csi(3);
    let out = forward_fully_digital(&inst, &c, &settings(1e6)).unwrap();
    assert_eq!((out.analog.dim(), out.selection.len(), out.steps.len()), ((16, 16), 16, 0));
    assert!(out.margin_db.iter().all(|d| d.abs() < 1e-8), "{:?}", out.margin_db);
    let same = forward_arch(Architecture::FullyDigital, &inst, &c, &settings(1e6), true).unwrap();
    assert_eq!(same.powers, out.powers);
}

#[test]
fn fully_digital_coefficient_gradient_matches_finite_differences() {
    let gm = [0.7, -0.4, 0.25];
    for (seed, p_max) in [(1, 100.0), (2, 100.0), (1, 0.05)] {
        let inst = instance(seed);
        let st = settings(p_max);
        let c = coeffs();
        let out = forward_fully_digital(&inst, &c, &st).unwrap();
        assert_eq!(out.scale < 1.0, p_max < 1.0, "projection activity, scale {}", out.scale);
        let loss = |c: &Array2<f64>| {
            let o = forward_fully_digital(&inst, c, &st).unwrap();
            o.margin_db.iter().zip(&gm).map(|(d, g)| d * g).sum::<f64>() + 0.3 * o.power()
        };
        let dc = coefficient_gradient(&inst, &out, &gm, 0.3).unwrap();
        check_coefficient_gradient(&c, &dc, loss, 1e-2, 1e-5, &format!("seed {seed} P {p_max}"));
    }
}

#[test]
fn fully_digital_never_needs_more_power_than_hybrid_on_perfect_csi() {
    // With an orthonormal codebook (O = 1) A^H A = I_M, so a hybrid design (A, w_k, p_k) is the
    // fully digital design (A w_k, p_k) with ‖A w_k‖ = 1, the same SINRs and the same power:
    // the fully digital feasible set contains the hybrid one and its optimum is never larger.
    let st = settings(1e6);
    let gram = adjoint(&st.codebook).dot(&st.codebook);
    assert!((&gram - &Array2::<c64>::eye(16)).iter().all(|z| z.norm() < 1e-12));
    let mut strictly = 0;
    for seed in 0..6 {
        let (inst, c) = perfect_csi(100 + seed);
        let fd = forward_fully_digital(&inst, &c, &st).unwrap().power();
        let hybrid = forward(&inst, &c, &st).unwrap().power();
        assert!(fd <= hybrid * (1.0 + 1e-9), "seed {seed}: fully digital {fd} > hybrid {hybrid}");
        strictly += usize::from(fd < hybrid * (1.0 - 1e-6));
    }
    assert!(strictly > 0, "the fully digital design never strictly better: suspicious");
}

#[test]
fn perfect_coefficients_on_perfect_csi_meet_targets() {
    // ĥ = h and c = (1, 0, 1, 0): the unrolled pass is G-HBF-perf without a cap: zero outage.
    let mut inst = instance(3);
    inst.h_est = inst.h.clone();
    let c = Array2::from_shape_fn((3, 4), |(_, i)| if i % 2 == 0 { 1.0 } else { 0.0 });
    let out = forward(&inst, &c, &settings(1e6)).unwrap();
    assert!(out.margin_db.iter().all(|d| d.abs() < 1e-8), "{:?}", out.margin_db);
    assert!(virtual_channels(&inst.h_est, &Array2::zeros((2, 4))).is_err());
    assert!(virtual_channels(&inst.h_est, &Array2::from_elem((3, 4), f64::NAN)).is_err());
}
