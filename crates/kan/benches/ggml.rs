//! Time per realisation (500 steps) of GGML-MLP and GGML-KAN at N = 64 and N = 256, M = K = 4,
//! SNR 10 dB, on one fixed Saleh–Valenzuela channel. Run with
//! `OPENBLAS_NUM_THREADS=1 RAYON_NUM_THREADS=2 cargo bench -p beamlab-kan --bench ggml`.
use std::time::Duration;

use beamlab_channel::{SvParams, saleh_valenzuela};
use beamlab_core::Problem;
use beamlab_kan::{GgmlParams, HybridSetup, NetKind, Objective, run_ggml};
use criterion::{Criterion, criterion_group, criterion_main};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("ggml");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    for n_tx in [64usize, 256] {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let h = saleh_valenzuela(&SvParams::default(), 4, n_tx, &mut rng).expect("channel");
        let problem = Problem::new(h, 0.1, 1.0).expect("problem");
        let setup = HybridSetup::from_problem(&problem, None).expect("setup");
        for (label, net) in [("mlp", NetKind::Mlp), ("kan", NetKind::Kan)] {
            let params = GgmlParams { net, ..GgmlParams::default() };
            group.bench_function(format!("{label}/n{n_tx}-m4-k4-l500"), |b| {
                b.iter(|| {
                    let mut rng = ChaCha8Rng::seed_from_u64(7);
                    run_ggml(&setup, Objective::Rate { var_weight: 0.2 }, &params, &mut rng).expect("ggml")
                });
            });
        }
    }
    group.finish();
}

// `criterion_group!` defines an undocumented `pub fn benches`; a private module keeps it out of
// the `missing_docs` lint.
mod group {
    use super::*;

    criterion_group!(benches, bench);
}
criterion_main!(group::benches);
