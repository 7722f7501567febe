//! Waiting for a device's queued work, so that a timed region ends when its work does.

use burn::prelude::Backend;

/// Waits for the device's queued work (timed regions end with it).
pub fn sync<B: Backend>(device: &B::Device) -> anyhow::Result<()> {
    B::sync(device).map_err(|e| anyhow::anyhow!("device sync failed: {e:?}"))
}
