//! CUDA device opening: with a GPU the device opens and its allocator is read; without a driver
//! or device, opening is a one-line error that names what is missing, not a panic. Built only
//! with `--features cuda`.
#![cfg(feature = "cuda")]

use burn::backend::Cuda;
use burn::prelude::*;
use runner::backend::{BackendName, device_memory, open_device};

#[test]
fn cuda_opens_or_explains_in_one_line() {
    match open_device::<Cuda>(BackendName::Cuda) {
        Ok(device) => {
            let before = device_memory::<Cuda>(&device).expect("cuda has a device allocator");
            let t = Tensor::<Cuda, 2>::ones([256, 1024], &device);
            <Cuda as Backend>::sync(&device).unwrap();
            let held = device_memory::<Cuda>(&device).unwrap();
            assert!(held.in_use >= before.in_use + 256 * 1024 * 4, "{before:?} -> {held:?}");
            drop(t);
        }
        Err(e) => {
            let line = e.to_string();
            assert!(line.starts_with("cannot open the cuda device: "), "{line}");
            assert!(!line.contains('\n'), "{line}");
            eprintln!("no CUDA here (expected without a GPU): {line}");
        }
    }
}
