//! Figures from stored results (plotting never re-simulates): one line per method against the
//! sweep axis, markers at the points, written as SVG and PNG with the bundled DejaVu Sans font.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::EvalError;
use crate::config::{Metric, SweepAxis};
use crate::results::ResultRow;

static FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
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

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    axis: SweepAxis,
    metric: Metric,
    data: &[(String, Vec<(f64, f64)>)],
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
    let y_low = if metric == Metric::TimeMs { 0.0_f64.min(y0) } else { y0 - pad_y };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((x0 - pad_x)..(x1 + pad_x), y_low..(y1 + pad_y))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(axis.label())
        .y_desc(metric.label())
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
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(|e| e.to_string())?;
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
    draw(SVGBackend::new(&svg, (800, 560)).into_drawing_area(), title, axis, metric, &data)
        .map_err(|message| EvalError::Figure { path: svg.clone(), message })?;
    draw(BitMapBackend::new(&png, (800, 560)).into_drawing_area(), title, axis, metric, &data)
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
