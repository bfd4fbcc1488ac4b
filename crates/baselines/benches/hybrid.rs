//! Criterion benchmarks of the hybrid precoding baselines: time per channel realisation on a
//! Saleh–Valenzuela MU-MISO channel (GGML's set-up: 3 clusters × 30 rays, 10° spread), `P = 1`,
//! SNR 10 dB, `M = K = 4`.
//!
//! Ids: `hybrid/<method>/n<N>-m<M>-k<K>`. MO-AltMin runs at `N = 64` and `N = 256` (the GGML
//! paper's Fig. 5 range); WMMSE-MO, Element-AltMax and MM-AltMin at `N = 64`. The times include
//! each method's fully digital target (WMMSE for MO-AltMin and MM-AltMin). The channel comes from a
//! fixed seed and is built outside the timed closure; the solver RNG is re-seeded with a constant
//! on every iteration, so each iteration does the same work. Run with `OPENBLAS_NUM_THREADS=1`.

use std::hint::black_box;
use std::time::Duration;

use beamlab_baselines::{
    ElementAltMaxParams, HybridWmmseMoParams, MmAltMinParams, MoAltMinParams, element_altmax, hybrid_wmmse_mo,
    mm_altmin, mo_altmin,
};
use beamlab_channel::{SvParams, saleh_valenzuela};
use beamlab_core::Problem;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Users `K` (= RF chains `M`).
const N_USERS: usize = 4;
/// Noise power for SNR 10 dB at `P = 1`.
const NOISE: f64 = 0.1;
/// Seed of the channel.
const CHANNEL_SEED: u64 = 0x00be_a112;
/// Seed of the solver's RNG, reset on every timed iteration.
const SOLVER_SEED: u64 = 7;

fn problem(n: usize) -> Problem {
    let mut rng = ChaCha8Rng::seed_from_u64(CHANNEL_SEED);
    let h = saleh_valenzuela(&SvParams::default(), N_USERS, n, &mut rng).expect("valid SV sizes");
    Problem::new(h, NOISE, 1.0).expect("valid problem")
}

fn id(method: &str, n: usize) -> BenchmarkId {
    BenchmarkId::new(method, format!("n{n}-m{N_USERS}-k{N_USERS}"))
}

fn bench_hybrid(c: &mut Criterion) {
    let mut group = c.benchmark_group("hybrid");
    for n in [64usize, 256] {
        let p = problem(n);
        group.bench_function(id("mo_altmin", n), |b| {
            b.iter(|| {
                let mut rng = ChaCha8Rng::seed_from_u64(SOLVER_SEED);
                mo_altmin(black_box(&p), &MoAltMinParams::default(), &mut rng).expect("mo_altmin")
            });
        });
    }
    let p = problem(64);
    group.bench_function(id("wmmse_mo", 64), |b| {
        b.iter(|| {
            let mut rng = ChaCha8Rng::seed_from_u64(SOLVER_SEED);
            hybrid_wmmse_mo(black_box(&p), &HybridWmmseMoParams::default(), &mut rng).expect("wmmse_mo")
        });
    });
    group.bench_function(id("element_altmax", 64), |b| {
        b.iter(|| {
            let mut rng = ChaCha8Rng::seed_from_u64(SOLVER_SEED);
            element_altmax(black_box(&p), &ElementAltMaxParams::default(), &mut rng).expect("element_altmax")
        });
    });
    group.bench_function(id("mm_altmin", 64), |b| {
        b.iter(|| {
            let mut rng = ChaCha8Rng::seed_from_u64(SOLVER_SEED);
            mm_altmin(black_box(&p), &MmAltMinParams::default(), &mut rng).expect("mm_altmin")
        });
    });
    group.finish();
}

// `criterion_group!` defines an undocumented `pub fn benches`; a private module keeps it out of
// the `missing_docs` lint.
mod group {
    use super::*;

    criterion_group! {
        name = benches;
        config = Criterion::default()
            .sample_size(10)
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1));
        targets = bench_hybrid
    }
}
criterion_main!(group::benches);
