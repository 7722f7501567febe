//! A chart drawn as lines (or points) over its x axis, with the legend below the plot.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::canvas::{DrawResult, Figure, WIDTH};
use super::chart::{Chart, Point};
use super::legend::{Legend, Swatch};
use super::style::{FAMILY, Marker, REFERENCE, color, tick};

/// The plot's height above the legend.
const PLOT_HEIGHT: u32 = 540;
/// Series with more points than this are traces (a time series): thin lines, no markers.
const DENSE: usize = 60;

pub(crate) struct XyPlot<'a> {
    chart: &'a Chart,
    /// Each formula line once: configurations that share a formula share its line.
    expected: Vec<Vec<(f64, f64)>>,
    legend: Legend,
}

impl<'a> XyPlot<'a> {
    pub fn new(chart: &'a Chart) -> Self {
        let mut expected: Vec<Vec<(f64, f64)>> = vec![];
        for s in &chart.series {
            let line: Vec<(f64, f64)> =
                s.points.iter().filter_map(|p| Some((p.x, p.expected?))).collect();
            if !line.is_empty() && !expected.contains(&line) {
                expected.push(line);
            }
        }
        let mut legend = Legend::default();
        for (i, s) in chart.series.iter().enumerate() {
            let marker = (s.points.len() <= DENSE).then(|| Marker::nth(i));
            legend.push(&s.label, Swatch::Line { color: color(i), dashed: false, marker });
        }
        if let (Some(name), false) = (&chart.expected, expected.is_empty()) {
            legend.push(name, Swatch::Line { color: REFERENCE, dashed: true, marker: None });
        }
        for (j, level) in chart.levels.iter().enumerate() {
            let color = color(chart.series.len() + j);
            legend.push(&level.label, Swatch::Line { color, dashed: true, marker: None });
        }
        XyPlot { chart, expected, legend }
    }

    /// The data's extent, every drawn value included, padded so no point sits on the frame.
    fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let points = self.chart.series.iter().flat_map(|s| &s.points);
        let xs: Vec<f64> = points.clone().map(|p| p.x).collect();
        let ys: Vec<f64> = points
            .flat_map(|p: &Point| std::iter::once(p.y).chain(p.expected))
            .chain(self.chart.levels.iter().map(|l| l.y))
            .collect();
        (padded(&xs), padded(&ys))
    }
}

/// `[min, max]` widened by 5% each side (by a unit around a single value).
fn padded(values: &[f64]) -> (f64, f64) {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = if hi > lo { hi - lo } else { lo.abs().max(1.0) };
    (lo - 0.05 * span, hi + 0.05 * span)
}

impl Figure for XyPlot<'_> {
    fn size(&self) -> (u32, u32) {
        (WIDTH, PLOT_HEIGHT + self.legend.height(WIDTH))
    }

    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (plot, legend) = root.split_vertically(PLOT_HEIGHT);
        let ((x0, x1), (y0, y1)) = self.ranges();
        let mut chart = ChartBuilder::on(&plot)
            .caption(self.chart.title(), (FAMILY, 22))
            .margin(12)
            .margin_right(32)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc(self.chart.x.description())
            .y_desc(self.chart.y.as_str())
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        for (j, level) in self.chart.levels.iter().enumerate() {
            let style = color(self.chart.series.len() + j).stroke_width(2);
            let across = [(x0, level.y), (x1, level.y)];
            chart.draw_series(DashedLineSeries::new(across, 8, 6, style))?;
        }
        for (i, series) in self.chart.series.iter().enumerate() {
            let dense = series.points.len() > DENSE;
            // Wide lines are drawn as polygons, which spike on a trace's near-vertical steps.
            let style = color(i).stroke_width(if dense { 1 } else { 2 });
            let points = series.points.iter().map(|p| (p.x, p.y));
            chart.draw_series(LineSeries::new(points, style))?;
            if !dense {
                for p in &series.points {
                    Marker::nth(i).draw(chart.plotting_area(), (p.x, p.y), color(i))?;
                }
            }
        }
        // Formulas last: where a measurement matches its formula, the dashes show on
        // top of the measured line instead of vanishing under it.
        for line in &self.expected {
            let style = REFERENCE.stroke_width(2);
            chart.draw_series(DashedLineSeries::new(line.iter().copied(), 6, 6, style))?;
        }
        self.legend.draw(&legend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::figure::{Level, Series, XAxis};

    #[test]
    fn a_shared_formula_line_is_drawn_once_and_named_once() {
        let point = |x, y| Point { x, y, expected: Some(x) };
        let series = |label: &str| Series {
            label: label.into(),
            points: vec![point(1.0, 1.5), point(2.0, 2.5), point(3.0, 3.5)],
        };
        let chart = Chart {
            stem: "m".into(),
            subject: "KV-cache memory".into(),
            x: XAxis::swept("context", "tokens"),
            y: "MiB".into(),
            series: vec![series("concat"), series("static")],
            levels: vec![Level { label: "reference".into(), y: 9.0 }],
            expected: Some("formula".into()),
        };
        let plot = XyPlot::new(&chart);
        assert_eq!(plot.expected.len(), 1);
        let labels: Vec<&str> = plot.legend.entries.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, ["concat", "static", "formula", "reference"]);
        let (_, (_, y1)) = plot.ranges();
        assert!(y1 > 9.0, "the level is inside the plot");
    }

    #[test]
    fn padding_keeps_a_single_value_off_the_frame() {
        assert_eq!(padded(&[10.0]), (9.5, 10.5));
        assert_eq!(padded(&[0.0, 100.0]), (-5.0, 105.0));
        assert_eq!(padded(&[]), (0.0, 1.0));
    }
}
