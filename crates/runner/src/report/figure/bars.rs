//! A chart drawn as horizontal bars: a row per configuration, named at its left, a bar per x
//! value (one colour per value), the value written at the bar's end.

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::canvas::{DrawResult, Figure, WIDTH};
use super::chart::{Chart, Point};
use super::legend::{Legend, Swatch};
use super::style::{FAMILY, REFERENCE, color, font, text_width, tick, value_label};

/// One bar's thickness and the space between configurations, in pixels.
const BAR: u32 = 16;
const ROW_GAP: u32 = 12;
/// Caption, margins and the value axis around the bars.
const FRAME: u32 = 40 + 24 + 48;
const LABEL_FONT: u32 = 13;
const VALUE_FONT: u32 = 12;

pub(crate) struct BarPlot<'a> {
    chart: &'a Chart,
    /// The x values, each a bar per configuration.
    groups: Vec<f64>,
    legend: Legend,
}

/// A bar where it goes: its row's span in y units (a row is 1 unit tall, the first on top).
struct PlacedBar<'p> {
    point: &'p Point,
    group: usize,
    top: f64,
    bottom: f64,
}

impl<'a> BarPlot<'a> {
    pub fn new(chart: &'a Chart) -> Self {
        let groups = chart.distinct_x();
        let mut legend = Legend::default();
        if groups.len() > 1 {
            for (k, &x) in groups.iter().enumerate() {
                legend.push(chart.x.at(x), Swatch::Block(color(k)));
            }
        }
        let has_expected =
            chart.series.iter().flat_map(|s| &s.points).any(|p| p.expected.is_some());
        if let (Some(name), true) = (&chart.expected, has_expected) {
            legend.push(name, Swatch::Line { color: REFERENCE, dashed: true, marker: None });
        }
        for (j, level) in chart.levels.iter().enumerate() {
            let color = color(groups.len() + j);
            legend.push(&level.label, Swatch::Line { color, dashed: true, marker: None });
        }
        BarPlot { chart, groups, legend }
    }

    fn row_height(&self) -> u32 {
        self.groups.len() as u32 * BAR + ROW_GAP
    }

    fn plot_height(&self) -> u32 {
        FRAME + self.chart.series.len() as u32 * self.row_height()
    }

    /// Room for the longest configuration name left of the bars.
    fn label_width(&self) -> u32 {
        let widest = self.chart.series.iter().map(|s| text_width(&s.label, LABEL_FONT)).max();
        widest.unwrap_or(0).max(40) + 20
    }

    /// The value axis: from zero (bars start there) to the largest value, with room after it
    /// for the value written at the bar's end.
    fn value_range(&self) -> (f64, f64) {
        let values = self.chart.series.iter().flat_map(|s| &s.points);
        let values = values.flat_map(|p| std::iter::once(p.y).chain(p.expected));
        let values: Vec<f64> = values.chain(self.chart.levels.iter().map(|l| l.y)).collect();
        let lo = values.iter().copied().fold(0.0, f64::min);
        let hi = values.iter().copied().fold(0.0, f64::max);
        let hi = if hi > lo { hi } else { lo + 1.0 };
        (lo, hi + 0.12 * (hi - lo))
    }

    /// Every bar's place: within its row, after half a gap, one slot per x value in order.
    fn layout(&self) -> Vec<PlacedBar<'_>> {
        let rows = self.chart.series.len();
        let row_px = f64::from(self.row_height());
        let (bar, gap) = (f64::from(BAR) / row_px, f64::from(ROW_GAP) / 2.0 / row_px);
        let mut placed = vec![];
        for (row, series) in self.chart.series.iter().enumerate() {
            let row_top = (rows - row) as f64;
            for (group, &x) in self.groups.iter().enumerate() {
                let Some(point) = series.points.iter().find(|p| p.x == x) else { continue };
                let top = row_top - gap - group as f64 * bar;
                placed.push(PlacedBar { point, group, top, bottom: top - bar });
            }
        }
        placed
    }
}

impl Figure for BarPlot<'_> {
    fn size(&self) -> (u32, u32) {
        (WIDTH, self.plot_height() + self.legend.height(WIDTH))
    }

    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (plot, legend) = root.split_vertically(self.plot_height());
        let (lo, hi) = self.value_range();
        let rows = self.chart.series.len();
        let mut chart = ChartBuilder::on(&plot)
            .caption(self.chart.title(), (FAMILY, 22))
            .margin(12)
            .margin_right(32)
            .x_label_area_size(48)
            .y_label_area_size(self.label_width())
            .build_cartesian_2d(lo..hi, 0.0..rows as f64)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_desc(self.chart.y.as_str())
            .x_label_formatter(&|v| tick(*v))
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        let bars = self.layout();
        let name_style = TextStyle::from(font(LABEL_FONT)).pos(Pos::new(HPos::Right, VPos::Center));
        for (row, series) in self.chart.series.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(lo, (rows - row) as f64 - 0.5));
            plot.draw(&Text::new(series.label.clone(), (px - 8, py), name_style.clone()))?;
        }
        for b in &bars {
            let fill = color(if self.groups.len() > 1 { b.group } else { 0 }).filled();
            let corners = [(0.0, b.bottom), (b.point.y, b.top)];
            chart.draw_series(std::iter::once(Rectangle::new(corners, fill)))?;
        }
        // Levels over the bars (behind them they would hide), under the values.
        for (j, level) in self.chart.levels.iter().enumerate() {
            let style = color(self.groups.len() + j).stroke_width(2);
            let across = [(level.y, 0.0), (level.y, rows as f64)];
            chart.draw_series(DashedLineSeries::new(across, 8, 6, style))?;
        }
        let value_style = TextStyle::from(font(VALUE_FONT)).pos(Pos::new(HPos::Left, VPos::Center));
        for b in &bars {
            let (p, thickness) = (b.point, b.top - b.bottom);
            if let Some(e) = p.expected {
                let across = [(e, b.bottom - thickness / 4.0), (e, b.top + thickness / 4.0)];
                let style = REFERENCE.stroke_width(2);
                chart.draw_series(std::iter::once(DashedPathElement::new(across, 3, 2, style)))?;
            }
            // The value right after the bar's end, or after the formula's mark where that sits
            // just beyond it (the two would overlap); a mark further out is not the bar's and
            // would take its value away from it.
            let end = match p.expected {
                Some(e) if e > p.y && e - p.y < 0.04 * (hi - lo) => e,
                _ => p.y,
            };
            // On a white backing, so that a level crossing the text does not strike it out.
            let text = value_label(p.y);
            let width = text_width(&text, VALUE_FONT) as i32;
            let value = EmptyElement::at((end.max(0.0), b.top - thickness / 2.0))
                + Rectangle::new([(3, -7), (width + 7, 7)], WHITE.filled())
                + Text::new(text, (5, 0), value_style.clone());
            chart.plotting_area().draw(&value)?;
        }
        self.legend.draw(&legend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::figure::{Level, Series, XAxis};

    fn chart(xs: &[f64]) -> Chart {
        let points = |y: f64| xs.iter().map(|&x| Point { x, y, expected: Some(y) }).collect();
        Chart {
            stem: "b".into(),
            subject: "KV-cache memory".into(),
            x: XAxis::swept("context", "tokens"),
            y: "KV allocated (MiB)".into(),
            series: vec![
                Series { label: "kv_heads=1, batch=1".into(), points: points(3.75) },
                Series { label: "kv_heads=9, batch=4".into(), points: points(135.0) },
            ],
            levels: vec![Level { label: "concat (all tokens)".into(), y: 140.0 }],
            expected: Some("formula".into()),
        }
    }

    #[test]
    fn two_x_values_get_a_colour_each_in_the_legend() {
        let two = chart(&[100.0, 500.0]);
        let labels: Vec<String> =
            BarPlot::new(&two).legend.entries.iter().map(|e| e.label.clone()).collect();
        let want = ["context = 100 tokens", "context = 500 tokens", "formula"];
        assert_eq!(labels[..3], want);
        // One x value: the title says it, the legend has only the references.
        let one = chart(&[256.0]);
        let labels: Vec<String> =
            BarPlot::new(&one).legend.entries.iter().map(|e| e.label.clone()).collect();
        assert_eq!(labels, ["formula", "concat (all tokens)"]);
    }

    #[test]
    fn bars_stack_in_their_row_first_configuration_on_top() {
        let two = chart(&[100.0, 500.0]);
        let plot = BarPlot::new(&two);
        let bars = plot.layout();
        assert_eq!(bars.len(), 4);
        // Row 0 spans y 1..2, row 1 spans 0..1; within a row, group 0 above group 1.
        assert!(bars[0].bottom >= 1.0 && bars[0].top <= 2.0);
        assert!(bars[2].bottom >= 0.0 && bars[2].top <= 1.0);
        assert_eq!(bars[1].top, bars[0].bottom);
        assert_eq!((bars[0].group, bars[1].group), (0, 1));
    }

    #[test]
    fn bars_start_at_zero_and_leave_room_for_their_values() {
        let plot_chart = chart(&[256.0]);
        let plot = BarPlot::new(&plot_chart);
        let (lo, hi) = plot.value_range();
        assert_eq!(lo, 0.0);
        assert!(hi > 140.0 * 1.1);
        assert!(plot.label_width() > text_width("kv_heads=9, batch=4", LABEL_FONT));
        assert_eq!(plot.size().1, plot.plot_height() + plot.legend.height(WIDTH));
    }
}
