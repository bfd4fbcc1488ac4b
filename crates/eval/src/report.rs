//! `results/REPORT.md`: every experiment with its figures, a table of the numbers, and the
//! outcome of each claim check.

use std::fmt::Write as _;

use crate::config::{CheckConfig, ExperimentConfig};
use crate::results::{Manifest, ResultRow};

/// Outcome of one claim check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckOutcome {
    /// The claim's text.
    pub claim: String,
    /// Whether it holds at every sweep point.
    pub holds: bool,
    /// Smallest advantage `better − than` (bit/s/Hz) over the points.
    pub worst_margin: f64,
    /// Sweep value where the advantage is smallest.
    pub worst_x: f64,
}

/// Evaluates a claim on the rows of one experiment.
#[must_use]
pub fn check_claim(check: &CheckConfig, rows: &[ResultRow]) -> CheckOutcome {
    let mut worst = (f64::INFINITY, f64::NAN);
    for a in rows.iter().filter(|r| r.method == check.better) {
        if let Some(b) = rows.iter().find(|r| r.method == check.than && r.point == a.point) {
            let d = a.sum_se_mean - b.sum_se_mean;
            // A NaN (a method failed everywhere) must count as a failure of the claim.
            let d = if d.is_nan() { f64::NEG_INFINITY } else { d };
            if d < worst.0 {
                worst = (d, a.x);
            }
        }
    }
    CheckOutcome {
        claim: check.claim.clone(),
        holds: worst.0.is_finite() && worst.0 >= check.margin,
        worst_margin: worst.0,
        worst_x: worst.1,
    }
}

/// Markdown section of one experiment.
#[must_use]
pub fn experiment_section(cfg: &ExperimentConfig, manifest: &Manifest, rows: &[ResultRow]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "## {} — {}\n", cfg.experiment, cfg.title);
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
    if !cfg.check.is_empty() {
        let _ = writeln!(s, "\nClaim checks:\n");
        for c in &cfg.check {
            let o = check_claim(c, rows);
            let verdict = if o.holds { "holds" } else { "DOES NOT HOLD" };
            let _ = writeln!(
                s,
                "- {} — **{verdict}** (smallest advantage {:.3} bit/s/Hz at x = {}; required ≥ {})",
                o.claim, o.worst_margin, o.worst_x, c.margin
            );
        }
    }
    let _ = writeln!(s);
    s
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
    fn claims_are_checked_at_every_point() {
        let c = CheckConfig { claim: "A beats B".into(), better: "A".into(), than: "B".into(), margin: 0.0 };
        let rows = vec![row("A", 0, 2.0), row("B", 0, 1.0), row("A", 1, 3.0), row("B", 1, 3.5)];
        let o = check_claim(&c, &rows);
        assert!(!o.holds);
        assert!((o.worst_margin + 0.5).abs() < 1e-12 && o.worst_x == 1.0);
        let o = check_claim(&c, &rows[..2]);
        assert!(o.holds);
        let nan = vec![row("A", 0, f64::NAN), row("B", 0, 1.0)];
        assert!(!check_claim(&c, &nan).holds);
    }
}
