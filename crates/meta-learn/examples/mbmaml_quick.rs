//! Runs the MB-MAML experiment (default quick profile, or the figures given as arguments:
//! `adaptation`, `snr`, `error_level`, `heads`, `bases`) and prints its rows with the wall-clock time per unit.
//!
//! `cargo run --release -p beamlab-meta-learn --example mbmaml_quick -- [params.toml] [adaptation]`
use beamlab_core::experiment::FamilyExperiment;
use beamlab_meta_learn::experiment::{MbMamlExperimentParams, MbMamlFigure, mbmaml_experiment};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut params = MbMamlExperimentParams::default();
    if let Some(path) = std::env::args().nth(1).filter(|a| a.ends_with(".toml")) {
        params = toml::from_str(&std::fs::read_to_string(path)?)?;
    }
    let figs: Vec<MbMamlFigure> = std::env::args()
        .skip(1)
        .filter_map(|a| match a.as_str() {
            "adaptation" => Some(MbMamlFigure::Adaptation),
            "snr" => Some(MbMamlFigure::Snr),
            "error_level" => Some(MbMamlFigure::ErrorLevel),
            "heads" => Some(MbMamlFigure::Heads),
            "bases" => Some(MbMamlFigure::Bases),
            _ => None,
        })
        .collect();
    if !figs.is_empty() {
        params.figures = figs;
    }
    let exp = mbmaml_experiment(params)?;
    for unit in 0..exp.n_units() {
        let start = std::time::Instant::now();
        let rows = exp.run_unit(unit, 2026)?;
        println!("# {} ({:.1} s)", exp.unit_label(unit), start.elapsed().as_secs_f64());
        for r in rows {
            println!(
                "{:<24} {:<22} x = {:>6.1}  {:>7.3} ± {:.3} (n = {})",
                r.series, r.metric, r.x, r.mean, r.std, r.n
            );
        }
    }
    Ok(())
}
