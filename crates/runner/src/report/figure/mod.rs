//! Charts as data ([`Chart`]) and the one place that writes pictures: every figure has a single
//! drawing body, generic over plotters' [`DrawingBackend`], run once into a PNG and once into an
//! SVG by [`save`].
//!
//! The picture a chart becomes follows the data's shape ([`Shape::of`]): a line needs three x
//! values to show a trend, so a swept x with one or two values becomes bars, one per
//! configuration.

mod bars;
mod canvas;
mod chart;
pub(crate) mod heatmap;
mod legend;
pub mod stacked;
mod style;
mod xy;

use std::path::{Path, PathBuf};

use anyhow::Result;

pub use canvas::save;
pub use chart::{Chart, Level, Point, Series, Shape, XAxis};

impl Chart {
    /// Draws the chart in its [`Shape`] into `<dir>/<stem>.{png,svg}`.
    pub fn save(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        match self.shape() {
            Shape::Lines => save(&xy::XyPlot::new(self), dir, &self.stem),
            Shape::Bars => save(&bars::BarPlot::new(self), dir, &self.stem),
        }
    }
}
