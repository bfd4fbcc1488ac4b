//! Light crates stay light: `beamlab-linalg-ops`, `-core`, `-channel` and `-baselines` are what a
//! researcher picks as single dependencies (a fast WMMSE, 38.901 draws, rates and gradients), so
//! their normal dependency tree (from `cargo metadata`, build and dev dependencies excluded) holds
//! no deep-learning framework, plotting, command-line parsing or network client.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

const LIGHT: [&str; 4] = ["beamlab-linalg-ops", "beamlab-core", "beamlab-channel", "beamlab-baselines"];
const HEAVY: [&str; 8] = ["candle-core", "candle-nn", "plotters", "clap", "ureq", "reqwest", "hyper", "curl"];

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// Package names in the normal (non-dev, non-build) dependency closure of `root`.
fn normal_closure(meta: &Value, root: &str) -> BTreeSet<String> {
    let names: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().expect("id"), p["name"].as_str().expect("name")))
        .collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
        .iter()
        .map(|n| (n["id"].as_str().expect("id"), n))
        .collect();
    let start = names.iter().find(|(_, n)| **n == root).map(|(id, _)| *id).expect("root package");
    let mut seen = BTreeSet::new();
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().expect("deps") {
            let normal = dep["dep_kinds"].as_array().expect("dep_kinds").iter().any(|k| k["kind"].is_null());
            if normal {
                stack.push(dep["pkg"].as_str().expect("pkg"));
            }
        }
    }
    seen.iter().map(|id| names[id].to_string()).collect()
}

#[test]
fn light_crates_pull_no_heavy_dependency() {
    let meta = metadata();
    let mut bad = Vec::new();
    for krate in LIGHT {
        let closure = normal_closure(&meta, krate);
        for heavy in HEAVY.iter().filter(|h| closure.contains(**h)) {
            bad.push(format!("{krate} depends on {heavy}"));
        }
    }
    assert!(bad.is_empty(), "light crates pull heavy dependencies:\n{}", bad.join("\n"));
}

#[test]
fn the_walk_finds_a_heavy_dependency_where_there_is_one() {
    let meta = metadata();
    let bridge = normal_closure(&meta, "beamlab-candle-bridge");
    assert!(bridge.contains("candle-core") && bridge.contains("beamlab-linalg-ops"), "{bridge:?}");
    let eval = normal_closure(&meta, "beamlab-eval");
    assert!(eval.contains("clap") && eval.contains("plotters"), "{eval:?}");
    // A dev-dependency does not count: criterion is a dev-dependency of linalg-ops.
    assert!(!normal_closure(&meta, "beamlab-linalg-ops").contains("criterion"));
}
