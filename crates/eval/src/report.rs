//! `results/REPORT.md`: every experiment with its figures, a table of the numbers, and the
//! outcome of each claim check.

use std::fmt::Write as _;

use crate::config::{CheckConfig, ExperimentConfig, Metric};
use crate::results::{Manifest, ResultRow, SampleRow};

/// Outcome of one claim check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckOutcome {
    /// The claim's text.
    pub claim: String,
    /// Whether it holds at every considered sweep point.
    pub holds: bool,
    /// Smallest advantage of `better` over `than` (metric units; for time, `than − better`).
    pub worst_margin: f64,
    /// Relative advantage at that point (advantage / `than`).
    pub worst_relative: f64,
    /// Sweep value where the advantage is smallest.
    pub worst_x: f64,
}

fn metric_value(r: &ResultRow, metric: Metric) -> f64 {
    match metric {
        Metric::SumSe => r.sum_se_mean,
        Metric::TimeMs => r.time_ms_mean,
    }
}

/// Evaluates a claim on the rows of one experiment.
#[must_use]
pub fn check_claim(check: &CheckConfig, rows: &[ResultRow]) -> CheckOutcome {
    let mut worst = (f64::INFINITY, f64::NAN, f64::NAN);
    let mut all_hold = true;
    let mut any = false;
    for a in rows.iter().filter(|r| r.method == check.better && check.at.is_none_or(|x| x == r.x)) {
        if let Some(b) = rows.iter().find(|r| r.method == check.than && r.point == a.point) {
            any = true;
            let (va, vb) = (metric_value(a, check.metric), metric_value(b, check.metric));
            let d = match check.metric {
                Metric::SumSe => va - vb,
                Metric::TimeMs => vb - va,
            };
            // A NaN (a method failed everywhere) must count as a failure of the claim.
            let d = if d.is_nan() { f64::NEG_INFINITY } else { d };
            let rel = d / vb.abs();
            let ok = d >= check.margin && check.relative_margin.is_none_or(|m| rel >= m);
            all_hold &= ok;
            if d < worst.0 {
                worst = (d, rel, a.x);
            }
        }
    }
    CheckOutcome {
        claim: check.claim.clone(),
        holds: any && all_hold && worst.0.is_finite(),
        worst_margin: worst.0,
        worst_relative: worst.1,
        worst_x: worst.2,
    }
}

/// Markdown section of one experiment.
#[must_use]
pub fn experiment_section(
    cfg: &ExperimentConfig,
    manifest: &Manifest,
    rows: &[ResultRow],
    samples: &[SampleRow],
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## {} — {}\n", cfg.experiment, cfg.title);
    if let Some(notes) = &cfg.notes {
        let _ = writeln!(s, "{}\n", notes.trim());
    }
    let _ = writeln!(
        s,
        "Profile `{}`, {} samples per point, seed {}, revision `{}`, run at {} on `{}`.\n",
        manifest.profile, manifest.samples, manifest.seed, manifest.git_revision, manifest.timestamp, manifest.host
    );
    for f in &cfg.figure {
        let _ = writeln!(s, "![{}]({}/{}.svg)\n", f.name, cfg.experiment, f.name);
    }
    let methods: Vec<String> = cfg.method.iter().map(|m| m.display_name()).collect();
    let mut xs: Vec<(usize, f64)> = rows.iter().map(|r| (r.point, r.x)).collect();
    xs.dedup();
    xs.sort_by_key(|p| p.0);
    xs.dedup();
    let _ = writeln!(s, "Mean sum SE (bit/s/Hz) ± std; time per sample in ms.\n");
    let _ = write!(s, "| {} |", cfg.sweep.axis.label());
    for m in &methods {
        let _ = write!(s, " {m} | {m} ms |");
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|{}", "---|---|".repeat(methods.len()));
    for (p, x) in &xs {
        let _ = write!(s, "| {x} |");
        for m in &methods {
            match rows.iter().find(|r| r.point == *p && &r.method == m) {
                Some(r) if r.n > 0 => {
                    let fail = if r.n_failed > 0 { format!(" ({} failed)", r.n_failed) } else { String::new() };
                    let _ = write!(s, " {:.3} ± {:.3}{fail} | {:.3} |", r.sum_se_mean, r.sum_se_std, r.time_ms_mean);
                }
                Some(r) => {
                    let _ = write!(s, " failed: {} | – |", r.first_error.replace('|', "/"));
                }
                None => {
                    let _ = write!(s, " – | – |");
                }
            }
        }
        let _ = writeln!(s);
    }
    if !cfg.complexity.is_empty() {
        let _ = writeln!(s, "\nComplexity and measured time per sample (ms):\n");
        let _ = write!(s, "| Method | Complexity |");
        for (_, x) in &xs {
            let _ = write!(s, " {} = {x} |", cfg.sweep.axis.label());
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "|---|---|{}", "---|".repeat(xs.len()));
        for (m, expr) in &cfg.complexity {
            let _ = write!(s, "| {m} | {expr} |");
            for (p, _) in &xs {
                match rows.iter().find(|r| r.point == *p && &r.method == m) {
                    Some(r) => {
                        let _ = write!(s, " {:.3} |", r.time_ms_mean);
                    }
                    None => {
                        let _ = write!(s, " – |");
                    }
                }
            }
            let _ = writeln!(s);
        }
    }
    for f in cfg.figure.iter().filter(|f| f.kind == crate::config::FigureKind::Series) {
        let _ = writeln!(
            s,
            "\nPer-phase mean sum SE of `{}` (bit/s/Hz; phases start at samples {:?}; \"early\" = the first {} samples of a phase):\n",
            f.name,
            f.phase_boundaries,
            f.window.unwrap_or(50)
        );
        let _ = writeln!(s, "{}", phase_table(samples, f.point, &f.phase_boundaries, f.window.unwrap_or(50)));
    }
    if !cfg.check.is_empty() || !cfg.adaptation.is_empty() {
        let _ = writeln!(s, "\nClaim checks:\n");
    }
    for a in &cfg.adaptation {
        let Some(f) = cfg.figure.iter().find(|f| f.name == a.figure) else { continue };
        let ratios = adaptation_ratios(samples, f.point, &a.method, &f.phase_boundaries, f.window.unwrap_or(50));
        let holds = !ratios.is_empty() && ratios.iter().all(|(_, r)| *r >= a.min_ratio);
        let shown: Vec<String> = ratios.iter().map(|(b, r)| format!("{r:.3} at sample {b}")).collect();
        let detail =
            if shown.is_empty() { "no phase change within the samples run".to_string() } else { shown.join(", ") };
        let _ = writeln!(
            s,
            "- {} — **{}** (mean of the first {} samples after a change / mean of the last {} before it: {detail}; required ≥ {})",
            a.claim,
            if holds { "holds" } else { "DOES NOT HOLD" },
            f.window.unwrap_or(50),
            f.window.unwrap_or(50),
            a.min_ratio
        );
    }
    if !cfg.check.is_empty() {
        for c in &cfg.check {
            let o = check_claim(c, rows);
            let verdict = if o.holds { "holds" } else { "DOES NOT HOLD" };
            let unit = match c.metric {
                Metric::SumSe => "bit/s/Hz",
                Metric::TimeMs => "ms",
            };
            let required = match c.relative_margin {
                Some(r) => format!("≥ {} {unit} and ≥ {:.2} %", c.margin, 100.0 * r),
                None => format!("≥ {} {unit}", c.margin),
            };
            let _ = writeln!(
                s,
                "- {} — **{verdict}** (smallest advantage {:.3} {unit} = {:.2} % at x = {}; required {required})",
                o.claim,
                o.worst_margin,
                100.0 * o.worst_relative,
                o.worst_x
            );
        }
    }
    let _ = writeln!(s);
    s
}

/// Markdown table: per method and phase, the mean sum SE over the whole phase and over its first
/// `early` samples (how quickly a method recovers after a change).
#[must_use]
pub fn phase_table(samples: &[SampleRow], point: usize, boundaries: &[usize], early: usize) -> String {
    let mut methods: Vec<&str> = Vec::new();
    let mut n = 0;
    for r in samples.iter().filter(|r| r.point == point) {
        if !methods.contains(&r.method.as_str()) {
            methods.push(&r.method);
        }
        n = n.max(r.sample + 1);
    }
    let mut starts: Vec<usize> = std::iter::once(0).chain(boundaries.iter().copied().filter(|b| *b < n)).collect();
    starts.dedup();
    let mut s = String::from("| Method |");
    for (i, st) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(n);
        let _ = write!(s, " phase {} ({st}–{}) | early |", i + 1, end.saturating_sub(1));
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "|---|{}", "---|---|".repeat(starts.len()));
    let mean = |m: &str, lo: usize, hi: usize| {
        let v: Vec<f64> = samples
            .iter()
            .filter(|r| r.point == point && r.method == m && r.sample >= lo && r.sample < hi && r.sum_se.is_finite())
            .map(|r| r.sum_se)
            .collect();
        if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
    };
    for m in methods {
        let _ = write!(s, "| {m} |");
        for (i, st) in starts.iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(n);
            let _ = write!(s, " {:.3} | {:.3} |", mean(m, *st, end), mean(m, *st, (*st + early).min(end)));
        }
        let _ = writeln!(s);
    }
    s
}

/// For every phase boundary `b` within the samples: `(b, mean over [b, b + early) / mean over
/// [b − early, b))` of `method` — the level right after a change relative to the level right
/// before it (1 means no dip).
#[must_use]
pub fn adaptation_ratios(
    samples: &[SampleRow],
    point: usize,
    method: &str,
    boundaries: &[usize],
    early: usize,
) -> Vec<(usize, f64)> {
    let n = samples.iter().filter(|r| r.point == point && r.method == method).map(|r| r.sample + 1).max().unwrap_or(0);
    let mean = |lo: usize, hi: usize| {
        let v: Vec<f64> = samples
            .iter()
            .filter(|r| {
                r.point == point && r.method == method && r.sample >= lo && r.sample < hi && r.sum_se.is_finite()
            })
            .map(|r| r.sum_se)
            .collect();
        if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
    };
    let mut out = Vec::new();
    for (i, &b) in boundaries.iter().enumerate() {
        if b >= n {
            break;
        }
        let end = boundaries.get(i + 1).copied().unwrap_or(n).min(n);
        let prev_start = if i == 0 { 0 } else { boundaries[i - 1] };
        out.push((b, mean(b, (b + early).min(end)) / mean(b.saturating_sub(early).max(prev_start), b)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, point: usize, y: f64) -> ResultRow {
        ResultRow {
            experiment: "e".into(),
            point,
            x: point as f64,
            method: method.into(),
            n: 1,
            n_failed: 0,
            sum_se_mean: y,
            sum_se_std: 0.0,
            time_ms_mean: 0.0,
            iterations_mean: 0.0,
            first_error: String::new(),
        }
    }

    #[test]
    fn adaptation_ratio_is_after_over_before_change() {
        let rows: Vec<SampleRow> = (0..8)
            .map(|i| SampleRow {
                point: 0,
                x: 0.0,
                method: "A".into(),
                sample: i,
                sum_se: if i == 4 { 1.0 } else { 3.0 },
                time_ms: 0.0,
            })
            .collect();
        // Change at 4: values [3, 3] before, [1, 3] after: early mean 2 over pre-change mean 3.
        let r = adaptation_ratios(&rows, 0, "A", &[4], 2);
        assert_eq!(r.len(), 1);
        assert!((r[0].1 - 2.0 / 3.0).abs() < 1e-12);
        assert!(adaptation_ratios(&rows, 0, "A", &[20], 2).is_empty());
    }

    #[test]
    fn phase_table_means() {
        let rows: Vec<SampleRow> = (0..6)
            .map(|i| SampleRow { point: 0, x: 0.0, method: "A".into(), sample: i, sum_se: i as f64, time_ms: 0.0 })
            .collect();
        let t = phase_table(&rows, 0, &[3], 1);
        // Phase 1: samples 0..3 → mean 1, early 0; phase 2: 3..6 → mean 4, early 3.
        assert!(t.contains("| A | 1.000 | 0.000 | 4.000 | 3.000 |"), "{t}");
    }

    #[test]
    fn claims_are_checked_at_every_point() {
        let c = CheckConfig {
            claim: "A beats B".into(),
            better: "A".into(),
            than: "B".into(),
            margin: 0.0,
            relative_margin: None,
            at: None,
            metric: Metric::SumSe,
        };
        let rows = vec![row("A", 0, 2.0), row("B", 0, 1.0), row("A", 1, 3.0), row("B", 1, 3.5)];
        let o = check_claim(&c, &rows);
        assert!(!o.holds);
        assert!((o.worst_margin + 0.5).abs() < 1e-12 && o.worst_x == 1.0);
        let o = check_claim(&c, &rows[..2]);
        assert!(o.holds);
        let nan = vec![row("A", 0, f64::NAN), row("B", 0, 1.0)];
        assert!(!check_claim(&c, &nan).holds);
        // Relative margin at one point: +100 % at x = 0 holds, +20 % required at x = 0.
        let rel = CheckConfig { relative_margin: Some(0.2), at: Some(0.0), ..c.clone() };
        let o = check_claim(&rel, &rows);
        assert!(o.holds && (o.worst_relative - 1.0).abs() < 1e-12);
        let rel = CheckConfig { relative_margin: Some(1.5), ..rel };
        assert!(!check_claim(&rel, &rows).holds);
        // No matching point: the claim cannot be confirmed.
        let none = CheckConfig { at: Some(7.0), ..c };
        assert!(!check_claim(&none, &rows).holds);
    }
}
