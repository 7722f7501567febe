//! Backends the runner can monomorphize a run for, and which of them this binary has.

use std::fmt;

use serde::Deserialize;

/// A burn backend by its CLI / TOML name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum BackendName {
    /// burn-flex on the CPU (the default).
    Flex,
    /// burn-ndarray on the CPU.
    Ndarray,
    /// CUDA (cargo feature `cuda`).
    Cuda,
    /// wgpu (cargo feature `wgpu`).
    Wgpu,
}

impl BackendName {
    pub const ALL: [BackendName; 4] = [Self::Flex, Self::Ndarray, Self::Cuda, Self::Wgpu];

    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Ndarray => "ndarray",
            Self::Cuda => "cuda",
            Self::Wgpu => "wgpu",
        }
    }

    /// The cargo feature that compiles it in, if any.
    pub fn feature(self) -> Option<&'static str> {
        match self {
            Self::Flex | Self::Ndarray => None,
            Self::Cuda => Some("cuda"),
            Self::Wgpu => Some("wgpu"),
        }
    }

    pub fn compiled_in(self) -> bool {
        match self {
            Self::Flex | Self::Ndarray => true,
            Self::Cuda => cfg!(feature = "cuda"),
            Self::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    /// `Err` with a one-line explanation when this binary lacks the backend.
    pub fn ensure_compiled_in(self) -> Result<(), String> {
        if self.compiled_in() {
            return Ok(());
        }
        let feature = self.feature().unwrap_or_default();
        Err(format!(
            "backend '{self}' is not compiled into this runner; rebuild with `--features {feature}` \
             (e.g. `cargo run -p runner --features {feature} -- ...`)"
        ))
    }
}

impl fmt::Display for BackendName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Calls `$body` with the type alias `$B` bound to the backend named by `$name` and `$device`
/// bound to its default device: each backend is its own monomorphized instance of the body.
/// A backend not compiled in evaluates `$missing`.
#[macro_export]
macro_rules! with_backend {
    ($name:expr, |$B:ident, $device:ident| $body:expr, $missing:expr) => {{
        use $crate::backend::BackendName as __N;
        match $name {
            __N::Flex => {
                type $B = burn_flex::Flex;
                let $device = burn_flex::FlexDevice;
                $body
            }
            __N::Ndarray => {
                type $B = burn_ndarray::NdArray<f32>;
                let $device = burn_ndarray::NdArrayDevice::Cpu;
                $body
            }
            #[cfg(feature = "cuda")]
            __N::Cuda => {
                type $B = burn::backend::Cuda;
                let $device = <burn::backend::Cuda as burn::prelude::Backend>::Device::default();
                $body
            }
            #[cfg(feature = "wgpu")]
            __N::Wgpu => {
                type $B = burn::backend::Wgpu;
                let $device = <burn::backend::Wgpu as burn::prelude::Backend>::Device::default();
                $body
            }
            #[allow(unreachable_patterns)]
            _ => $missing,
        }
    }};
}
