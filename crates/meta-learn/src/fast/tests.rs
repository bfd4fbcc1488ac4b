//! The fast path against the candle oracle (values, every gradient entry, the online
//! adaptation) and against finite differences.

use super::*;
use crate::covnet::{CovNetConfig, combine};
use crate::maml::{BasisSelection, MbMaml, MbMamlConfig, selection_weights};
use crate::oracle::Oracle;
use beamlab_channel::unknown_error::{haar_unitary, sample_error_block};
use beamlab_channel::{UnknownErrorParams, rayleigh};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A block with unequal noise and weights and `P = 2`.
fn task(m: usize, k: usize, seed: u64) -> Task {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let h = rayleigh(k, 1, m, &mut rng).unwrap();
    let q = haar_unitary(m, &mut rng).unwrap();
    let b = sample_error_block(&h, &q, &UnknownErrorParams { error_level_db: 3.0, ..Default::default() }, &mut rng)
        .unwrap();
    let samples: Vec<_> = b.iter().map(|u| u.samples.clone()).collect();
    let h_true: Vec<_> = b.iter().map(|u| u.h_true.clone()).collect();
    let sys = SystemParams {
        noise: (0..k).map(|i| 0.05 + 0.05 * i as f64).collect(),
        weights: (0..k).map(|i| 1.0 + 0.5 * (i % 3) as f64).collect(),
        power: 2.0,
    };
    Task::new(&samples, Some(&h_true), &sys).unwrap()
}

/// Loss and gradient through the fast path at candle parameters.
fn fast_loss_and_grad(net: &CovNet, params: &[Tensor], task: &Task, kind: LossKind) -> (f64, Params) {
    let fast = FastNet::new(net);
    let ft = fast.task(task).unwrap();
    let theta = fast.flatten(params).unwrap();
    let mut g = Vec::new();
    let l = fast.loss_and_grad(&mut FastWorkspace::default(), &theta, &ft, kind, &mut g).unwrap();
    (l, fast.unflatten(&g).unwrap())
}

/// Parameters away from the initialisation (BatchNorm γ ≠ 1, β ≠ 0, a larger output layer).
fn params(net: &CovNet, seed: u64, scale: f64) -> Params {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let p = net.init_params(&mut rng).unwrap();
    let d = net.init_params(&mut rng).unwrap();
    combine(&[&p, &d], &[scale, 0.5]).unwrap()
}

fn flat(p: &[Tensor]) -> Vec<Vec<f64>> {
    p.iter().map(|t| t.flatten_all().unwrap().to_vec1::<f64>().unwrap()).collect()
}

/// Worst over tensors of max|a − b| / max(max|b|, 1e-6 · global max|b|).
fn rel_err(a: &[Tensor], b: &[Tensor]) -> f64 {
    let (fa, fb) = (flat(a), flat(b));
    let global = fb.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
    fa.iter()
        .zip(&fb)
        .map(|(x, y)| {
            let diff = x.iter().zip(y).fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
            let norm = y.iter().fold(0.0f64, |m, q| m.max(q.abs())).max(1e-6 * global);
            diff / norm
        })
        .fold(0.0, f64::max)
}

fn configs() -> Vec<CovNetConfig> {
    let small = |head| CovNetConfig { n_tx: 8, hidden: vec![16, 12], head, n_unroll: 4, ..Default::default() };
    vec![
        small(CovHead::FullRank),
        small(CovHead::Salr { rank: 2, density: 0.0 }),
        small(CovHead::Salr { rank: 2, density: 0.3 }),
        CovNetConfig { n_tx: 8, hidden: vec![10], batch_norm: false, n_unroll: 3, ..Default::default() },
        // K = 5 users (one block of four and a remainder in the MLP backward).
        CovNetConfig {
            n_tx: 6,
            hidden: vec![12, 9],
            head: CovHead::Salr { rank: 3, density: 0.5 },
            ..Default::default()
        },
        // The Table I setting: M = 32, 128/256/256, SALR r = 8, δ = 0.09, T = 10.
        CovNetConfig::default(),
    ]
}

/// The fast loss and gradient equal candle's autograd through the composed graph (the oracle)
/// for every head, both losses, with and without BatchNorm, `P ≠ 1`, unequal weights and noise.
#[test]
fn fast_gradient_equals_candle_autograd() {
    for cfg in configs() {
        let (m, k) = (
            cfg.n_tx,
            match cfg.n_tx {
                32 => 4,
                6 => 5,
                _ => 3,
            },
        );
        let net = CovNet::new(cfg.clone(), &Device::Cpu).unwrap();
        let oracle = Oracle::new(&net).unwrap();
        let p = params(&net, 11, 3.0);
        let t = task(m, k, 5);
        for kind in [LossKind::Support, LossKind::Query] {
            let (lc, gc) = oracle.loss_and_grad(&p, &t, kind).unwrap();
            let (lf, gf) = fast_loss_and_grad(&net, &p, &t, kind);
            assert!((lc - lf).abs() <= 1e-11 * lc.abs().max(1.0), "{:?} {kind:?}: {lc} vs {lf}", cfg.head);
            let err = rel_err(&gf, &gc);
            assert!(err <= 1e-9, "{:?} bn {} {kind:?}: gradient error {err:e}", cfg.head, cfg.batch_norm);
            // The forward-only loss (read from the tensors in place) and the precoder agree too.
            let fast = FastNet::new(&net);
            let ft = fast.task(&t).unwrap();
            let mut ws = FastWorkspace::default();
            let l2 = fast.loss_tensors(&mut ws, &p, &ft, kind).unwrap();
            assert!((l2 - lc).abs() <= 1e-11 * lc.abs().max(1.0));
            let theta = fast.flatten(&p).unwrap();
            let v = fast.precoder(&mut ws, &theta, &ft).unwrap();
            let vc = oracle.precoder(&p, &t).unwrap();
            assert_eq!(v, precoder_of(&net, &p, &t).unwrap());
            assert!(v.iter().zip(vc.iter()).all(|(a, b)| (a - b).norm() < 1e-10));
        }
    }
}

/// Central finite differences of the fast loss along random directions of the flat vector.
#[test]
fn fast_gradient_matches_finite_differences() {
    for cfg in configs().into_iter().take(5) {
        let net = CovNet::new(cfg.clone(), &Device::Cpu).unwrap();
        let fast = FastNet::new(&net);
        let t = fast.task(&task(cfg.n_tx, if cfg.n_tx == 6 { 5 } else { 3 }, 8)).unwrap();
        let theta = fast.flatten(&params(&net, 3, 3.0)).unwrap();
        let mut ws = FastWorkspace::default();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for kind in [LossKind::Support, LossKind::Query] {
            let mut g = Vec::new();
            fast.loss_and_grad(&mut ws, &theta, &t, kind, &mut g).unwrap();
            for _ in 0..2 {
                let dir: Vec<f64> = (0..theta.len()).map(|_| rng.random::<f64>() - 0.5).collect();
                let analytic: f64 = g.iter().zip(&dir).map(|(a, b)| a * b).sum();
                let eps = 1e-6;
                let mut at = |s: f64| {
                    let q: Vec<f64> = theta.iter().zip(&dir).map(|(a, b)| a + s * b).collect();
                    fast.loss(&mut ws, &q, &t, kind).unwrap()
                };
                let fd = (at(eps) - at(-eps)) / (2.0 * eps);
                assert!(
                    (fd - analytic).abs() < 1e-6 * (1.0 + fd.abs()),
                    "{:?} {kind:?}: fd {fd}, analytic {analytic}",
                    cfg.head
                );
            }
        }
    }
}

/// `MbMaml::adapt` (the production online adaptation) equals the same selection and SGD steps
/// computed with the oracle's losses and autograd gradients.
#[test]
fn adaptation_equals_the_oracle() {
    let base = CovNetConfig {
        n_tx: 8,
        hidden: vec![16, 16],
        head: CovHead::Salr { rank: 2, density: 0.3 },
        n_unroll: 4,
        ..Default::default()
    };
    let net = CovNet::new(base, &Device::Cpu).unwrap();
    let oracle = Oracle::new(&net).unwrap();
    let cfg = MbMamlConfig { n_bases: 3, n_inner_steps: 2, meta_lr: 1e-2, ..Default::default() };
    let mb = MbMaml::new(&net, cfg, &mut ChaCha8Rng::seed_from_u64(2)).unwrap();
    let t = task(8, 3, 21);
    let losses: Vec<f64> = mb.bases().iter().map(|b| oracle.loss(b, &t, LossKind::Support).unwrap()).collect();
    for sel in [BasisSelection::Argmin, BasisSelection::Interpolate] {
        let a = mb.adapt(&net, &t, 5, 0.01, sel).unwrap();
        let weights = match sel {
            BasisSelection::Argmin => {
                let best = losses.iter().enumerate().min_by(|x, y| x.1.total_cmp(y.1)).unwrap().0;
                (0..3).map(|i| if i == best { 1.0 } else { 0.0 }).collect::<Vec<_>>()
            }
            BasisSelection::Interpolate => selection_weights(&losses, cfg.temperature),
        };
        assert!(a.selection.iter().zip(&weights).all(|(x, y)| (x - y).abs() < 1e-12));
        let refs: Vec<&Params> = mb.bases().iter().collect();
        let mut theta = combine(&refs, &weights).unwrap();
        for step in 0..5 {
            let (l, g) = oracle.loss_and_grad(&theta, &t, LossKind::Support).unwrap();
            assert!((a.support_trace[step] - l).abs() < 1e-9 * l.abs(), "step {step}");
            theta = theta.iter().zip(&g).map(|(p, d)| (p - (d * 0.01).unwrap()).unwrap()).collect();
        }
        let err = rel_err(&a.params, &theta);
        assert!(err < 1e-9, "{sel:?}: {err:e}");
        // The parameters moved.
        assert!(rel_err(&a.params, &mb.bases()[0]) > 1e-6);
    }
}

/// `N = 1` (zero sample covariance): still equal to candle.
#[test]
fn single_sample_blocks_match_candle() {
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let h = rayleigh(3, 1, 6, &mut rng).unwrap();
    let q = haar_unitary(6, &mut rng).unwrap();
    let b = sample_error_block(&h, &q, &UnknownErrorParams { n_samples: 1, ..Default::default() }, &mut rng).unwrap();
    let samples: Vec<_> = b.iter().map(|u| u.samples.clone()).collect();
    let t = Task::new(&samples, None, &SystemParams::uniform(3, 0.05, 1.0)).unwrap();
    let cfg = CovNetConfig { n_tx: 6, hidden: vec![8], n_unroll: 3, ..Default::default() };
    let net = CovNet::new(cfg, &Device::Cpu).unwrap();
    let p = params(&net, 1, 2.0);
    let (lc, gc) = Oracle::new(&net).unwrap().loss_and_grad(&p, &t, LossKind::Support).unwrap();
    let (lf, gf) = fast_loss_and_grad(&net, &p, &t, LossKind::Support);
    assert!((lc - lf).abs() <= 1e-11 * lc.abs());
    assert!(rel_err(&gf, &gc) <= 1e-9);
}

/// The in-place SGD step gives the same bits as the gradient followed by `θ − g·lr`.
#[test]
fn in_place_sgd_step_equals_gradient_then_update() {
    for cfg in configs().into_iter().take(5) {
        let net = CovNet::new(cfg.clone(), &Device::Cpu).unwrap();
        let fast = FastNet::new(&net);
        let t = fast.task(&task(cfg.n_tx, if cfg.n_tx == 6 { 5 } else { 3 }, 12)).unwrap();
        let mut a = fast.flatten(&params(&net, 2, 3.0)).unwrap();
        let mut b = a.clone();
        let (mut ws, mut g) = (FastWorkspace::default(), Vec::new());
        for _ in 0..2 {
            let la = fast.sgd_step(&mut ws, &mut a, &t, LossKind::Query, 0.01).unwrap();
            let lb = fast.loss_and_grad(&mut ws, &b, &t, LossKind::Query, &mut g).unwrap();
            for (p, d) in b.iter_mut().zip(&g) {
                *p -= d * 0.01;
            }
            assert_eq!(la.to_bits(), lb.to_bits());
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{:?}", cfg.head);
        }
    }
}

#[test]
fn bad_inputs_are_rejected() {
    let net = CovNet::new(CovNetConfig { n_tx: 8, hidden: vec![4], ..Default::default() }, &Device::Cpu).unwrap();
    let fast = FastNet::new(&net);
    assert!(fast.task(&task(6, 3, 1)).is_err());
    let p = net.init_params(&mut ChaCha8Rng::seed_from_u64(0)).unwrap();
    assert!(fast.flatten(&p[..2]).is_err());
    let mut t = task(8, 3, 2);
    t.h_true = None;
    let ft = fast.task(&t).unwrap();
    let theta = fast.flatten(&p).unwrap();
    let mut ws = FastWorkspace::default();
    assert!(matches!(fast.loss(&mut ws, &theta, &ft, LossKind::Query), Err(MetaLearnError::MissingTrueChannels)));
    assert!(matches!(
        fast.loss(&mut ws, &theta[1..], &ft, LossKind::Support),
        Err(MetaLearnError::ShapeMismatch { .. })
    ));
    assert!(fast.unflatten(&theta[1..]).is_err());
    // BatchNorm with batch statistics needs two users.
    let one = task(8, 2, 3);
    let one = Task::new(&one.samples[..1], None, &SystemParams::uniform(1, 0.1, 1.0)).unwrap();
    assert!(matches!(fast.task(&one), Err(MetaLearnError::TooFewUsers { n_users: 1 })));
}
