//! Runs the Table 2 experiment (quick profile by default) and prints its rows.
//!
//! `cargo run --release -p beamlab-gnn-unroll --example outage_table [-- '<json params>' [unit [seed]]]`,
//! for example `-- '{"n_train": 2000, "n_val": 500, "n_test": 500}'`; `unit` runs only that unit,
//! `seed` (default 7) is the base of the unit seeds. Units run in parallel with rayon
//! would change nothing in the numbers (each depends only on its seed); here they run in order.

use beamlab_core::derive_seed;
use beamlab_core::experiment::FamilyExperiment;
use beamlab_gnn_unroll::{OutageTableParams, outage_table};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let params: OutageTableParams = match std::env::args().nth(1) {
        Some(json) => serde_json::from_str(&json)?,
        None => OutageTableParams::default(),
    };
    let only: Option<usize> = std::env::args().nth(2).and_then(|s| s.parse().ok());
    let base_seed: u64 = std::env::args().nth(3).and_then(|s| s.parse().ok()).unwrap_or(7);
    let exp = outage_table(params)?;
    for unit in 0..exp.n_units() {
        if only.is_some_and(|u| u != unit) {
            continue;
        }
        let start = std::time::Instant::now();
        let rows = exp.run_unit(unit, derive_seed(base_seed, &[unit as u64]))?;
        println!("== {} ({:.1} s)", exp.unit_label(unit), start.elapsed().as_secs_f64());
        for r in rows {
            println!("{:<22} {:<13} x={:<6} {:.4}", r.series, r.metric, r.x, r.mean);
        }
    }
    Ok(())
}
