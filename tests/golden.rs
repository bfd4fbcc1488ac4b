//! CI regression of the SE numbers: small fixed-seed runs compared with committed golden values.
//!
//! Tolerance: 1e-6 relative (plus 1e-9 absolute). The code is deterministic for a given seed, so
//! the only legitimate differences are floating-point rounding between BLAS builds or compilers,
//! which are many orders of magnitude smaller; any algorithmic change moves the numbers by far
//! more. Re-approve deliberate changes with `cargo xtask bless` and review `git diff tests/golden`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use beamlab_core::derive_seed;
use beamlab_eval::family::FamilyConfig;
use beamlab_eval::runner::{run_point, summarise};

const REL_TOL: f64 = 1e-6;
const ABS_TOL: f64 = 1e-9;

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/se_small.json")
}

/// Compares `now` with the golden file at `path` (or rewrites it under `BEAMLAB_BLESS`).
fn compare_with_golden(now: &BTreeMap<String, f64>, path: &std::path::Path) {
    if std::env::var_os("BEAMLAB_BLESS").is_some() {
        let text = serde_json::to_string_pretty(now).expect("serialise");
        std::fs::write(path, text + "\n").expect("write golden file");
        eprintln!("blessed {}", path.display());
        return;
    }
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask bless` to create it", path.display()));
    let golden: BTreeMap<String, f64> = serde_json::from_str(&text).expect("golden file is valid JSON");
    assert_eq!(
        golden.keys().collect::<Vec<_>>(),
        now.keys().collect::<Vec<_>>(),
        "the set of golden entries changed; run `cargo xtask bless` if intended"
    );
    let mut bad = Vec::new();
    for (k, g) in &golden {
        let v = now[k];
        if !((v - g).abs() <= ABS_TOL + REL_TOL * g.abs()) {
            bad.push(format!("{k}: golden {g}, now {v}"));
        }
    }
    assert!(bad.is_empty(), "regression (tolerance {REL_TOL} relative) in {}:\n{}", path.display(), bad.join("\n"));
}

/// `"<experiment>/<method>/<x>" -> mean sum SE`.
fn compute() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for model in ["rayleigh", "saleh_valenzuela"] {
        let cfg = common::small_config(&format!("golden_{model}"), model);
        let (n_samples, values) = cfg.resolve_profile("quick").expect("profile");
        let methods: Vec<usize> = (0..cfg.method.len()).collect();
        for (p, &x) in values.iter().enumerate() {
            let outcomes = run_point(&cfg, &methods, p, x, n_samples).expect("run");
            for (m, o) in methods.iter().zip(&outcomes) {
                let name = cfg.method[*m].display_name();
                let row = summarise(&cfg.experiment, p, x, &name, o);
                assert_eq!(row.n_failed, 0, "{name} failed: {}", row.first_error);
                out.insert(format!("{}/{name}/{x}", cfg.experiment), row.sum_se_mean);
            }
        }
    }
    out
}

#[test]
fn se_matches_golden_values() {
    compare_with_golden(&compute(), &golden_path());
}

/// Every family experiment under `tests/golden/families/*.toml` (profile `golden`), all units:
/// `"<experiment>/<series>/<metric>/<x>" -> mean`.
fn compute_families() -> BTreeMap<String, f64> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/families");
    let mut out = BTreeMap::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/golden/families")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty());
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("read");
        let cfg = FamilyConfig::from_toml_str(&text, &path.display().to_string()).expect("valid config");
        let exp = cfg.build("golden").expect("build");
        for u in 0..exp.n_units() {
            let rows = exp.run_unit(u, derive_seed(cfg.seed, &[u as u64])).expect("unit runs");
            for r in rows {
                assert!(r.mean.is_finite(), "{}: non-finite {r:?}", cfg.experiment);
                out.insert(format!("{}/{}/{}/{}", cfg.experiment, r.series, r.metric, r.x), r.mean);
            }
        }
    }
    out
}

#[test]
fn family_curves_match_golden_values() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/families.json");
    compare_with_golden(&compute_families(), &path);
}

#[test]
fn golden_values_respect_the_expected_ordering() {
    // Independent of the stored numbers: WMMSE beats MRT at high SNR and every SE grows with SNR.
    let now = compute();
    for exp in ["golden_rayleigh", "golden_saleh_valenzuela"] {
        assert!(now[&format!("{exp}/WMMSE/20")] > now[&format!("{exp}/MRT/20")]);
        for m in ["MRT", "ZF", "RZF", "WMMSE"] {
            assert!(now[&format!("{exp}/{m}/20")] > now[&format!("{exp}/{m}/0")], "{exp} {m}");
        }
    }
}
