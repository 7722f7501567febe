//! The one place that writes pictures: a [`Figure`] has a single drawing body, generic over
//! plotters' [`DrawingBackend`], run once into a PNG and once into an SVG by [`save`].

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Every chart is this wide; heights follow the content (bars, legend rows).
pub(super) const WIDTH: u32 = 960;

/// What one drawing body returns, whatever the backend.
pub(crate) type DrawResult<DB> =
    Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

/// A picture whose size is known before it is drawn.
pub(crate) trait Figure {
    fn size(&self) -> (u32, u32);
    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB>;
}

/// Writes `<dir>/<stem>.png` and `<dir>/<stem>.svg` from the same drawing; returns both paths.
pub fn save(figure: &impl Figure, dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    present(BitMapBackend::new(&png, figure.size()).into_drawing_area(), figure, &png)?;
    present(SVGBackend::new(&svg, figure.size()).into_drawing_area(), figure, &svg)?;
    Ok(vec![png, svg])
}

fn present<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    figure: &impl Figure,
    path: &Path,
) -> Result<()> {
    let failed = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{}: {e}", path.display());
    figure.render(&root).map_err(failed)?;
    root.present().map_err(failed)
}
