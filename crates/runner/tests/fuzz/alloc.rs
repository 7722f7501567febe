//! A per-thread counting allocator for the fuzz binary: how far one parse raised its thread's
//! live heap, and the largest single request it made.
//!
//! The test harness runs the parsers on parallel threads, so the counts are thread-local (const
//! `Cell`s: no lazy initialisation, no destructor, nothing allocated to reach them).
//! `GlobalAlloc` is an `unsafe trait`; as in `runner::alloc_counter`, every method only forwards
//! to [`System`] with the caller's own arguments and updates counters.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Forwards to [`System`], counting the current thread's bytes.
#[derive(Debug)]
pub struct ThreadCounting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    /// While measuring: a request this large ends the process before it can exhaust memory.
    static LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
    /// Which input is being parsed, for the message when [`LIMIT`] is hit.
    static INPUT: Cell<(&'static str, u64)> = const { Cell::new(("", 0)) };
}

/// Ends the process with a message naming the input: a request over [`LIMIT`] would be an
/// allocation no fuzz input justifies, and letting it through could take the machine's memory.
/// Formats into a stack buffer: the allocator cannot allocate here.
fn over_limit(size: usize) -> ! {
    use std::io::Write;
    let (target, index) = INPUT.with(Cell::get);
    let mut buf = [0u8; 256];
    let mut w = &mut buf[..];
    let _ = writeln!(
        w,
        "fuzz {target}: input #{index} asked for one allocation of {size} bytes (rerun with the \
         same KVLAB_FUZZ_SEED to reproduce)"
    );
    let n = 256 - w.len();
    let _ = std::io::stderr().write_all(&buf[..n]);
    std::process::abort();
}

fn added(size: usize) {
    if LIMIT.try_with(Cell::get).is_ok_and(|limit| size > limit) {
        over_limit(size);
    }
    let _ = LIVE.try_with(|live| {
        let now = live.get() + size as isize;
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

fn removed(size: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get() - size as isize));
}

unsafe impl GlobalAlloc for ThreadCounting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            added(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            added(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (hence by `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        removed(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is the caller's, checked by the caller.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            removed(layout.size());
            added(new_size);
        }
        p
    }
}

/// What one measured call did to its thread's heap.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// The most bytes live at once above the level at the start.
    pub peak_growth: usize,
    /// The largest single allocation (or reallocation's new size).
    pub largest: usize,
}

/// Runs `f` on input `index` of `target`, measuring the current thread's allocations while it
/// runs; a single request over `limit` bytes aborts the process naming the input.
pub fn measure<T>(
    target: &'static str,
    index: u64,
    limit: usize,
    f: impl FnOnce() -> T,
) -> (T, Usage) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    LARGEST.with(|l| l.set(0));
    INPUT.with(|i| i.set((target, index)));
    LIMIT.with(|l| l.set(limit));
    let out = f();
    LIMIT.with(|l| l.set(usize::MAX));
    let peak = PEAK.with(Cell::get);
    let usage =
        Usage { peak_growth: (peak - start).max(0) as usize, largest: LARGEST.with(Cell::get) };
    (out, usage)
}
