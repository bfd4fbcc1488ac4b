//! Stored family rows to results: curves per metric, claim checks, figures and the REPORT.md
//! section.

use std::path::Path;

use super::{CurveCheck, CurveCheckOutcome, FamilyConfig, FamilyManifest, StoredCurveRow};
use crate::EvalError;
use crate::results::read_csv;

/// Reads a family manifest.
///
/// # Errors
/// IO or JSON errors.
pub fn read_family_manifest(path: &Path) -> Result<FamilyManifest, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|e| EvalError::Io { path: path.to_path_buf(), source: e })?;
    serde_json::from_str(&text).map_err(|e| EvalError::Format { path: path.to_path_buf(), message: e.to_string() })
}

/// Reads stored curve rows.
///
/// # Errors
/// [`EvalError::Format`].
pub fn read_curves(path: &Path) -> Result<Vec<StoredCurveRow>, EvalError> {
    read_csv(path)
}

/// Curves `(series, [(x, mean)])` of one metric, in first-appearance order, sorted by x,
/// skipping non-finite values.
#[must_use]
pub fn curves_of(rows: &[StoredCurveRow], metric: &str, only: &[String]) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in rows.iter().filter(|r| r.metric == metric && (only.is_empty() || only.contains(&r.series))) {
        if !r.mean.is_finite() {
            continue;
        }
        match out.iter_mut().find(|(s, _)| *s == r.series) {
            Some((_, pts)) => pts.push((r.x, r.mean)),
            None => out.push((r.series.clone(), vec![(r.x, r.mean)])),
        }
    }
    for (_, pts) in &mut out {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    if !only.is_empty() {
        out.sort_by_key(|(s, _)| only.iter().position(|o| o == s));
    }
    out
}

/// Evaluates a claim on stored curves.
#[must_use]
pub fn check_curves(check: &CurveCheck, rows: &[StoredCurveRow]) -> CurveCheckOutcome {
    let mut worst = (f64::INFINITY, f64::NAN, f64::NAN);
    let mut all_hold = true;
    let mut n = 0;
    for a in rows.iter().filter(|r| r.metric == check.metric && r.series == check.better) {
        if check.at.is_some_and(|x| x != a.x) {
            continue;
        }
        let bx = check.than_at.unwrap_or(a.x);
        let reference = match check.than_value {
            Some(v) => v,
            None => match rows.iter().find(|r| r.metric == check.metric && r.series == check.than && r.x == bx) {
                Some(b) => b.mean,
                None => continue,
            },
        };
        n += 1;
        let d = if check.lower_is_better { reference - a.mean } else { a.mean - reference };
        let d = if d.is_nan() { f64::NEG_INFINITY } else { d };
        let rel = d / reference.abs();
        let margin = check.margin.unwrap_or(if check.relative_margin.is_some() { f64::NEG_INFINITY } else { 0.0 });
        all_hold &= d >= margin && check.relative_margin.is_none_or(|m| rel >= m);
        if d < worst.0 {
            worst = (d, rel, a.x);
        }
    }
    CurveCheckOutcome {
        claim: check.claim.clone(),
        holds: n > 0 && all_hold && worst.0.is_finite(),
        worst_margin: worst.0,
        worst_relative: worst.1,
        worst_x: worst.2,
        n_compared: n,
    }
}

/// Draws every configured figure of a family experiment.
///
/// # Errors
/// [`EvalError::Figure`].
pub fn draw_figures(cfg: &FamilyConfig, dir: &Path, rows: &[StoredCurveRow]) -> Result<(), EvalError> {
    for f in &cfg.figure {
        let data = curves_of(rows, &f.metric, &f.series);
        crate::figures::plot_curves(dir, &f.name, &cfg.title, &f.x_label, &f.y_label, &data)?;
    }
    Ok(())
}

/// REPORT.md section of a family experiment: provenance, figures, one table per metric (series ×
/// x, mean ± std) and the claim checks.
#[must_use]
pub fn family_section(cfg: &FamilyConfig, manifest: &FamilyManifest, rows: &[StoredCurveRow]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "## {} — {}\n", cfg.experiment, cfg.title);
    if let Some(notes) = &cfg.notes {
        let _ = writeln!(s, "{}\n", notes.trim());
    }
    let params = toml::to_string(&manifest.params).unwrap_or_default().replace('\n', "; ");
    let _ = writeln!(
        s,
        "Family `{}`, profile `{}`, seed {}, revision `{}`, run at {} on `{}`. Parameters: `{}`\n",
        manifest.family,
        manifest.profile,
        manifest.seed,
        manifest.git_revision,
        manifest.timestamp,
        manifest.host,
        params.trim_end_matches("; ")
    );
    for f in &cfg.figure {
        let _ = writeln!(s, "![{}]({}/{}.svg)\n", f.name, cfg.experiment, f.name);
    }
    let mut metrics: Vec<&str> = Vec::new();
    for r in rows {
        if !metrics.contains(&r.metric.as_str()) {
            metrics.push(&r.metric);
        }
    }
    for m in metrics {
        let curves: Vec<&StoredCurveRow> = rows.iter().filter(|r| r.metric == m).collect();
        let mut xs: Vec<f64> = curves.iter().map(|r| r.x).collect();
        xs.sort_by(f64::total_cmp);
        xs.dedup();
        // Long curves (traces) are shown at up to 12 evenly spaced x values, always with the last.
        let shown: Vec<f64> = if xs.len() <= 12 {
            xs.clone()
        } else {
            let step = (xs.len() - 1) as f64 / 11.0;
            (0..12).map(|i| xs[((i as f64 * step).round() as usize).min(xs.len() - 1)]).collect()
        };
        let mut series: Vec<&str> = Vec::new();
        for r in &curves {
            if !series.contains(&r.series.as_str()) {
                series.push(&r.series);
            }
        }
        let _ = writeln!(s, "Metric `{m}` (mean ± std over n):\n");
        let _ = write!(s, "| series |");
        for x in &shown {
            let _ = write!(s, " {x} |");
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "|---|{}", "---|".repeat(shown.len()));
        for name in series {
            let _ = write!(s, "| {name} |");
            for x in &shown {
                match curves.iter().find(|r| r.series == name && r.x == *x) {
                    Some(r) if r.n > 1 => {
                        let _ = write!(s, " {} ± {} |", fmt_num(r.mean), fmt_num(r.std));
                    }
                    Some(r) => {
                        let _ = write!(s, " {} |", fmt_num(r.mean));
                    }
                    None => {
                        let _ = write!(s, " – |");
                    }
                }
            }
            let _ = writeln!(s);
        }
        let _ = writeln!(s);
    }
    if !cfg.check.is_empty() {
        let _ = writeln!(s, "| claim | holds | worst advantage | relative | at x | points compared |");
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for c in &cfg.check {
            let o = check_curves(c, rows);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:+.2} % | {} | {} |",
                o.claim,
                if o.holds { "yes" } else { "**no**" },
                fmt_num(o.worst_margin),
                100.0 * o.worst_relative,
                o.worst_x,
                o.n_compared
            );
        }
        let _ = writeln!(s);
    }
    s
}

fn fmt_num(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        format!("{v}")
    } else if v.abs() >= 1e4 || v.abs() < 1e-3 {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}
