//! Criterion benchmark of the GLNN beamformer's per-sample cost (`Glnn::solve`, default
//! parameters: wired CfC with 30 units, 3 passes) on i.i.d. Rayleigh channels at `P = 10`, unit
//! noise.
//!
//! Ids carry the sizes: `glnn/m64-k4-nk2` is `M = 64` transmit antennas, `K = 4` users with
//! `N_k = 2` receive antennas each. GLNN is online (one network trained across samples), so one
//! `Glnn` is built outside the timed closure and warmed up on a few samples; each timed iteration
//! solves the next of a rotating set of pre-built problems from fixed seeds. Run with
//! `OPENBLAS_NUM_THREADS=1` for stable numbers.

use std::hint::black_box;
use std::time::Duration;

use beamlab_baselines::{Lagd, LagdParams, LagdSpace};
use beamlab_core::{Beamformer, Problem};
use beamlab_liquid_nn::{Glnn, GlnnParams};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// `(M, K, N_k)` configurations.
const SIZES: [(usize, usize, usize); 2] = [(64, 4, 2), (160, 4, 2)];
/// Transmit power budget `P`.
const POWER: f64 = 10.0;
/// Noise power per user.
const NOISE: f64 = 1.0;
/// Seed of the channels.
const CHANNEL_SEED: u64 = 0x00be_a111;
/// Problems in the rotating set.
const N_PROBLEMS: usize = 16;
/// Samples solved before timing starts.
const N_WARM_UP: usize = 4;

fn problems(m: usize, k: usize, nk: usize) -> Vec<Problem> {
    let mut rng = ChaCha8Rng::seed_from_u64(CHANNEL_SEED);
    (0..N_PROBLEMS)
        .map(|_| {
            let channel = beamlab_channel::rayleigh(k, nk, m, &mut rng).expect("valid channel sizes");
            Problem::new(channel, NOISE, POWER).expect("valid problem")
        })
        .collect()
}

fn bench_glnn(c: &mut Criterion) {
    let mut group = c.benchmark_group("glnn");
    for (m, k, nk) in SIZES {
        let ps = problems(m, k, nk);
        let mut glnn = Glnn::new(GlnnParams::default()).expect("valid parameters");
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for p in ps.iter().cycle().take(N_WARM_UP) {
            let _ = glnn.solve(p, &mut rng).expect("glnn");
        }
        let mut next = 0usize;
        group.bench_function(BenchmarkId::from_parameter(format!("m{m}-k{k}-nk{nk}")), |b| {
            b.iter(|| {
                let p = &ps[next % ps.len()];
                next += 1;
                glnn.solve(black_box(p), &mut rng).expect("glnn")
            });
        });
    }
    group.finish();
}

fn bench_lagd(c: &mut Criterion) {
    // LAGD trains a fresh network for 500 iterations per sample; fewer samples keep the run short.
    let mut group = c.benchmark_group("lagd");
    group.sample_size(10);
    for (m, k, nk) in SIZES {
        let ps = problems(m, k, nk);
        let mut lagd = Lagd { params: LagdParams { space: LagdSpace::BaseMatrix, ..LagdParams::default() } };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut next = 0usize;
        group.bench_function(BenchmarkId::from_parameter(format!("m{m}-k{k}-nk{nk}")), |b| {
            b.iter(|| {
                let p = &ps[next % ps.len()];
                next += 1;
                lagd.solve(black_box(p), &mut rng).expect("lagd")
            });
        });
    }
    group.finish();
}

// `criterion_group!` defines an undocumented `pub fn benches`; a private module keeps it out of
// the `missing_docs` lint.
mod group {
    use super::*;

    criterion_group! {
        name = benches;
        config = Criterion::default()
            .sample_size(20)
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1));
        targets = bench_glnn, bench_lagd
    }
}
criterion_main!(group::benches);
