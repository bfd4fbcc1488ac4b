//! Runs the channel-prediction experiment (survey Fig. 4) once at the quick defaults of
//! `PredictionParams`, one predictor after the other, and prints NMSE (dB) and MRT SE loss per
//! prediction step plus each predictor's training time.
//!
//! `cargo run --release -p beamlab-liquid-nn --example prediction_quick [-- <params.toml>]`

use std::time::Instant;

use beamlab_core::derive_seed;
use beamlab_core::experiment::FamilyExperiment;
use beamlab_liquid_nn::{PredictionParams, prediction_experiment};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let params: PredictionParams = match std::env::args().nth(1) {
        Some(path) => toml::from_str(&std::fs::read_to_string(path)?)?,
        None => PredictionParams::default(),
    };
    let start = Instant::now();
    let exp = prediction_experiment(&params)?;
    println!(
        "data: {} train / {} test windows ({:.2} s)",
        exp.train_data().len(),
        exp.test_data().len(),
        start.elapsed().as_secs_f64()
    );
    for unit in 0..exp.n_units() {
        let t0 = Instant::now();
        let rows = exp.run_unit(unit, derive_seed(1, &[unit as u64]))?;
        let secs = t0.elapsed().as_secs_f64();
        let pick = |metric: &str| -> Vec<String> {
            rows.iter().filter(|r| r.metric == metric).map(|r| format!("{:7.2}", r.mean)).collect()
        };
        let last_loss = rows.iter().rfind(|r| r.metric == "train_loss").map_or(f64::NAN, |r| r.mean);
        println!("{:<11} {:6.1} s  final train loss {last_loss:.2e}", exp.unit_label(unit), secs);
        println!("  nmse_db  {}", pick("nmse_db").join(" "));
        println!("  se_loss  {}", pick("se_loss").join(" "));
    }
    println!("total {:.1} s", start.elapsed().as_secs_f64());
    Ok(())
}
