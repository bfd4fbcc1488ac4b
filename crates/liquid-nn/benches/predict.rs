//! Criterion benchmark of the channel predictors (`predict`): one forward pass and one training
//! step (forward, backward, Adam) on a minibatch, for every learned model at the experiment's
//! sizes.
//!
//! Ids carry the sizes: `predict/train_step/ltc-w20-b32-n32` is window `W = 20`, batch 32,
//! 32 neurons / hidden units, `M = 4` antennas (8 features per step), horizon 10. Inputs are fixed
//! pseudo-random features built outside the timed closures.

use std::hint::black_box;
use std::time::Duration;

use beamlab_candle_bridge::candle_core::{Device, Tensor};
use beamlab_candle_bridge::{adam, step};
use beamlab_liquid_nn::predict::{LearnedPredictor, ModelConfig, PredictorKind};
use criterion::{Criterion, criterion_group, criterion_main};

const WINDOW: usize = 20;
const BATCH: usize = 32;
const HIDDEN: usize = 32;
const HORIZON: usize = 10;
const FEATURES: usize = 8;

/// Deterministic values in `[−1, 1)` (no RNG needed).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            2.0 * ((s >> 11) as f64 / (1u64 << 53) as f64) - 1.0
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("predict");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    let inputs =
        Tensor::from_vec(values(WINDOW * BATCH * FEATURES, 1), (WINDOW, BATCH, FEATURES), &Device::Cpu).expect("shape");
    let targets = Tensor::from_vec(values(BATCH * HORIZON * FEATURES, 2), (BATCH, HORIZON * FEATURES), &Device::Cpu)
        .expect("shape");
    for kind in [PredictorKind::Mlp, PredictorKind::Lstm, PredictorKind::Gru, PredictorKind::Cfc, PredictorKind::Ltc] {
        let config =
            ModelConfig { kind, window: WINDOW, horizon: HORIZON, n_antennas: 4, hidden: HIDDEN, ode_unfolds: 6 };
        let model = LearnedPredictor::new(&config, 7).expect("valid model");
        let id = format!("{}-w{WINDOW}-b{BATCH}-n{HIDDEN}", kind.name());
        group.bench_function(format!("forward/{id}"), |b| {
            b.iter(|| black_box(model.forward(black_box(&inputs)).expect("forward")))
        });
        let mut opt = adam(model.vars(), 1e-3).expect("optimiser");
        group.bench_function(format!("train_step/{id}"), |b| {
            b.iter(|| {
                let loss = (model.forward(&inputs).expect("forward") - &targets)
                    .and_then(|d| d.sqr())
                    .and_then(|d| d.mean_all())
                    .expect("loss");
                step(&mut opt, &loss).expect("step");
            })
        });
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
