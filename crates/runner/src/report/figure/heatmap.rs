//! A heatmap of percentages: the needle-in-a-haystack picture (haystack length across, needle
//! depth down, retrieval accuracy in each cell, red at 0% to green at 100%, the value written
//! in the cell so the picture reads without colour).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::canvas::{DrawResult, Figure, WIDTH};
use super::style::{FAMILY, text_width};

const CELL_HEIGHT: u32 = 36;
const TOP: u32 = 48;
const LEFT: u32 = 120;
const BOTTOM: u32 = 64;

pub(crate) struct Heatmap {
    pub title: String,
    /// The columns' axis name and labels (left to right).
    pub x: String,
    pub columns: Vec<String>,
    /// The rows' axis name and labels (top to bottom).
    pub y: String,
    pub rows: Vec<String>,
    /// `cells[row][column]`: a percent, or `None` where nothing was measured.
    pub cells: Vec<Vec<Option<f64>>>,
}

/// Red (0%) through yellow to green (100%).
fn shade(pct: f64) -> RGBColor {
    let t = (pct / 100.0).clamp(0.0, 1.0);
    let (r, g) = if t < 0.5 {
        (230.0, 80.0 + 2.0 * t * 150.0)
    } else {
        (230.0 - (t - 0.5) * 2.0 * 170.0, 230.0)
    };
    RGBColor(r as u8, g as u8, 90)
}

impl Figure for Heatmap {
    fn size(&self) -> (u32, u32) {
        (WIDTH, TOP + CELL_HEIGHT * self.rows.len().max(1) as u32 + BOTTOM)
    }

    fn render<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        let (w, _) = self.size();
        let title = (FAMILY, 20).into_font();
        let tw = text_width(&self.title, 20) as i32;
        root.draw(&Text::new(self.title.clone(), ((w as i32 - tw) / 2, 12), title))?;
        let n_cols = self.columns.len().max(1) as u32;
        let cell_w = (w - LEFT - 24) / n_cols;
        let label = (FAMILY, 13).into_font();
        let axis = (FAMILY, 15).into_font();
        for (r, row) in self.cells.iter().enumerate() {
            let y0 = (TOP + CELL_HEIGHT * r as u32) as i32;
            let name = self.rows.get(r).cloned().unwrap_or_default();
            let nw = text_width(&name, 13) as i32;
            root.draw(&Text::new(name, (LEFT as i32 - 10 - nw, y0 + 11), label.clone()))?;
            for (c, cell) in row.iter().enumerate() {
                let x0 = (LEFT + cell_w * c as u32) as i32;
                let corners = [(x0, y0), (x0 + cell_w as i32 - 2, y0 + CELL_HEIGHT as i32 - 2)];
                let (fill, text) = match cell {
                    Some(p) => (shade(*p), format!("{p:.0}%")),
                    None => (RGBColor(235, 235, 235), "–".to_string()),
                };
                root.draw(&Rectangle::new(corners, fill.filled()))?;
                let tw = text_width(&text, 13) as i32;
                let at = (x0 + (cell_w as i32 - tw) / 2, y0 + 11);
                root.draw(&Text::new(text, at, label.clone()))?;
            }
        }
        let below = (TOP + CELL_HEIGHT * self.rows.len() as u32) as i32 + 6;
        for (c, name) in self.columns.iter().enumerate() {
            let x0 = (LEFT + cell_w * c as u32) as i32;
            let tw = text_width(name, 13) as i32;
            root.draw(&Text::new(
                name.clone(),
                (x0 + (cell_w as i32 - tw) / 2, below),
                label.clone(),
            ))?;
        }
        let xw = text_width(&self.x, 15) as i32;
        let x_at = (LEFT as i32 + (cell_w * n_cols) as i32 / 2 - xw / 2, below + 24);
        root.draw(&Text::new(self.x.clone(), x_at, axis.clone()))?;
        root.draw(&Text::new(self.y.clone(), (8, TOP as i32 - 22), axis))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shades_run_from_red_to_green() {
        assert_eq!(shade(0.0), RGBColor(230, 80, 90));
        assert_eq!(shade(100.0), RGBColor(60, 230, 90));
        let mid = shade(50.0);
        assert!(mid.0 > 200 && mid.1 > 200, "yellow in the middle: {mid:?}");
    }
}
