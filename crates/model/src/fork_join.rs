//! A fork-join pool for the decode step's matrix-vector products, whose helper threads spin
//! between jobs instead of sleeping.
//!
//! Why: a batch-1 decode step runs four projections per layer (121 for SmolLM2-135M), each split
//! into one column block per thread ([`crate::linear::SplitLinear`]). With rayon, every one of
//! those calls woke a sleeping worker through a futex: on this 2-core VM `perf` put 17% of the
//! decode's CPU time in `futex_wake`, and decode at 2 threads was *slower* than at 1 (7.5 vs 9.4
//! tok/s). The gap between two projections is tens to hundreds of microseconds, so a helper
//! that keeps spinning for [`SPIN`] after its last job is already running when the next one
//! comes. Past that it parks, so an idle process does not burn a core.
//!
//! One job runs at a time: a caller that finds the pool busy (another test thread, or a call
//! from inside a job) runs its tasks itself, in order. Results do not depend on which thread
//! ran a task.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a helper spins for the next job before it parks.
const SPIN: Duration = Duration::from_millis(2);

/// A job's task function: owned (it outlives no borrow), shared by every participant.
pub(crate) type Task = Arc<dyn Fn(usize) + Send + Sync>;

/// One helper's share of a job: the task and the indices `first, first + stride, ... < n`.
struct Share {
    task: Task,
    first: usize,
    stride: usize,
    n: usize,
}

struct Helper {
    /// Job number last posted to this helper (0: none yet).
    posted: AtomicUsize,
    /// Job number this helper last finished.
    done: AtomicUsize,
    /// The posted share, taken (and dropped) by the helper before it marks the job done, so the
    /// task's captures are released when `run` returns.
    share: Mutex<Option<Share>>,
    /// Set by the helper before it parks, cleared by whoever unparks it.
    sleeping: AtomicBool,
    /// A task of the last job panicked on this helper.
    panicked: AtomicBool,
    thread: OnceLock<Thread>,
}

pub(crate) struct ForkJoin {
    helpers: Vec<Arc<Helper>>,
    busy: Mutex<()>,
    next_job: AtomicUsize,
}

impl ForkJoin {
    /// A pool of `threads` participants: the caller plus `threads - 1` spinning helpers.
    pub fn new(threads: usize) -> Self {
        let helpers: Vec<Arc<Helper>> = (1..threads.max(1))
            .map(|i| {
                let h = Arc::new(Helper {
                    posted: AtomicUsize::new(0),
                    done: AtomicUsize::new(0),
                    share: Mutex::new(None),
                    sleeping: AtomicBool::new(false),
                    panicked: AtomicBool::new(false),
                    thread: OnceLock::new(),
                });
                let worker = Arc::clone(&h);
                let handle = std::thread::Builder::new()
                    .name(format!("kvlab-fork-join-{i}"))
                    .spawn(move || helper_loop(&worker))
                    .expect("spawn a fork-join helper thread");
                let _ = h.thread.set(handle.thread().clone());
                h
            })
            .collect();
        Self { helpers, busy: Mutex::new(()), next_job: AtomicUsize::new(1) }
    }

    /// The process-wide pool, sized like rayon's (`RAYON_NUM_THREADS`, else the cores).
    pub fn global() -> &'static ForkJoin {
        static POOL: OnceLock<ForkJoin> = OnceLock::new();
        POOL.get_or_init(|| ForkJoin::new(rayon::current_num_threads()))
    }

    /// Participants (caller included).
    pub fn threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// Runs `task(i)` for every `i` in `0..n`, spread over the caller and the helpers; returns
    /// when all have finished. A panic in any task is re-raised here.
    pub fn run(&self, n: usize, task: Task) {
        let guard = match self.busy.try_lock() {
            Ok(g) if n > 1 && !self.helpers.is_empty() => g,
            _ => {
                (0..n).for_each(|i| task(i));
                return;
            }
        };
        let stride = self.threads().min(n);
        let job = self.next_job.fetch_add(1, Ordering::Relaxed);
        let used = &self.helpers[..stride - 1];
        for (h, first) in used.iter().zip(1..) {
            let share = Share { task: Arc::clone(&task), first, stride, n };
            *h.share.lock().unwrap_or_else(|e| e.into_inner()) = Some(share);
            h.posted.store(job, Ordering::SeqCst);
            if h.sleeping.load(Ordering::SeqCst) {
                h.sleeping.store(false, Ordering::SeqCst);
                if let Some(t) = h.thread.get() {
                    t.unpark();
                }
            }
        }
        let mine = catch_unwind(AssertUnwindSafe(|| {
            (0..n).step_by(stride).for_each(|i| task(i));
        }));
        for h in used {
            while h.done.load(Ordering::Acquire) != job {
                std::hint::spin_loop();
            }
        }
        drop(guard);
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if used.iter().any(|h| h.panicked.swap(false, Ordering::Relaxed)) {
            panic!("a fork-join task panicked on a helper thread");
        }
    }
}

fn helper_loop(h: &Helper) {
    let mut seen = 0;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        let job = loop {
            let posted = h.posted.load(Ordering::Acquire);
            if posted != seen {
                break posted;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(1024) || start.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            // Park; the poster reads `sleeping` after storing `posted` (both SeqCst), so either
            // it sees the flag and unparks us, or we see its job here.
            h.sleeping.store(true, Ordering::SeqCst);
            if h.posted.load(Ordering::SeqCst) == seen {
                std::thread::park();
            }
            h.sleeping.store(false, Ordering::SeqCst);
        };
        seen = job;
        let share = h.share.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(Share { task, first, stride, n }) = share {
            let ran = catch_unwind(AssertUnwindSafe(|| {
                (first..n).step_by(stride).for_each(|i| task(i));
            }));
            if ran.is_err() {
                h.panicked.store(true, Ordering::Relaxed);
            }
        }
        h.done.store(job, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_task_runs_once_whatever_the_split() {
        let pool = ForkJoin::new(3);
        for n in [0, 1, 2, 3, 4, 7, 64] {
            let hits: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
            let h = Arc::clone(&hits);
            pool.run(
                n,
                Arc::new(move |i| {
                    h[i].fetch_add(1, Ordering::Relaxed);
                }),
            );
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "n = {n}");
        }
    }

    #[test]
    fn nested_and_concurrent_calls_run_inline() {
        static POOL: OnceLock<ForkJoin> = OnceLock::new();
        let pool = POOL.get_or_init(|| ForkJoin::new(2));
        let total = Arc::new(AtomicU64::new(0));
        std::thread::scope(|s| {
            for _ in 0..4 {
                let total = Arc::clone(&total);
                s.spawn(move || {
                    for _ in 0..50 {
                        let total = Arc::clone(&total);
                        pool.run(
                            4,
                            Arc::new(move |_| {
                                // A call from inside a job finds the pool busy and runs inline.
                                let total = Arc::clone(&total);
                                pool.run(
                                    2,
                                    Arc::new(move |_| {
                                        total.fetch_add(1, Ordering::Relaxed);
                                    }),
                                );
                            }),
                        );
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 50 * 4 * 2);
    }

    /// Runs `n` tasks that each count themselves; how many ran.
    fn tasks_run(pool: &ForkJoin, n: usize) -> u64 {
        let hits = Arc::new(AtomicU64::new(0));
        let h = Arc::clone(&hits);
        pool.run(
            n,
            Arc::new(move |_| {
                h.fetch_add(1, Ordering::Relaxed);
            }),
        );
        hits.load(Ordering::Relaxed)
    }

    #[test]
    fn a_helper_that_parked_is_woken() {
        let pool = ForkJoin::new(2);
        pool.run(2, Arc::new(|_| {}));
        std::thread::sleep(SPIN * 3);
        assert_eq!(tasks_run(&pool, 2), 2);
    }

    #[test]
    fn a_panicking_task_panics_the_caller() {
        let pool = ForkJoin::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(2, Arc::new(|i| assert_ne!(i, 1, "task 1")))
        }));
        assert!(r.is_err());
        // The pool still works afterwards.
        assert_eq!(tasks_run(&pool, 2), 2);
    }
}
