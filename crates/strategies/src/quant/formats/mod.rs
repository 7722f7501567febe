//! The quantization formats: how a group's range maps onto integer codes, one file each. A
//! format is its file (a type implementing [`Format`]) plus its name in the `formats!` list
//! below, which makes [`Scheme`] — the value experiments name (`scheme = "q4_0"`) — with one
//! variant per format and every question of it answered by that format's file.
//!
//! Codes are always unsigned (`0..2^bits`): symmetric codes (and llama.cpp's `q8_0` and `q4_0`)
//! carry an implicit zero point of `2^(bits-1)`, so every format shares the packing and one code
//! dtype. llama.cpp's block formats fix `bits` and a group of [`BLOCK_VALUES`], and keep their
//! metadata in f16 (the scales computed here are f32 and are rounded when a plane stores them, as
//! llama.cpp rounds `d` when it writes a block; it quantizes with the unrounded `1/d`, as here).

use std::fmt;

use burn::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::levels::Quantized;

/// Values per block of llama.cpp's formats (`QK8_0 = QK4_0 = QK4_1 = 32`).
pub const BLOCK_VALUES: usize = 32;

/// One format: its name, what it fixes, and its quantizer.
pub(crate) trait Format {
    /// The name in TOML and CSVs.
    const NAME: &'static str;
    /// The bit width a llama.cpp block format fixes (`None`: any of [`crate::quant::CODE_BITS`]
    /// up to [`Format::MAX_BITS`]).
    const FIXED_BITS: Option<u8> = None;
    /// The widest code the format takes.
    const MAX_BITS: u8 = 8;
    /// Whether groups carry a zero point (an offset) beside the scale.
    const ZERO_POINT: bool;

    /// The quantization step of a group with this range at `bits`: what `|x - deq(q(x))| <=
    /// step / 2` is measured against.
    fn step(bits: u8, min: f32, max: f32) -> f32;

    /// The value of each code at `bits`, scaled by a group's scale and offset by its zero
    /// point, for a codebook format; `None` for evenly spaced codes (`code · scale + zero`, or
    /// `(code - 2^(bits-1)) · scale` without a zero point).
    fn levels(_bits: u8) -> Option<&'static [f32]> {
        None
    }

    /// Quantizes `x` at `bits`; every slice along `dim` is one group.
    fn quantize<B: Backend, const D: usize>(
        bits: u8,
        x: Tensor<B, D>,
        dim: usize,
    ) -> Quantized<B, D>;
}

/// Declares each format's file and makes [`Scheme`] of them: adding a format is its file plus
/// `module::Type` here.
macro_rules! formats {
    ($($module:ident :: $format:ident),* $(,)?) => {
        $(pub mod $module;)*

        /// A quantization format, by the name experiments use.
        #[allow(non_camel_case_types)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Scheme {
            $($format,)*
        }

        impl Scheme {
            /// Every scheme, in the order `runner list` shows them.
            pub const ALL: &[Scheme] = &[$(Self::$format),*];

            /// The name in TOML and CSVs.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$format => <$module::$format as Format>::NAME,)*
                }
            }

            /// The bit width a block format fixes (`None`: any of 8 and 4).
            pub fn fixed_bits(self) -> Option<u8> {
                match self {
                    $(Self::$format => <$module::$format as Format>::FIXED_BITS,)*
                }
            }

            /// The widest code the scheme takes.
            pub fn max_bits(self) -> u8 {
                match self {
                    $(Self::$format => <$module::$format as Format>::MAX_BITS,)*
                }
            }

            /// [`Format::levels`] of this scheme.
            pub fn levels(self, bits: u8) -> Option<&'static [f32]> {
                match self {
                    $(Self::$format => <$module::$format as Format>::levels(bits),)*
                }
            }

            /// Whether groups carry a zero point (an offset) beside the scale.
            pub(crate) fn has_zero_point(self) -> bool {
                match self {
                    $(Self::$format => <$module::$format as Format>::ZERO_POINT,)*
                }
            }

            /// [`Format::step`] of this scheme.
            pub fn step(self, bits: u8, min: f32, max: f32) -> f32 {
                match self {
                    $(Self::$format => <$module::$format as Format>::step(bits, min, max),)*
                }
            }

            /// [`Format::quantize`] of this scheme.
            pub fn quantize<B: Backend, const D: usize>(
                self,
                bits: u8,
                x: Tensor<B, D>,
                dim: usize,
            ) -> Quantized<B, D> {
                match self {
                    $(Self::$format => <$module::$format as Format>::quantize(bits, x, dim),)*
                }
            }
        }
    };
}

formats![
    asymmetric::Asymmetric,
    symmetric::Symmetric,
    q8_0::Q8_0,
    q4_0::Q4_0,
    q4_1::Q4_1,
    lloyd_max::LloydMax,
];

impl Scheme {
    /// Whether this is one of llama.cpp's block formats (group of 32, f16 metadata).
    pub(crate) fn is_block_format(self) -> bool {
        self.fixed_bits().is_some()
    }

    /// Whether `bits` may use this scheme.
    pub fn allows_bits(self, bits: u8) -> bool {
        self.fixed_bits().map_or(bits <= self.max_bits(), |b| b == bits)
    }

    /// The widths this scheme allows, for messages (`4`, or `8, 4, 3, 2`).
    pub fn allowed_bits(self) -> String {
        let widths = super::levels::CODE_BITS.iter().filter(|&&b| self.allows_bits(b));
        widths.map(|b| b.to_string()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Scheme {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Scheme {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Scheme::ALL.iter().copied().find(|s| s.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Scheme::ALL.iter().map(|s| s.name()).collect();
            serde::de::Error::custom(format!(
                "unknown scheme '{name}' (known: {})",
                known.join(", ")
            ))
        })
    }
}
