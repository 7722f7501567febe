//! Typed result rows. Each workload measures into one serde struct of its metric columns
//! ([`Metrics`]); the struct's fields, in declaration order, *are* the CSV's metric columns. The
//! CSV sink writes a row as the run's columns followed by [`fields`] of the metrics, and readers
//! get them back by column name with [`read`], never by position.

use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A workload's metric columns.
pub trait Metrics: Serialize + DeserializeOwned + Default {
    /// The column names, in order (computed once per type; see [`column_names`]).
    fn columns() -> &'static [&'static str];
}

/// Implements [`Metrics`] for a struct: its column names come from serde, once.
#[macro_export]
macro_rules! metrics_row {
    ($t:ty) => {
        impl $crate::rows::Metrics for $t {
            fn columns() -> &'static [&'static str] {
                static NAMES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
                $crate::rows::column_names::<$t>(&NAMES)
            }
        }
    };
}

/// The serde field names of `M` (a CSV header written from `M::default()`), leaked once into
/// `cell` so callers get `&'static str`s.
pub(crate) fn column_names<M: Serialize + Default>(
    cell: &'static OnceLock<Vec<&'static str>>,
) -> &'static [&'static str] {
    cell.get_or_init(|| {
        let mut w = csv::WriterBuilder::new().has_headers(true).from_writer(vec![]);
        w.serialize(M::default()).expect("a metrics struct serializes");
        let bytes = w.into_inner().expect("in-memory writer");
        let mut r = csv::ReaderBuilder::new().has_headers(true).from_reader(bytes.as_slice());
        let header = r.headers().expect("the header just written");
        header.iter().map(|name| &*Box::leak(name.to_string().into_boxed_str())).collect()
    })
}

/// The metric fields of one row, in column order, as the CSV holds them.
pub fn fields<M: Metrics>(metrics: &M) -> Result<Vec<String>> {
    let mut w = csv::WriterBuilder::new().has_headers(false).from_writer(vec![]);
    w.serialize(metrics)?;
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut r = csv::ReaderBuilder::new().has_headers(false).from_reader(bytes.as_slice());
    let record = r.records().next().context("a serialized row")??;
    Ok(record.iter().map(String::from).collect())
}

/// The metrics of one CSV row, read by column name (columns the file lacks take their
/// default, so older CSVs still read).
pub fn read<M: Metrics>(header: &[String], row: &[String]) -> Result<M> {
    let mut names = csv::StringRecord::new();
    let mut values = csv::StringRecord::new();
    for (name, value) in header.iter().zip(row) {
        if M::columns().contains(&name.as_str()) {
            names.push_field(name);
            values.push_field(value);
        }
    }
    values.deserialize(Some(&names)).context("reading a result row back")
}

/// A float written with `D` decimals (so CSVs stay stable and readable), read back as `f64`.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Fixed<const D: usize>(pub f64);

impl<const D: usize> fmt::Display for Fixed<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.*}", D, self.0)
    }
}

impl<const D: usize> Serialize for Fixed<D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de, const D: usize> Deserialize<'de> for Fixed<D> {
    fn deserialize<De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        parse_float(d).map(Fixed)
    }
}

/// Serializes a float newtype as its `Display` text and reads it back from any number.
macro_rules! written_as_displayed {
    ($t:ident) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
                parse_float(d).map($t)
            }
        }
    };
}

/// A float with six decimals where that reads well, scientific notation beyond 1e9 (the
/// perplexity of random weights overflows any fixed format).
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Sig6(pub f64);

impl fmt::Display for Sig6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.is_finite() && v.abs() < 1e9 { write!(f, "{v:.6}") } else { write!(f, "{v:.6e}") }
    }
}

impl Sig6 {
    /// The value as written (what a reader of the CSV gets back).
    pub fn written(self) -> f64 {
        self.to_string().parse().unwrap_or(self.0)
    }
}

written_as_displayed!(Sig6);

/// A float in scientific notation with six decimals (`1.234567e-9`): for values such as a KL
/// divergence, where a lossless cache's 1e-9 and a lossy one's 0.3 must both be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, PartialOrd)]
pub struct Sci6(pub f64);

impl fmt::Display for Sci6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6e}", self.0)
    }
}

written_as_displayed!(Sci6);

fn parse_float<'de, De: Deserializer<'de>>(d: De) -> Result<f64, De::Error> {
    struct Float(PhantomData<f64>);
    impl serde::de::Visitor<'_> for Float {
        type Value = f64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<f64, E> {
            v.trim().parse().map_err(|_| E::custom(format!("'{v}' is not a number")))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
    }
    d.deserialize_str(Float(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Sample {
        tokens: usize,
        ppl: Sig6,
        rate: Fixed<1>,
        peak: Option<u64>,
        label: String,
    }
    crate::metrics_row!(Sample);

    #[test]
    fn columns_come_from_the_fields_and_rows_round_trip_by_name() {
        assert_eq!(Sample::columns(), ["tokens", "ppl", "rate", "peak", "label"]);
        let s = Sample {
            tokens: 7,
            ppl: Sig6(3.25),
            rate: Fixed(12.345),
            peak: None,
            label: "a,b".into(),
        };
        let f = fields(&s).unwrap();
        assert_eq!(f, ["7", "3.250000", "12.3", "", "a,b"]);
        // Read back from a row with other columns around, in another order.
        let header: Vec<String> =
            ["run_id", "label", "tokens", "rate", "ppl", "peak"].map(String::from).to_vec();
        let row: Vec<String> = ["x", "a,b", "7", "12.3", "3.250000", ""].map(String::from).to_vec();
        let back: Sample = read(&header, &row).unwrap();
        assert_eq!(back, Sample { rate: Fixed(12.3), ..s });
    }

    #[test]
    fn huge_values_are_written_in_scientific_notation() {
        assert_eq!(Sig6(1.5e12).to_string(), "1.500000e12");
        assert_eq!(Sig6(f64::INFINITY).to_string(), "inf");
        assert_eq!(Sig6(2.0 / 3.0).written(), 0.666667);
        assert_eq!(Sci6(1.25e-9).to_string(), "1.250000e-9");
        assert_eq!(Sci6(0.0).to_string(), "0.000000e0");
    }
}
