//! Criterion benchmarks of the classical precoders: WMMSE (three variants, see `bench_wmmse`), ZF
//! and RZF on i.i.d. Rayleigh channels at `P = 10`, unit noise
//! (SNR 10 dB).
//!
//! Ids carry the sizes: `wmmse/m64-k4-nk2` is `M = 64` transmit antennas, `K = 4` users with
//! `N_k = 2` receive antennas each. The channel comes from a fixed seed and is built outside the
//! timed closure; WMMSE's random initialisation is re-seeded with a constant seed on every
//! iteration, so each iteration does the same work. Run with `OPENBLAS_NUM_THREADS=1` for stable
//! numbers.

use std::hint::black_box;
use std::time::Duration;

use beamlab_baselines::{WmmseInit, WmmseParams, rzf, wmmse, zf};
use beamlab_core::Problem;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// `(M, K, N_k)` configurations.
const SIZES: [(usize, usize, usize); 2] = [(64, 4, 2), (160, 4, 2)];
/// Transmit power budget `P`.
const POWER: f64 = 10.0;
/// Noise power per user.
const NOISE: f64 = 1.0;
/// Seed of the channel.
const CHANNEL_SEED: u64 = 0x00be_a111;
/// Seed of WMMSE's random initialisation, reset on every timed iteration.
const INIT_SEED: u64 = 7;

fn problem(m: usize, k: usize, nk: usize) -> Problem {
    let mut rng = ChaCha8Rng::seed_from_u64(CHANNEL_SEED);
    let channel = beamlab_channel::rayleigh(k, nk, m, &mut rng).expect("valid channel sizes");
    Problem::new(channel, NOISE, POWER).expect("valid problem")
}

fn id(m: usize, k: usize, nk: usize) -> BenchmarkId {
    BenchmarkId::from_parameter(format!("m{m}-k{k}-nk{nk}"))
}

fn bench_wmmse(c: &mut Criterion) {
    // `wmmse`: the default (RZF start, tolerance 1e-3); `wmmse_random_start`: the GLNN paper's
    // random start; `wmmse_100it`: exactly 100 iterations (tolerance 0), the per-sample cost of
    // a WMMSE run to the iteration cap.
    let variants = [
        ("wmmse", WmmseParams::default()),
        ("wmmse_random_start", WmmseParams { init: WmmseInit::Random, ..WmmseParams::default() }),
        ("wmmse_100it", WmmseParams { tolerance: 0.0, max_n_iterations: 100, init: WmmseInit::Random }),
    ];
    for (name, params) in variants {
        let mut group = c.benchmark_group(name);
        for (m, k, nk) in SIZES {
            let p = problem(m, k, nk);
            group.bench_function(id(m, k, nk), |b| {
                b.iter(|| {
                    let mut rng = ChaCha8Rng::seed_from_u64(INIT_SEED);
                    wmmse(black_box(&p), black_box(&params), &mut rng).expect("wmmse")
                });
            });
        }
        group.finish();
    }
}

fn bench_zf(c: &mut Criterion) {
    let mut group = c.benchmark_group("zf");
    for (m, k, nk) in SIZES {
        let p = problem(m, k, nk);
        group.bench_function(id(m, k, nk), |b| b.iter(|| zf(black_box(&p)).expect("zf")));
    }
    group.finish();
}

fn bench_rzf(c: &mut Criterion) {
    let mut group = c.benchmark_group("rzf");
    for (m, k, nk) in SIZES {
        let p = problem(m, k, nk);
        group.bench_function(id(m, k, nk), |b| b.iter(|| rzf(black_box(&p), black_box(None)).expect("rzf")));
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
            .sample_size(30)
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1));
        targets = bench_wmmse, bench_zf, bench_rzf
    }
}
criterion_main!(group::benches);
