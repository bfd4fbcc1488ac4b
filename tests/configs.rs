//! Every shipped config in `configs/` parses and builds, at every profile it defines, without
//! running anything: a library change that renames, removes or retypes a parameter breaks this
//! test instead of `cargo xtask reproduce` an hour into a run.

use std::path::PathBuf;

use beamlab_eval::runner::{build_method, method_context};
use beamlab_eval::{Experiment, load_configs};

fn configs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs")
}

#[test]
fn every_config_parses_and_builds_at_every_profile() {
    let cfgs = load_configs(&configs_dir()).expect("configs/ parses");
    assert!(cfgs.len() >= 20, "expected the shipped configs, found {}", cfgs.len());
    let mut failures = Vec::new();
    for exp in &cfgs {
        for profile in ["quick", "paper"] {
            let res = match exp {
                Experiment::Sweep(cfg) => cfg.resolve_profile(profile).map(|(_, values)| {
                    for x in values {
                        let ctx = method_context(cfg, x);
                        for m in &cfg.method {
                            if let Err(e) = build_method(m, 1, &ctx) {
                                failures.push(format!("{} [{profile}] {}: {e}", cfg.experiment, m.display_name()));
                            }
                        }
                    }
                }),
                Experiment::Family(cfg) => cfg.build(profile).map(|_| ()),
            };
            if let Err(e) = res {
                failures.push(format!("{} [{profile}]: {e}", exp.name()));
            }
        }
    }
    assert!(failures.is_empty(), "configs that do not build:\n{}", failures.join("\n"));
}

#[test]
fn a_retyped_parameter_is_caught() {
    // The test above must be able to fail: a family config with an unknown parameter does not build.
    let dir = tempfile::tempdir().expect("temp dir");
    let text = std::fs::read_to_string(configs_dir().join("outage_table2.toml")).expect("outage config");
    let bad = text.replacen("[params]", "[params]\nno_such_option = 1", 1);
    std::fs::write(dir.path().join("bad.toml"), bad).expect("write");
    let parsed = load_configs(dir.path());
    let built = parsed.as_ref().ok().and_then(|c| match &c[0] {
        Experiment::Family(f) => Some(f.build("quick").map(|_| ())),
        Experiment::Sweep(_) => None,
    });
    assert!(parsed.is_err() || matches!(built, Some(Err(_))), "an unknown parameter was accepted");
}
