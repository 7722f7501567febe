//! The legend, laid out below the plot in as many columns as fit the canvas: every entry
//! stays inside the picture, a label too long for a column wraps at its spaces.

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use super::canvas::DrawResult;
use super::style::{Marker, font, text_width};

const FONT: u32 = 13;
const LINE_HEIGHT: u32 = 18;
/// Space kept free around the entries.
const MARGIN: u32 = 16;
/// The sample line or block left of each label, and the gap after it.
const SWATCH: u32 = 28;
const GAP: u32 = 6;
/// Between columns.
const COLUMN_GAP: u32 = 24;

/// How an entry is drawn left of its label.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Swatch {
    /// A line sample, optionally dashed and with the series' point marker on it.
    Line { color: RGBColor, dashed: bool, marker: Option<Marker> },
    /// A filled block (bars).
    Block(RGBColor),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub label: String,
    pub swatch: Swatch,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Legend {
    pub entries: Vec<Entry>,
}

/// Where each entry goes: its top-left corner and its label's lines.
struct Placement {
    at: (i32, i32),
    lines: Vec<String>,
}

impl Legend {
    pub fn push(&mut self, label: impl Into<String>, swatch: Swatch) {
        self.entries.push(Entry { label: label.into(), swatch });
    }

    /// The height the entries take on a canvas `width` pixels wide (0 without entries).
    pub(crate) fn height(&self, width: u32) -> u32 {
        self.layout(width).1
    }

    /// Entries in reading order, left to right, then down; all columns as wide as the widest
    /// label needs, or the whole width when one label needs more (it then wraps).
    fn layout(&self, width: u32) -> (Vec<Placement>, u32) {
        if self.entries.is_empty() {
            return (vec![], 0);
        }
        let room = width.saturating_sub(2 * MARGIN).max(SWATCH + GAP + 40);
        let widest = self.entries.iter().map(|e| text_width(&e.label, FONT)).max().unwrap_or(0);
        let column = (SWATCH + GAP + widest + COLUMN_GAP).min(room);
        let columns = ((room / column) as usize).clamp(1, self.entries.len());
        let text_room = column.saturating_sub(SWATCH + GAP + COLUMN_GAP).max(room / 4);
        let mut placements = vec![];
        let mut y = MARGIN / 2;
        for row in self.entries.chunks(columns) {
            let wrapped: Vec<Vec<String>> = row.iter().map(|e| wrap(&e.label, text_room)).collect();
            for (c, lines) in wrapped.iter().enumerate() {
                let x = MARGIN + c as u32 * column;
                placements.push(Placement { at: (x as i32, y as i32), lines: lines.clone() });
            }
            y += wrapped.iter().map(Vec::len).max().unwrap_or(1) as u32 * LINE_HEIGHT + 4;
        }
        (placements, y + MARGIN / 2)
    }

    /// Draws the entries into `area`, which should be [`Legend::height`] tall.
    pub fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>) -> DrawResult<DB> {
        let (width, _) = area.dim_in_pixel();
        let (placements, _) = self.layout(width);
        for (entry, place) in self.entries.iter().zip(placements) {
            let (x, y) = place.at;
            let mid = y + LINE_HEIGHT as i32 / 2;
            let sample = [(x + 2, mid), (x + SWATCH as i32 - 4, mid)];
            match entry.swatch {
                Swatch::Line { color, dashed, marker } => {
                    let style = color.stroke_width(2);
                    if dashed {
                        area.draw(&DashedPathElement::new(sample, 5, 3, style))?;
                    } else {
                        area.draw(&PathElement::new(sample, style))?;
                    }
                    if let Some(marker) = marker {
                        marker.draw(area, (x + SWATCH as i32 / 2 - 1, mid), color)?;
                    }
                }
                Swatch::Block(color) => {
                    let corners = [(x + 4, mid - 6), (x + SWATCH as i32 - 6, mid + 6)];
                    area.draw(&Rectangle::new(corners, color.filled()))?;
                }
            }
            let text_x = x + (SWATCH + GAP) as i32;
            for (i, line) in place.lines.iter().enumerate() {
                let top = y + 2 + (i as u32 * LINE_HEIGHT) as i32;
                area.draw(&Text::new(line.clone(), (text_x, top), font(FONT)))?;
            }
        }
        Ok(())
    }
}

/// Breaks `text` at spaces into lines at most `room` pixels wide (a single word wider than
/// that keeps a line of its own).
fn wrap(text: &str, room: u32) -> Vec<String> {
    let mut lines: Vec<String> = vec![];
    for word in text.split(' ') {
        match lines.last_mut() {
            Some(line) if text_width(&format!("{line} {word}"), FONT) <= room => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legend(labels: &[&str]) -> Legend {
        let mut legend = Legend::default();
        for label in labels {
            legend.push(*label, Swatch::Block(RGBColor(0, 0, 0)));
        }
        legend
    }

    #[test]
    fn entries_fill_columns_and_stay_inside_the_canvas() {
        let labels: Vec<String> = (0..16).map(|i| format!("kv_heads={i}, first-head")).collect();
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let legend = legend(&refs);
        let (placements, height) = legend.layout(960);
        assert!(placements.iter().any(|p| p.at.0 > MARGIN as i32), "more than one column");
        for (p, label) in placements.iter().zip(&labels) {
            let right = p.at.0 as u32 + SWATCH + GAP + text_width(label, FONT);
            assert!(right <= 960 - MARGIN, "'{label}' ends at {right}");
            assert!((p.at.1 as u32) < height);
        }
        assert_eq!(legend.height(960), height);
        assert_eq!(Legend::default().height(960), 0);
    }

    #[test]
    fn a_label_wider_than_the_canvas_wraps() {
        let long = "a very long legend label ".repeat(12);
        let legend = legend(&[long.trim()]);
        let (placements, height) = legend.layout(480);
        assert!(placements[0].lines.len() > 1);
        for line in &placements[0].lines {
            assert!(text_width(line, FONT) <= 480, "{line}");
        }
        assert!(height >= placements[0].lines.len() as u32 * LINE_HEIGHT);
        assert_eq!(placements[0].lines.join(" "), long.trim());
    }
}
