//! Criterion benchmarks of the classical parts of U-G-HBF: one baseband QoS solve
//! (`qos/m5-k4`, fixed analog matrix, the accelerated power iteration) and one full greedy-correction
//! run (`greedy/n16-m5-k4-t5`, 4×4 UPA, |C| = 16, M = 5, K = 4, T = 5 selections, SNR init),
//! on correlated UPA channels (σ = 10°) with targets drawn uniformly in [0, 10] dB from a fixed seed.
//! Run with `OPENBLAS_NUM_THREADS=1` for stable numbers.

use std::hint::black_box;

use beamlab_gnn_unroll::data::{Scenario, complex_normal, dft_codebook, psd_sqrt, upa_cov};
use beamlab_gnn_unroll::greedy::{GreedyOptions, greedy_hbf, rank_one_covariances, snr_init};
use beamlab_gnn_unroll::qos::{QosOptions, QosSystem, solve_qos};
use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::{Array1, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const SEED: u64 = 0x0b5e_55ed;

fn channels(k: usize, rng: &mut ChaCha8Rng) -> Vec<Array1<beamlab_linalg_ops::c64>> {
    let sc = Scenario::default();
    (0..k)
        .map(|_| {
            let r = upa_cov(4, 4, rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0), 10f64.to_radians());
            psd_sqrt(&r).expect("psd").dot(&complex_normal(sc.n_antennas.0 * sc.n_antennas.1, rng))
        })
        .collect()
}

fn bench_solvers(c: &mut Criterion) {
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let (k, m) = (4, 5);
    let h = channels(k, &mut rng);
    let r = rank_one_covariances(&h);
    let targets: Vec<f64> = (0..k).map(|_| 10f64.powf(rng.random_range(0.0..1.0))).collect();
    let codebook = dft_codebook(4, 4, 1, 1).expect("codebook");
    let init = snr_init(&codebook, &r, m).expect("init");
    let a = codebook.select(Axis(1), &init);
    let ah = a.t().mapv(|z| z.conj());
    let s: Vec<_> = r.iter().map(|x| ah.dot(x).dot(&a)).collect();
    let sys = QosSystem::new(s.clone(), s, ndarray::Array2::eye(m), targets.clone()).expect("system");
    let opts = QosOptions::default();
    c.bench_function("qos/m5-k4", |b| b.iter(|| black_box(solve_qos(black_box(&sys), &opts, None).ok())));
    let gopts = GreedyOptions { power_budget: None, ..GreedyOptions::default() };
    c.bench_function("greedy/n16-m5-k4-t5", |b| {
        b.iter(|| black_box(greedy_hbf(&codebook, &r, &r, black_box(&targets), &init, &gopts).ok()))
    });
}

// `criterion_group!` defines an undocumented `pub fn`; a private module keeps it out of the
// `missing_docs` lint.
mod group {
    use super::*;

    criterion_group! {
        name = benches;
        config = Criterion::default()
            .sample_size(30)
            .measurement_time(std::time::Duration::from_secs(3))
            .warm_up_time(std::time::Duration::from_secs(1));
        targets = bench_solvers
    }
}
criterion_main!(group::benches);
