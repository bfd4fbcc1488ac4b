//! Criterion benchmarks of the numerical kernels: per-user rates, the weighted-sum-rate gradient,
//! the GLNN penalised-loss gradient, and the Hermitian eigendecomposition and inverse at `n = 64`.
//!
//! Ids carry the sizes: `rates/m64-k4-nk2` is `M = 64` transmit antennas, `K = 4` users with
//! `N_k = 2` receive antennas each. Inputs are drawn once from a fixed seed outside the timed
//! closure. Run with `OPENBLAS_NUM_THREADS=1` for stable numbers.

use std::hint::black_box;
use std::time::Duration;

use beamlab_linalg_ops::{
    PenalisedLoss, c64, inverse, normalize_total_power, penalised_loss_gradient, self_adjoint_eigen, user_rates,
    wsr_gradient,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ndarray::Array2;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// `(M, K, N_k)` configurations benchmarked by the rate and gradient kernels.
const SIZES: [(usize, usize, usize); 2] = [(64, 4, 2), (160, 4, 2)];
/// Total transmit power `P` of the random precoder (noise power is 1, so SNR = 10 dB).
const POWER: f64 = 10.0;
/// Dimension of the square matrices for the decomposition benchmarks.
const N_DECOMP: usize = 64;
/// Seed of every random input.
const SEED: u64 = 0x00be_a111;

/// An `[rows × cols]` matrix of i.i.d. `CN(0, 1)` entries.
fn rand_mat(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Array2<c64> {
    Array2::from_shape_simple_fn((rows, cols), || {
        let re: f64 = StandardNormal.sample(rng);
        let im: f64 = StandardNormal.sample(rng);
        c64::new(re, im) * std::f64::consts::FRAC_1_SQRT_2
    })
}

/// A random system: `K` channel blocks `H_k: [N_k × M]`, a random precoder `W: [M × K]` with
/// `‖W‖_F² = P`, and unit noise per user.
struct System {
    h: Vec<Array2<c64>>,
    w: Array2<c64>,
    noise: Vec<f64>,
    weights: Vec<f64>,
}

impl System {
    fn new(m: usize, k: usize, nk: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(SEED);
        let h = (0..k).map(|_| rand_mat(nk, m, &mut rng)).collect();
        let w = normalize_total_power(rand_mat(m, k, &mut rng).view(), POWER).expect("non-zero precoder");
        Self { h, w, noise: vec![1.0; k], weights: vec![1.0; k] }
    }
}

fn id(m: usize, k: usize, nk: usize) -> BenchmarkId {
    BenchmarkId::from_parameter(format!("m{m}-k{k}-nk{nk}"))
}

fn bench_rates(c: &mut Criterion) {
    let mut group = c.benchmark_group("rates");
    for (m, k, nk) in SIZES {
        let s = System::new(m, k, nk);
        group.bench_function(id(m, k, nk), |b| {
            b.iter(|| user_rates(black_box(&s.h), black_box(s.w.view()), black_box(&s.noise)).expect("rates"));
        });
    }
    group.finish();
}

fn bench_wsr_gradient(c: &mut Criterion) {
    let mut group = c.benchmark_group("wsr_gradient");
    for (m, k, nk) in SIZES {
        let s = System::new(m, k, nk);
        group.bench_function(id(m, k, nk), |b| {
            b.iter(|| {
                wsr_gradient(black_box(&s.h), black_box(s.w.view()), black_box(&s.noise), black_box(&s.weights))
                    .expect("wsr gradient")
            });
        });
    }
    group.finish();
}

fn bench_penalised_loss_gradient(c: &mut Criterion) {
    let mut group = c.benchmark_group("penalised_loss_gradient");
    let loss = PenalisedLoss::glnn();
    for (m, k, nk) in SIZES {
        let s = System::new(m, k, nk);
        group.bench_function(id(m, k, nk), |b| {
            b.iter(|| {
                penalised_loss_gradient(black_box(&s.h), black_box(s.w.view()), black_box(&s.noise), black_box(&loss))
                    .expect("loss gradient")
            });
        });
    }
    group.finish();
}

fn bench_decompositions(c: &mut Criterion) {
    let n = N_DECOMP;
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    // Hermitian positive definite `A A^H + I` for the eigendecomposition.
    let a = rand_mat(n, n, &mut rng);
    let hpd = a.dot(&a.t().mapv(|z| z.conj())) + Array2::<c64>::eye(n);
    // A general (almost surely invertible) complex Gaussian matrix for the inverse.
    let general = rand_mat(n, n, &mut rng);

    let mut group = c.benchmark_group("self_adjoint_eigen");
    group.bench_function(BenchmarkId::from_parameter(format!("n{n}")), |b| {
        b.iter(|| self_adjoint_eigen(black_box(hpd.view())).expect("eigendecomposition"));
    });
    group.finish();

    let mut group = c.benchmark_group("inverse");
    group.bench_function(BenchmarkId::from_parameter(format!("n{n}")), |b| {
        b.iter(|| inverse(black_box(general.view())).expect("inverse"));
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
            .sample_size(30)
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1));
        targets = bench_rates, bench_wsr_gradient, bench_penalised_loss_gradient, bench_decompositions
    }
}
criterion_main!(group::benches);
