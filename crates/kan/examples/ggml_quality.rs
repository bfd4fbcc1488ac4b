//! Quality check: GGML-MLP / GGML-KAN per-user SE vs fully digital ZF / WMMSE on SV channels.
//! Usage: `cargo run --release -p beamlab-kan --example ggml_quality -- [n_real] [n_tx] [n_steps] [variant...]`.
#![allow(clippy::unwrap_used)] // a measurement script: any failure should abort loudly.

use beamlab_baselines::{WmmseParams, wmmse, zf};
use beamlab_channel::{SvParams, saleh_valenzuela};
use beamlab_core::{Problem, derive_seed};
use beamlab_kan::{
    GgmlParams, GradientInput, HybridSetup, InputScaling, NetKind, Objective, Precision, StepBase, run_ggml,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n_real: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4);
    let n_tx: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(64);
    let n_steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(500);
    let variants: Vec<String> = if args.len() > 4 { args[4..].to_vec() } else { vec!["mlp".into(), "kan".into()] };
    let k = 4;
    for v in &variants {
        let mut p = GgmlParams { n_steps, ..GgmlParams::default() };
        for part in v.split('+') {
            match part {
                "mlp" => p.net = NetKind::Mlp,
                "kan" => p.net = NetKind::Kan,
                "fresh" => p.gradient_input = GradientInput::Fresh,
                "prev" => p.step_base = StepBase::Previous,
                "rms" => p.input_scaling = InputScaling::Rms,
                "max" => p.input_scaling = InputScaling::MaxAbs,
                "raw" => p.input_scaling = InputScaling::None,
                "f32" => p.precision = Precision::F32,
                "f64" => p.precision = Precision::F64,
                "hnorm" => p.kan.hidden_rms_norm = true,
                "nohnorm" => p.kan.hidden_rms_norm = false,
                "nos" => p.kan.standalone_spline_scaler = false,
                "scaler" => p.kan.standalone_spline_scaler = true,
                other => panic!("unknown variant part {other}"),
            }
        }
        let (mut fin, mut best, mut init, mut zfs, mut wm, mut secs) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        for r in 0..n_real {
            let mut crng = ChaCha8Rng::seed_from_u64(derive_seed(7, &[r as u64]));
            let h = saleh_valenzuela(&SvParams::default(), k, n_tx, &mut crng).unwrap();
            let problem = Problem::new(h, 0.1, 1.0).unwrap();
            let setup = HybridSetup::from_problem(&problem, None).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(11, &[r as u64]));
            let t0 = std::time::Instant::now();
            let out = run_ggml(&setup, Objective::Rate { var_weight: 0.2 }, &p, &mut rng).unwrap();
            secs += t0.elapsed().as_secs_f64();
            fin += out.se_trace.last().unwrap();
            best += out.se_trace[out.best_step];
            init += out.se_trace[0];
            let w = zf(&problem).unwrap();
            zfs +=
                beamlab_linalg_ops::user_rates(problem.channel.blocks(), w.view(), &problem.noise_power).unwrap().sum()
                    / k as f64;
            let (wsol, _) = wmmse(&problem, &WmmseParams::default(), &mut rng).unwrap();
            wm += beamlab_linalg_ops::user_rates(problem.channel.blocks(), wsol.view(), &problem.noise_power)
                .unwrap()
                .sum()
                / k as f64;
            if r == 0 {
                for n in &out.notes {
                    println!("  {v} note r0: {n}");
                }
                let tr = &out.se_trace;
                println!("  {v} final r0 (12 digits): {:.12}", tr_final(tr));
                println!(
                    "  {v} trace r0: step0 {:.3} 50 {:.3} 100 {:.3} 200 {:.3} last {:.3}",
                    tr[0],
                    tr.get(50).unwrap_or(&f64::NAN),
                    tr.get(100).unwrap_or(&f64::NAN),
                    tr.get(200).unwrap_or(&f64::NAN),
                    tr.last().unwrap()
                );
            }
        }
        let n = n_real as f64;
        println!(
            "{v}: N={n_tx} final {:.3} best {:.3} init {:.3} | ZF {:.3} WMMSE {:.3} | {:.2} s/realisation",
            fin / n,
            best / n,
            init / n,
            zfs / n,
            wm / n,
            secs / n
        );
    }
}

fn tr_final(t: &[f64]) -> f64 {
    t.last().copied().unwrap_or(f64::NAN)
}
