//! Resume after interruption, and independence of the thread count, on whole experiments.

mod common;

use beamlab_eval::{ResultRow, RunOptions, run_experiment};

fn opts(max_new_points: Option<usize>) -> RunOptions {
    RunOptions { profile: "quick".into(), fresh: false, progress: false, max_new_points }
}

/// Everything but timing, which legitimately differs between runs.
fn numbers(rows: &[ResultRow]) -> Vec<(usize, String, usize, String)> {
    rows.iter()
        .map(|r| (r.point, r.method.clone(), r.n, format!("{:.15e} {:.15e}", r.sum_se_mean, r.sum_se_std)))
        .collect()
}

#[test]
fn interrupted_sweep_resumes_without_loss_or_duplicates() {
    let cfg = common::small_config("resume", "rayleigh");
    let full_dir = tempfile::tempdir().expect("tempdir");
    let full = run_experiment(&cfg, full_dir.path(), &opts(None)).expect("full run");

    let dir = tempfile::tempdir().expect("tempdir");
    // "Interrupt" after the first point.
    let partial = run_experiment(&cfg, dir.path(), &opts(Some(1))).expect("partial run");
    assert_eq!(partial.len(), cfg.method.len());
    let on_disk = beamlab_eval::results::read_rows(&dir.path().join("results.csv")).expect("csv");
    assert_eq!(on_disk.len(), cfg.method.len(), "finished point must be on disk");
    let first_time = on_disk[0].time_ms_mean;

    let resumed = run_experiment(&cfg, dir.path(), &opts(None)).expect("resumed run");
    assert_eq!(numbers(&resumed), numbers(&full));
    let on_disk = beamlab_eval::results::read_rows(&dir.path().join("results.csv")).expect("csv");
    assert_eq!(numbers(&on_disk), numbers(&full), "no duplicate or missing rows");
    assert_eq!(on_disk[0].time_ms_mean, first_time, "finished points are kept, not recomputed");

    // A changed configuration must not reuse stale rows.
    let mut changed = cfg.clone();
    changed.seed += 1;
    let fresh = run_experiment(&changed, dir.path(), &opts(None)).expect("changed run");
    assert_ne!(numbers(&fresh), numbers(&full));
    let manifest = beamlab_eval::Manifest::read(&dir.path().join("manifest.json")).expect("manifest");
    assert_eq!(manifest.seed, changed.seed);
    assert!(!manifest.git_revision.is_empty());
}

#[test]
fn one_and_two_threads_give_identical_results() {
    let cfg = common::small_config("threads", "saleh_valenzuela");
    let run = |threads: usize| {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = rayon_pool(threads);
        pool.install(|| run_experiment(&cfg, dir.path(), &opts(None)).expect("run"))
    };
    assert_eq!(numbers(&run(1)), numbers(&run(2)));
}

fn rayon_pool(threads: usize) -> beamlab_eval::runner::ThreadPool {
    beamlab_eval::runner::thread_pool(threads).expect("pool")
}
