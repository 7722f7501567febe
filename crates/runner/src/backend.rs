//! Backends the runner can monomorphize a run for, and which of them this binary has.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, PoisonError};

use burn::prelude::{Backend, Tensor};

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

    /// Attention's key bucket when an experiment does not sweep `key_bucket`: 64 on the
    /// backends that compile kernels (wgpu, CUDA: a decode of N tokens then sees about N / 64
    /// attention shapes, not N), 0 (off) on the CPU backends, which compile nothing and would
    /// only do the padding's extra work.
    pub(crate) fn default_key_bucket(self) -> usize {
        match self {
            Self::Flex | Self::Ndarray => 0,
            Self::Cuda | Self::Wgpu => 64,
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

    /// Whether the backend keeps `u8` tensors, which a quantized store's codes are. cubecl's
    /// WGSL compiler has no 8-bit integer (it panics on `U8` in a worker thread, and the run
    /// went on with wrong codes: NaN perplexities, exit 0), so wgpu does not.
    pub(crate) fn holds_u8(self) -> bool {
        !matches!(self, Self::Wgpu)
    }

    pub(crate) fn compiled_in(self) -> bool {
        match self {
            Self::Flex | Self::Ndarray => true,
            Self::Cuda => cfg!(feature = "cuda"),
            Self::Wgpu => cfg!(feature = "wgpu"),
        }
    }

    /// `Err` with a one-line explanation when this binary lacks the backend.
    pub(crate) fn ensure_compiled_in(self) -> Result<(), String> {
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
/// A GPU backend's device is opened with [`open_device`] first, so a missing driver or device
/// returns its one-line [`DeviceError`] (with `?`) from the enclosing function instead of
/// panicking. A backend not compiled in evaluates `$missing`.
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
                let $device = $crate::backend::open_device::<$B>(__N::Cuda)?;
                $body
            }
            #[cfg(feature = "wgpu")]
            __N::Wgpu => {
                type $B = burn::backend::Wgpu;
                let $device = $crate::backend::open_device::<$B>(__N::Wgpu)?;
                $body
            }
            #[allow(unreachable_patterns)]
            _ => $missing,
        }
    }};
}

/// A device that could not be opened: one line naming the backend and, where recognized, the
/// missing driver.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot open the {backend} device: {reason}")]
pub struct DeviceError {
    pub backend: BackendName,
    pub reason: String,
}

/// The default device of `B`, opened: the runtime is initialized and one tiny tensor is
/// allocated, synced and read back. cubecl panics (in `unwrap`s, sometimes on its server thread)
/// when there is no driver or device; those panics are caught with a quiet panic hook and turned
/// into a [`DeviceError`] via [`explain_device_panic`].
///
/// On the cubecl backends (cuda, wgpu) the runtime is first set to one stream per device
/// (`one_stream_per_device`), so a device opened here may be driven from several threads.
pub fn open_device<B: Backend>(name: BackendName) -> Result<B::Device, DeviceError> {
    let probe = || {
        #[cfg(any(feature = "cuda", feature = "wgpu"))]
        if matches!(name, BackendName::Cuda | BackendName::Wgpu) {
            one_stream_per_device()?;
        }
        let device = B::Device::default();
        let t = Tensor::<B, 1>::zeros([4], &device);
        B::sync(&device).map_err(|e| format!("{e:?}"))?;
        t.into_data().to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
        Ok::<_, String>(device)
    };
    match quietly(probe) {
        Ok(Ok(device)) => Ok(device),
        Ok(Err(error)) => Err(DeviceError { backend: name, reason: one_line(&error) }),
        Err(panics) => {
            Err(DeviceError { backend: name, reason: explain_device_panic(name, &panics) })
        }
    }
}

/// Runs `f`, catching a panic with the default hook's printing silenced; `Err` holds the
/// messages of every panic seen meanwhile (on any thread: cubecl's server thread may be the one
/// that panics first), oldest first.
fn quietly<T>(f: impl FnOnce() -> T) -> Result<T, Vec<String>> {
    static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    SEEN.lock().unwrap_or_else(PoisonError::into_inner).clear();
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        SEEN.lock().unwrap_or_else(PoisonError::into_inner).push(msg);
    }));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(previous);
    let seen = std::mem::take(&mut *SEEN.lock().unwrap_or_else(PoisonError::into_inner));
    result.map_err(|_| if seen.is_empty() { vec!["unknown panic".into()] } else { seen })
}

/// Sets cubecl's runtime config (read once per process, before the first device starts) to
/// one stream per device, keeping the rest of it as cubecl would load it (`cubecl.toml`, the
/// environment).
///
/// Why: cubecl 0.10 gives each thread its own stream on a device and orders work across
/// streams itself; on wgpu, two threads each decoding with one model on one device got logits
/// that differ from one thread's (greedy tokens differed in the first of four rounds of four
/// threads on lavapipe; tests/backend_wgpu.rs), and with one stream they agree. One stream
/// runs every thread's work in the order it was submitted, each thread's own work in its
/// order; a runner drives each device from one thread, so it loses no concurrency.
///
/// `Err` (one line) if the config was already loaded, by code that used cubecl before this,
/// with several streams: it can no longer be changed.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn one_stream_per_device() -> Result<(), String> {
    use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    let mut loaded = CubeClRuntimeConfig::storage().lock();
    match loaded.as_ref() {
        None => {
            let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
            config.streaming.max_streams = 1;
            *loaded = Some(std::sync::Arc::new(config));
            Ok(())
        }
        Some(config) if config.streaming.max_streams == 1 => Ok(()),
        Some(config) => Err(format!(
            "cubecl's runtime config was loaded before kvlab opened the device, with \
             streaming.max_streams = {}; kvlab needs 1 (threads sharing a device got wrong \
             results on several streams): set `[streaming] max_streams = 1` in cubecl.toml",
            config.streaming.max_streams
        )),
    }
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Turns the panic messages of a failed device open into one line that names what is missing
/// (the NVIDIA driver's `libcuda.so`, a CUDA device, a Vulkan/wgpu adapter), followed by the
/// first panic's own message.
pub(crate) fn explain_device_panic(name: BackendName, panics: &[String]) -> String {
    let all = panics.join(" | ");
    let first = one_line(panics.first().map(String::as_str).unwrap_or("unknown panic"));
    let has = |needle: &str| all.contains(needle);
    let hint = match name {
        BackendName::Cuda if has("Unable to dynamically load the \"cuda\"") => {
            "the NVIDIA driver library libcuda.so was not found (is the NVIDIA driver installed \
             and on LD_LIBRARY_PATH?)"
        }
        BackendName::Cuda if has("CUDA_ERROR_NO_DEVICE") => "no CUDA-capable GPU was found",
        BackendName::Cuda if has("CUDA_ERROR_INSUFFICIENT_DRIVER") => {
            "the NVIDIA driver is older than this runner's CUDA needs"
        }
        BackendName::Cuda if has("Unable to dynamically load") => {
            "a CUDA library could not be loaded (is the CUDA runtime installed?)"
        }
        BackendName::Wgpu if has("No possible adapter") || has("adapter") => {
            "no wgpu adapter was found (install a Vulkan driver, e.g. Debian's \
             mesa-vulkan-drivers and libvulkan1 for the CPU's lavapipe)"
        }
        _ => "the runtime panicked while opening it",
    };
    format!("{hint}: {first}")
}

/// The device allocator's figures, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceMemoryUsage {
    /// Bytes of live allocations (without padding).
    pub in_use: u64,
    /// Bytes the allocator holds from the device (pools), at least `in_use`.
    pub reserved: u64,
}

/// A device whose allocator can be read. The default is `None`: the CPU backends (flex,
/// ndarray) have no device allocator of their own, their tensors are the process heap, which the
/// counting global allocator measures (`process_peak_bytes`).
pub(crate) trait DeviceMemory {
    /// The allocator's usage now, after the caller synced the device; `None` if unknown.
    fn memory_usage(&self) -> Option<DeviceMemoryUsage> {
        None
    }
}

impl DeviceMemory for burn_flex::FlexDevice {}
impl DeviceMemory for burn_ndarray::NdArrayDevice {}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn cubecl_usage<R: cubecl::Runtime>(device: &R::Device) -> Option<DeviceMemoryUsage> {
    let usage = R::client(device).memory_usage().ok()?;
    Some(DeviceMemoryUsage { in_use: usage.bytes_in_use, reserved: usage.bytes_reserved })
}

#[cfg(feature = "cuda")]
impl DeviceMemory for burn::backend::cuda::CudaDevice {
    fn memory_usage(&self) -> Option<DeviceMemoryUsage> {
        cubecl_usage::<cubecl::cuda::CudaRuntime>(self)
    }
}

#[cfg(feature = "wgpu")]
impl DeviceMemory for burn::backend::wgpu::WgpuDevice {
    fn memory_usage(&self) -> Option<DeviceMemoryUsage> {
        cubecl_usage::<cubecl::wgpu::WgpuRuntime>(self)
    }
}

/// [`DeviceMemory::memory_usage`] of any backend's device, found by the device's type, so
/// generic code (`B: Backend`) needs no extra bound; `None` for devices without an impl.
pub fn device_memory<B: Backend>(device: &B::Device) -> Option<DeviceMemoryUsage> {
    let any = device as &dyn std::any::Any;
    macro_rules! try_device {
        ($($ty:ty),*) => {$(
            if let Some(d) = any.downcast_ref::<$ty>() {
                return DeviceMemory::memory_usage(d);
            }
        )*};
    }
    try_device!(burn_flex::FlexDevice, burn_ndarray::NdArrayDevice);
    #[cfg(feature = "cuda")]
    try_device!(burn::backend::cuda::CudaDevice);
    #[cfg(feature = "wgpu")]
    try_device!(burn::backend::wgpu::WgpuDevice);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_libcuda_names_the_driver() {
        let panics = vec![
            "Unable to dynamically load the \"cuda\" shared library - searched for library \
             names: [\"libcuda.so\"]. Ensure that `LD_LIBRARY_PATH` has the correct path"
                .to_string(),
            "called `Result::unwrap()` on an `Err` value: RecvError".to_string(),
        ];
        let e = DeviceError {
            backend: BackendName::Cuda,
            reason: explain_device_panic(BackendName::Cuda, &panics),
        };
        let line = e.to_string();
        assert!(
            line.starts_with("cannot open the cuda device: the NVIDIA driver library libcuda.so"),
            "{line}"
        );
        assert!(!line.contains('\n'));
        assert!(line.contains("Unable to dynamically load"), "{line}");
    }

    #[test]
    fn no_device_and_no_adapter_are_named() {
        let cuda = explain_device_panic(
            BackendName::Cuda,
            &["called `Result::unwrap()` on an `Err` value: DriverError(CUDA_ERROR_NO_DEVICE, \"no CUDA-capable device is detected\")".into()],
        );
        assert!(cuda.starts_with("no CUDA-capable GPU"), "{cuda}");
        let wgpu = explain_device_panic(
            BackendName::Wgpu,
            &["No possible adapter available for backend. Falling back to first available.".into()],
        );
        assert!(wgpu.starts_with("no wgpu adapter was found"), "{wgpu}");
        let other = explain_device_panic(BackendName::Wgpu, &["boom\nsecond line".into()]);
        assert_eq!(other, "the runtime panicked while opening it: boom second line");
    }

    #[test]
    fn quietly_catches_panics_from_other_threads_too() {
        let r: Result<(), _> = quietly(|| {
            let _ = std::thread::spawn(|| panic!("server thread died")).join();
            panic!("client saw a closed channel");
        });
        assert_eq!(r.unwrap_err(), vec!["server thread died", "client saw a closed channel"]);
        assert_eq!(quietly(|| 7).unwrap(), 7);
    }

    #[test]
    fn cpu_backends_open_and_have_no_device_allocator() {
        let d = open_device::<burn_flex::Flex>(BackendName::Flex).unwrap();
        assert_eq!(device_memory::<burn_flex::Flex>(&d), None);
        let d = open_device::<burn_ndarray::NdArray<f32>>(BackendName::Ndarray).unwrap();
        assert_eq!(device_memory::<burn_ndarray::NdArray<f32>>(&d), None);
    }
}
