//! Trains the CNN hybrid precoder (N = 64, M = K = 4, SNR 10 dB) and reports its per-user SE on
//! test channels (the ones of `ggml_quality`). Usage:
//! `cargo run --release -p beamlab-kan --example cnn_quality -- [n_train] [n_epochs] [n_test]`.
#![allow(clippy::unwrap_used)] // a measurement script: any failure should abort loudly.

use beamlab_channel::{SvParams, saleh_valenzuela};
use beamlab_core::{Beamformer, Problem, derive_seed};
use beamlab_kan::{CnnHybrid, CnnParams};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n_train: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4000);
    let n_epochs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let n_test: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(50);
    let params = CnnParams { n_train, n_epochs, ..CnnParams::default() };
    let t0 = std::time::Instant::now();
    let mut net = CnnHybrid::train(&params, &mut ChaCha8Rng::seed_from_u64(2024)).unwrap();
    println!("trained in {:.1} s; loss per epoch {:?}", t0.elapsed().as_secs_f64(), net.training_curve);
    let mut untrained = CnnHybrid::new(&params, 5).unwrap();
    let mut se0 = 0.0;
    for r in 0..n_test {
        let mut crng = ChaCha8Rng::seed_from_u64(derive_seed(7, &[r as u64]));
        let h = saleh_valenzuela(&SvParams::default(), 4, 64, &mut crng).unwrap();
        let problem = Problem::new(h, 0.1, 1.0).unwrap();
        se0 += untrained.solve(&problem, &mut crng).unwrap().diagnostics.objective_trace[0];
    }
    println!("untrained network (prior + small random corrections): {:.3}", se0 / n_test as f64);
    let (mut se, mut secs) = (0.0, 0.0);
    for r in 0..n_test {
        let mut crng = ChaCha8Rng::seed_from_u64(derive_seed(7, &[r as u64]));
        let h = saleh_valenzuela(&SvParams::default(), 4, 64, &mut crng).unwrap();
        let problem = Problem::new(h, 0.1, 1.0).unwrap();
        let t = std::time::Instant::now();
        let sol = net.solve(&problem, &mut crng).unwrap();
        secs += t.elapsed().as_secs_f64();
        se += sol.diagnostics.objective_trace[0];
        if r == 5 {
            println!("first 6 test channels: mean per-user SE {:.3}", se / 6.0);
        }
    }
    println!(
        "CNN: mean per-user SE over {n_test} test channels {:.3}; {:.2} ms per solve",
        se / n_test as f64,
        1e3 * secs / n_test as f64
    );
}
