//! What every chart shares: colours, point markers, fonts, text widths and tick labels.

use plotters::coord::CoordTranslate;
use plotters::prelude::*;
use plotters::style::FontDesc;

use super::canvas::DrawResult;

/// The font every chart writes with.
pub(crate) const FAMILY: &str = "sans-serif";

/// Distinct, saturated colours (Tableau 10): none too pale to read on white.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Reference lines drawn from a formula rather than measured.
pub(crate) const REFERENCE: RGBColor = RGBColor(60, 60, 60);

/// The `i`-th series' colour.
pub(crate) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

pub(crate) fn font(size: u32) -> FontDesc<'static> {
    (FAMILY, size).into_font()
}

/// The rendered width of `text` in `size`-pixel type; a conservative guess where the font
/// cannot be measured.
pub(crate) fn text_width(text: &str, size: u32) -> u32 {
    font(size).box_size(text).map_or(text.chars().count() as u32 * size * 6 / 10, |(w, _)| w)
}

/// Point shapes, cycled beside the colours; drawn open, so that coinciding points all show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    Circle,
    Triangle,
    Square,
    Cross,
    Diamond,
}

impl Marker {
    /// The `i`-th series' marker. The markers shift by one each time the colours wrap, so no
    /// two of the first 50 series share both colour and marker.
    pub fn nth(i: usize) -> Marker {
        const ALL: [Marker; 5] =
            [Marker::Circle, Marker::Triangle, Marker::Square, Marker::Cross, Marker::Diamond];
        ALL[(i + i / PALETTE.len()) % ALL.len()]
    }

    /// Draws the marker centred on `at`, in the area's own coordinates (data or pixels). Open
    /// shapes: where two series' points coincide, both outlines still show.
    pub fn draw<DB: DrawingBackend, CT: CoordTranslate>(
        self,
        area: &DrawingArea<DB, CT>,
        at: CT::From,
        color: RGBColor,
    ) -> DrawResult<DB> {
        let outline = color.stroke_width(2);
        match self {
            Marker::Circle => area.draw(&Circle::new(at, 5, outline)),
            Marker::Triangle => {
                let corners = vec![(0, -6), (6, 4), (-6, 4), (0, -6)];
                area.draw(&(EmptyElement::at(at) + PathElement::new(corners, outline)))
            }
            Marker::Square => {
                area.draw(&(EmptyElement::at(at) + Rectangle::new([(-5, -5), (5, 5)], outline)))
            }
            Marker::Cross => area.draw(&Cross::new(at, 5, outline)),
            Marker::Diamond => {
                let corners = vec![(0, -6), (6, 0), (0, 6), (-6, 0), (0, -6)];
                area.draw(&(EmptyElement::at(at) + PathElement::new(corners, outline)))
            }
        }
    }
}

/// Compact axis and value labels: 0.25, 12, 1.5k, 16k, 3.2M, 1.2e12.
pub(crate) fn tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e9).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e3 {
        format!("{}k", trim(format!("{:.2}", v / 1e3)))
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(format!("{v:.2}"))
    } else {
        // Two significant digits below 1, so ticks 0.005 apart do not print alike (0.045, not
        // 0.04 twice).
        let decimals = (1 - a.log10().floor() as i32).max(2) as usize;
        trim(format!("{v:.decimals$}"))
    }
}

/// A measured value written beside its mark: four significant digits below a thousand
/// (0.01562, 3.75, 26.06, 135), [`tick`]'s form above.
pub(crate) fn value_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || !(1e-3..1e3).contains(&a) {
        return tick(v);
    }
    let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
    trim(format!("{v:.decimals$}"))
}

/// Drops a fraction's trailing zeros: "1.50" → "1.5", "16.00" → "16".
fn trim(number: String) -> String {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short_and_drop_trailing_zeros() {
        let cases = [
            (0.0, "0"),
            (0.25, "0.25"),
            (0.045, "0.045"),
            (0.005, "0.005"),
            (0.01, "0.01"),
            (12.0, "12"),
            (12.5, "12.5"),
            (99.999, "100"),
            (256.0, "256"),
            (1024.0, "1.02k"),
            (5000.0, "5k"),
            (12_500.0, "12.5k"),
            (16_384.0, "16.38k"),
            (3_200_000.0, "3.2M"),
            (-1500.0, "-1.5k"),
            (1.2e12, "1.2e12"),
            (2.4e-4, "2.4e-4"),
        ];
        for (v, want) in cases {
            assert_eq!(tick(v), want, "tick({v})");
        }
    }

    #[test]
    fn values_keep_four_significant_digits() {
        let cases = [
            (0.015625, "0.01562"),
            (0.0625, "0.0625"),
            (3.75, "3.75"),
            (11.25, "11.25"),
            (26.063946, "26.06"),
            (135.0, "135"),
            (409_975.6, "409.98k"),
            (0.0, "0"),
        ];
        for (v, want) in cases {
            assert_eq!(value_label(v), want, "value_label({v})");
        }
    }

    #[test]
    fn the_first_fifty_series_differ_in_colour_or_marker() {
        let styles: std::collections::BTreeSet<(String, String)> =
            (0..50).map(|i| (format!("{:?}", color(i)), format!("{:?}", Marker::nth(i)))).collect();
        assert_eq!(styles.len(), 50);
    }

    #[test]
    fn neighbouring_series_differ_in_colour_and_marker() {
        for i in 0..12 {
            assert_ne!(color(i), color(i + 1));
            assert_ne!(Marker::nth(i), Marker::nth(i + 1));
        }
    }
}
