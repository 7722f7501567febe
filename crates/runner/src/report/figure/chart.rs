//! Charts as data ([`Chart`]): series of points over an x axis, and the [`Shape`] they are
//! drawn in.

use std::collections::BTreeSet;

use super::style;

/// One measured value of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub x: f64,
    pub y: f64,
    /// What a formula predicts for this point, drawn dashed beside the measurement.
    pub expected: Option<f64>,
}

/// A configuration's points, sorted by x.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<Point>,
}

/// A configuration the x axis does not apply to (a cache keeping every token has no cache
/// budget): one y value, drawn as a dashed line across the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    pub label: String,
    pub y: f64,
}

/// The horizontal axis: a swept parameter, or a measured quantity (always plotted as points).
#[derive(Debug, Clone, PartialEq)]
pub struct XAxis {
    pub name: String,
    pub unit: String,
    pub swept: bool,
}

impl XAxis {
    pub fn swept(name: &str, unit: &str) -> XAxis {
        XAxis { name: name.into(), unit: unit.into(), swept: true }
    }

    pub fn measured(name: &str, unit: &str) -> XAxis {
        XAxis { name: name.into(), unit: unit.into(), swept: false }
    }

    /// "context (tokens)".
    pub(super) fn description(&self) -> String {
        if self.unit.is_empty() {
            self.name.clone()
        } else {
            format!("{} ({})", self.name, self.unit)
        }
    }

    /// "context = 1024 tokens": a swept value as the experiment wrote it, not rounded.
    pub(super) fn at(&self, x: f64) -> String {
        let value = if x.fract() == 0.0 { format!("{x:.0}") } else { style::value_label(x) };
        if self.unit.is_empty() {
            format!("{} = {value}", self.name)
        } else {
            format!("{} = {value} {}", self.name, self.unit)
        }
    }
}

/// A chart as data: what to show; its [`Shape`] decides how.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// File name without extension.
    pub stem: String,
    /// What is shown ("KV-cache memory"); the title adds the x axis where it is swept.
    pub subject: String,
    pub x: XAxis,
    /// The y axis (the value axis of bars).
    pub y: String,
    pub series: Vec<Series>,
    pub levels: Vec<Level>,
    /// The legend's name for the points' `expected` values.
    pub expected: Option<String>,
}

/// How a chart is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A line (or points) per series over the x axis.
    Lines,
    /// A bar per configuration, grouped by x value.
    Bars,
}

impl Shape {
    /// Lines for a measured x or a swept x with three values or more; bars otherwise: one
    /// or two x values draw a single point or a bare segment, which a bar per configuration
    /// compares better.
    pub fn of(x: &XAxis, distinct_x: usize) -> Shape {
        if !x.swept || distinct_x >= 3 { Shape::Lines } else { Shape::Bars }
    }
}

impl Chart {
    /// The x values of the points, ascending, each once.
    pub(super) fn distinct_x(&self) -> Vec<f64> {
        let xs: BTreeSet<u64> =
            self.series.iter().flat_map(|s| &s.points).map(|p| p.x.to_bits()).collect();
        let mut xs: Vec<f64> = xs.into_iter().map(f64::from_bits).collect();
        xs.sort_by(f64::total_cmp);
        xs
    }

    pub fn shape(&self) -> Shape {
        Shape::of(&self.x, self.distinct_x().len())
    }

    /// Whether there is nothing to draw.
    pub fn is_empty(&self) -> bool {
        self.series.iter().all(|s| s.points.is_empty())
    }

    /// "Decode throughput vs context", or for a single swept value "Decode throughput,
    /// context = 256 tokens"; the subject alone over a measured x.
    pub fn title(&self) -> String {
        match self.distinct_x()[..] {
            _ if !self.x.swept => self.subject.clone(),
            [x] => format!("{}, {}", self.subject, self.x.at(x)),
            _ => format!("{} vs {}", self.subject, self.x.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(x: XAxis, xs: &[f64]) -> Chart {
        let points = xs.iter().map(|&x| Point { x, y: 1.0, expected: None }).collect();
        Chart {
            stem: "c".into(),
            subject: "Decode throughput".into(),
            x,
            y: "tok/s".into(),
            series: vec![Series { label: "static".into(), points }],
            levels: vec![],
            expected: None,
        }
    }

    #[test]
    fn two_x_values_or_fewer_make_bars_three_or_more_lines() {
        let context = XAxis::swept("context", "tokens");
        assert_eq!(chart(context.clone(), &[256.0]).shape(), Shape::Bars);
        assert_eq!(chart(context.clone(), &[256.0, 256.0]).shape(), Shape::Bars);
        assert_eq!(chart(context.clone(), &[100.0, 500.0]).shape(), Shape::Bars);
        assert_eq!(chart(context, &[256.0, 1024.0, 2048.0]).shape(), Shape::Lines);
        // A measured x (memory in a trade-off) is plotted whatever its count.
        assert_eq!(chart(XAxis::measured("KV", "MiB"), &[1.0]).shape(), Shape::Lines);
    }

    #[test]
    fn the_title_names_a_single_swept_value() {
        let context = XAxis::swept("context", "tokens");
        assert_eq!(
            chart(context.clone(), &[256.0]).title(),
            "Decode throughput, context = 256 tokens"
        );
        assert_eq!(chart(context.clone(), &[1.0, 2.0]).title(), "Decode throughput vs context");
        assert_eq!(context.at(1024.0), "context = 1024 tokens");
        assert_eq!(XAxis::swept("KV budget", "MiB").at(22.5), "KV budget = 22.5 MiB");
        assert_eq!(chart(XAxis::measured("KV", "MiB"), &[1.0]).title(), "Decode throughput");
    }
}
