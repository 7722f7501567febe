//! Stacked percentage bars: a bar per configuration, its parts stacked bottom to top.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::canvas::{DrawResult, Figure, WIDTH};
use super::legend::{Legend, Swatch};
use super::style::{FAMILY, text_width, tick};

const PLOT_HEIGHT: u32 = 560;
const LABEL_SIZE: u32 = 13;

pub(crate) struct StackedBars {
    pub title: String,
    pub y: String,
    /// The parts' names and colours, bottom first.
    pub parts: Vec<(String, RGBColor)>,
    /// Each bar's label and its parts in percent, in `parts` order.
    pub bars: Vec<(String, Vec<f64>)>,
}

impl StackedBars {
    fn legend(&self) -> Legend {
        let mut legend = Legend::default();
        for (name, color) in &self.parts {
            legend.push(name, Swatch::Block(*color));
        }
        legend
    }
}

impl Figure for StackedBars {
    fn size(&self) -> (u32, u32) {
        (WIDTH, PLOT_HEIGHT + self.legend().height(WIDTH))
    }

    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (plot, legend) = root.split_vertically(PLOT_HEIGHT);
        let n = self.bars.len().max(1);
        let widest = self.bars.iter().map(|(l, _)| text_width(l, LABEL_SIZE)).max().unwrap_or(0);
        // Labels wider than a bar's slot would run into each other: lay the bars down.
        if widest + 8 > (WIDTH - 100) / n as u32 {
            self.render_across(&plot, n, widest)?;
        } else {
            self.render_upright(&plot, n)?;
        }
        self.legend().draw(&legend)
    }
}

impl StackedBars {
    fn label(&self, v: &SegmentValue<usize>) -> String {
        match v {
            SegmentValue::CenterOf(i) => {
                self.bars.get(*i).map(|(label, _)| label.clone()).unwrap_or_default()
            }
            _ => String::new(),
        }
    }

    /// Each bar's parts as `(bar index, from, to)` percent, bottom first, with their colours.
    fn segments(&self) -> impl Iterator<Item = (usize, f64, f64, RGBColor)> + '_ {
        self.bars.iter().enumerate().flat_map(|(i, (_, values))| {
            let mut bottom = 0.0;
            self.parts.iter().zip(values).map(move |((_, color), value)| {
                let from = bottom;
                bottom = (bottom + value).min(100.0);
                (i, from, bottom, *color)
            })
        })
    }

    /// Vertical bars, labels under them.
    fn render_upright<DB: DrawingBackend>(
        &self,
        plot: &DrawingArea<DB, Shift>,
        n: usize,
    ) -> DrawResult<DB> {
        let mut chart = ChartBuilder::on(plot)
            .caption(&self.title, (FAMILY, 22))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..100.0)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| self.label(v))
            .y_desc(self.y.as_str())
            .y_label_formatter(&|v| tick(*v))
            .label_style((FAMILY, LABEL_SIZE))
            .axis_desc_style((FAMILY, 15))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        for (i, from, to, color) in self.segments() {
            let mut bar = Rectangle::new(
                [(SegmentValue::Exact(i), from), (SegmentValue::Exact(i + 1), to)],
                color.filled(),
            );
            bar.set_margin(0, 0, 10, 10);
            chart.draw_series(std::iter::once(bar))?;
        }
        Ok(())
    }

    /// Horizontal bars, labels beside them (first bar on top).
    fn render_across<DB: DrawingBackend>(
        &self,
        plot: &DrawingArea<DB, Shift>,
        n: usize,
        widest: u32,
    ) -> DrawResult<DB> {
        let mut chart = ChartBuilder::on(plot)
            .caption(&self.title, (FAMILY, 22))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(widest + 16)
            .build_cartesian_2d(0.0..100.0, (0..n - 1).into_segmented())?;
        let flip = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => SegmentValue::CenterOf(n - 1 - i),
            other => other.clone(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| self.label(&flip(v)))
            .x_desc(self.y.as_str())
            .x_label_formatter(&|v| tick(*v))
            .label_style((FAMILY, LABEL_SIZE))
            .axis_desc_style((FAMILY, 15))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        for (i, from, to, color) in self.segments() {
            let row = n - 1 - i;
            let mut bar = Rectangle::new(
                [(from, SegmentValue::Exact(row)), (to, SegmentValue::Exact(row + 1))],
                color.filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            chart.draw_series(std::iter::once(bar))?;
        }
        Ok(())
    }
}
