//! Figures from stored results (plotting never re-simulates): one line per method against the
//! sweep axis, markers at the points, written as SVG and PNG with the bundled DejaVu Sans font.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::EvalError;
use crate::config::{Metric, SweepAxis};
use crate::results::{ResultRow, SampleRow};

static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        // The font is compiled in and known to be valid; a failure here would only drop labels.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

fn value(row: &ResultRow, metric: Metric) -> f64 {
    match metric {
        Metric::SumSe => row.sum_se_mean,
        Metric::TimeMs => row.time_ms_mean,
    }
}

/// Series `(method, [(x, y)])` in first-appearance order, skipping non-finite values.
#[must_use]
pub fn series(rows: &[ResultRow], metric: Metric) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in rows {
        let y = value(r, metric);
        if !y.is_finite() {
            continue;
        }
        match out.iter_mut().find(|(m, _)| *m == r.method) {
            Some((_, pts)) => pts.push((r.x, y)),
            None => out.push((r.method.clone(), vec![(r.x, y)])),
        }
    }
    for (_, pts) in &mut out {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// Trailing moving average of the finite values within `window` samples, restarted at every
/// phase boundary (so that a speed change is not smeared into the previous phase). Entries with
/// no finite value in their window are NaN.
#[must_use]
pub fn moving_average_by_phase(values: &[f64], window: usize, boundaries: &[usize]) -> Vec<f64> {
    let window = window.max(1);
    let mut out = Vec::with_capacity(values.len());
    let mut phase_start = 0;
    for i in 0..values.len() {
        if boundaries.contains(&i) {
            phase_start = i;
        }
        let lo = phase_start.max((i + 1).saturating_sub(window));
        let finite: Vec<f64> = values[lo..=i].iter().copied().filter(|v| v.is_finite()).collect();
        out.push(if finite.is_empty() { f64::NAN } else { finite.iter().sum::<f64>() / finite.len() as f64 });
    }
    out
}

/// Per-method series `(method, [(sample, smoothed value)])` of one sweep point.
#[must_use]
pub fn sample_series(
    rows: &[SampleRow],
    point: usize,
    metric: Metric,
    window: usize,
    boundaries: &[usize],
) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut methods: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.point == point) {
        if !methods.contains(&r.method) {
            methods.push(r.method.clone());
        }
    }
    methods
        .into_iter()
        .map(|m| {
            let mut pts: Vec<&SampleRow> = rows.iter().filter(|r| r.point == point && r.method == m).collect();
            pts.sort_by_key(|r| r.sample);
            let vals: Vec<f64> = pts
                .iter()
                .map(|r| match metric {
                    Metric::SumSe => r.sum_se,
                    Metric::TimeMs => r.time_ms,
                })
                .collect();
            let smooth = moving_average_by_phase(&vals, window, boundaries);
            let series =
                pts.iter().zip(smooth).filter(|(_, v)| v.is_finite()).map(|(r, v)| (r.sample as f64, v)).collect();
            (m, series)
        })
        .collect()
}

/// Writes `<stem>.svg` and `<stem>.png` of a per-sample series (x: sample index).
///
/// # Errors
/// [`EvalError::Figure`] naming the file.
pub fn plot_series(
    dir: &Path,
    stem: &str,
    title: &str,
    metric: Metric,
    data: &[(String, Vec<(f64, f64)>)],
) -> Result<(), EvalError> {
    register_font();
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    let x_label = "Sample (time slot)";
    draw(
        SVGBackend::new(&svg, (900, 560)).into_drawing_area(),
        title,
        x_label,
        metric.label(),
        metric == Metric::TimeMs,
        data,
        false,
    )
    .map_err(|message| EvalError::Figure { path: svg.clone(), message })?;
    draw(
        BitMapBackend::new(&png, (900, 560)).into_drawing_area(),
        title,
        x_label,
        metric.label(),
        metric == Metric::TimeMs,
        data,
        false,
    )
    .map_err(|message| EvalError::Figure { path: png.clone(), message })?;
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    y_from_zero: bool,
    data: &[(String, Vec<(f64, f64)>)],
    markers: bool,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let xs = data.iter().flat_map(|(_, p)| p.iter().map(|q| q.0));
    let ys = data.iter().flat_map(|(_, p)| p.iter().map(|q| q.1));
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (y0, y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !(x0.is_finite() && y0.is_finite()) {
        return Err("no finite data to plot".into());
    }
    let pad_x = if x1 > x0 { 0.03 * (x1 - x0) } else { 1.0 };
    let pad_y = if y1 > y0 { 0.08 * (y1 - y0) } else { 1.0 };
    let y_low = if y_from_zero { 0.0_f64.min(y0) } else { y0 - pad_y };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 - pad_x)..(x1 + pad_x), y_low..(y1 + pad_y))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, pts)) in data.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        if markers {
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(|e| e.to_string())?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// Writes `<stem>.svg` and `<stem>.png` in `dir`.
///
/// # Errors
/// [`EvalError::Figure`] naming the file.
pub fn plot(
    dir: &Path,
    stem: &str,
    title: &str,
    axis: SweepAxis,
    metric: Metric,
    rows: &[ResultRow],
) -> Result<(), EvalError> {
    register_font();
    let data = series(rows, metric);
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    draw(
        SVGBackend::new(&svg, (800, 560)).into_drawing_area(),
        title,
        axis.label(),
        metric.label(),
        metric == Metric::TimeMs,
        &data,
        true,
    )
    .map_err(|message| EvalError::Figure { path: svg.clone(), message })?;
    draw(
        BitMapBackend::new(&png, (800, 560)).into_drawing_area(),
        title,
        axis.label(),
        metric.label(),
        metric == Metric::TimeMs,
        &data,
        true,
    )
    .map_err(|message| EvalError::Figure { path: png.clone(), message })?;
    Ok(())
}

/// Writes `<stem>.svg` and `<stem>.png` of curves `(series, [(x, y)])` with free axis labels
/// (family experiments: error against horizon, SE against iteration, ...).
///
/// # Errors
/// [`EvalError::Figure`] naming the file.
pub fn plot_curves(
    dir: &Path,
    stem: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    data: &[(String, Vec<(f64, f64)>)],
) -> Result<(), EvalError> {
    register_font();
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    let markers = data.iter().all(|(_, p)| p.len() <= 40);
    draw(SVGBackend::new(&svg, (800, 560)).into_drawing_area(), title, x_label, y_label, false, data, markers)
        .map_err(|message| EvalError::Figure { path: svg.clone(), message })?;
    draw(BitMapBackend::new(&png, (800, 560)).into_drawing_area(), title, x_label, y_label, false, data, markers)
        .map_err(|message| EvalError::Figure { path: png.clone(), message })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, x: f64, y: f64) -> ResultRow {
        ResultRow {
            experiment: "e".into(),
            point: 0,
            x,
            method: method.into(),
            n: 1,
            n_failed: 0,
            sum_se_mean: y,
            sum_se_std: 0.0,
            time_ms_mean: 1.0,
            iterations_mean: 1.0,
            first_error: String::new(),
        }
    }

    #[test]
    fn moving_average_restarts_at_phase_boundaries() {
        let v = [1.0, 3.0, f64::NAN, 5.0, 10.0, 20.0];
        let m = moving_average_by_phase(&v, 2, &[4]);
        assert_eq!(m[0], 1.0);
        assert_eq!(m[1], 2.0);
        assert_eq!(m[2], 3.0); // NaN skipped
        assert_eq!(m[3], 5.0);
        assert_eq!(m[4], 10.0); // new phase: does not average with 5
        assert_eq!(m[5], 15.0);
    }

    #[test]
    fn writes_svg_and_png_with_labels() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![row("ZF", 10.0, 5.0), row("ZF", 0.0, 1.0), row("WMMSE", 0.0, 2.0), row("WMMSE", 10.0, 6.0)];
        assert_eq!(series(&rows, Metric::SumSe)[0].1, vec![(0.0, 1.0), (10.0, 5.0)]);
        plot(dir.path(), "fig", "Test", SweepAxis::SnrDb, Metric::SumSe, &rows).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("fig.svg")).unwrap();
        assert!(svg.contains("SNR (dB)") && svg.contains("WMMSE"), "labels missing");
        let png = std::fs::read(dir.path().join("fig.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}
