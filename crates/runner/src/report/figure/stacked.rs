//! Stacked percentage bars: a bar per configuration, its parts stacked bottom to top.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::legend::{Legend, Swatch};
use super::style::{FAMILY, tick};
use super::{DrawResult, Figure, WIDTH};

const PLOT_HEIGHT: u32 = 560;

pub struct StackedBars {
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
        let mut chart = ChartBuilder::on(&plot)
            .caption(&self.title, (FAMILY, 22))
            .margin(12)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..100.0)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => {
                    self.bars.get(*i).map(|(label, _)| label.clone()).unwrap_or_default()
                }
                _ => String::new(),
            })
            .y_desc(self.y.as_str())
            .y_label_formatter(&|v| tick(*v))
            .label_style((FAMILY, 13))
            .axis_desc_style((FAMILY, 15))
            .light_line_style(RGBColor(238, 238, 238))
            .draw()?;
        for (i, (_, values)) in self.bars.iter().enumerate() {
            let mut bottom = 0.0;
            for ((_, color), value) in self.parts.iter().zip(values) {
                let top = (bottom + value).min(100.0);
                let mut bar = Rectangle::new(
                    [(SegmentValue::Exact(i), bottom), (SegmentValue::Exact(i + 1), top)],
                    color.filled(),
                );
                bar.set_margin(0, 0, 10, 10);
                chart.draw_series(std::iter::once(bar))?;
                bottom = top;
            }
        }
        self.legend().draw(&legend)
    }
}
