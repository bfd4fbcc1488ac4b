//! The `beamlab` binary end to end: generate → solve → evaluate, reproduce, and clear errors.

use std::path::Path;
use std::process::{Command, Output};

fn beamlab(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_beamlab"))
        .args(args)
        .current_dir(cwd)
        .env("OPENBLAS_NUM_THREADS", "1")
        .output()
        .expect("run beamlab")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn generate_solve_evaluate_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = beamlab(
        &[
            "generate",
            "--n-tx",
            "8",
            "--n-users",
            "2",
            "--n-rx",
            "2",
            "--samples",
            "3",
            "--out",
            "h.npy",
            "--cee-db",
            "-10",
            "--estimate-out",
            "hhat.npy",
        ],
        d,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = beamlab(&["solve", "--method", "wmmse", "--channels", "hhat.npy", "--power", "10", "--out", "w.npy"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("iterations"), "diagnostics go to stderr");
    let o = beamlab(&["evaluate", "--channels", "h.npy", "--precoders", "w.npy"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1 + 3 * 2, "{out}");
    for l in &lines[1..] {
        let rate: f64 = l.split(',').nth(2).unwrap().parse().unwrap();
        assert!(rate.is_finite() && rate >= 0.0);
    }
    assert!(stderr(&o).contains("mean sum SE"));
    // Precoders that do not fit the channels: a clear message, exit code 1.
    let o = beamlab(&["generate", "--n-tx", "4", "--n-users", "2", "--samples", "3", "--out", "h4.npy"], d);
    assert!(o.status.success());
    let o = beamlab(&["evaluate", "--channels", "h4.npy", "--precoders", "w.npy"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("does not fit"), "{}", stderr(&o));
}

#[test]
fn errors_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = beamlab(&["solve", "--method", "zf", "--channels", "missing.npy", "--out", "w.npy"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.npy"), "{}", stderr(&o));
    std::fs::write(d.join("junk.npy"), b"not a numpy file").unwrap();
    let o = beamlab(&["solve", "--method", "zf", "--channels", "junk.npy", "--out", "w.npy"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("junk.npy"), "{}", stderr(&o));
    // ZF with more users than antennas.
    let o =
        beamlab(&["generate", "--n-tx", "2", "--n-users", "3", "--n-rx", "1", "--samples", "1", "--out", "h.npy"], d);
    assert!(o.status.success());
    let o = beamlab(&["solve", "--method", "zf", "--channels", "h.npy", "--out", "w.npy"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("infeasible"), "{}", stderr(&o));
    let o = beamlab(&["solve", "--method", "mrt", "--channels", "h.npy", "--power", "0", "--out", "w.npy"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("power budget"), "{}", stderr(&o));
    // Malformed config.
    std::fs::create_dir(d.join("configs")).unwrap();
    std::fs::write(d.join("configs/bad.toml"), "experiment = \"x\"\ntitle = \"t\"\nseed = 1\nsed = 2\n").unwrap();
    let o = beamlab(&["reproduce"], d);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("bad.toml") && e.contains("sed") && e.contains("line 4"), "{e}");
}

#[test]
fn reproduce_writes_csv_figures_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("configs")).unwrap();
    std::fs::write(
        d.join("configs/tiny.toml"),
        r#"
experiment = "tiny"
title = "tiny"
seed = 3
[scenario]
model = "rayleigh"
n_tx = 6
n_users = 2
n_rx = 2
[sweep]
axis = "snr_db"
values = [0.0, 10.0]
[profile.quick]
samples = 4
[[method]]
kind = "zf"
[[method]]
kind = "wmmse"
[[figure]]
name = "se"
metric = "sum_se"
[[check]]
claim = "WMMSE >= ZF"
better = "WMMSE"
than = "ZF"
"#,
    )
    .unwrap();
    let o = beamlab(&["reproduce", "--threads", "2"], d);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "results/tiny/results.csv",
        "results/tiny/manifest.json",
        "results/tiny/se.svg",
        "results/tiny/se.png",
        "results/REPORT.md",
    ] {
        assert!(d.join(f).exists(), "{f} missing");
    }
    let report = std::fs::read_to_string(d.join("results/REPORT.md")).unwrap();
    assert!(report.contains("tiny/se.svg") && report.contains("WMMSE >= ZF"), "{report}");
    let o = beamlab(&["reproduce", "--only", "nope"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope"));
}
