//! The fuzz loop shared by every target: seeded inputs, each parsed under `catch_unwind` and the
//! counting allocator; a panic, an error that is not one line, or heap growth beyond what the
//! input justifies is a failure, shrunk and reported with the input's number after the run.

use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::alloc;

/// No single allocation of a parse may exceed this: the process aborts naming the input (see
/// `alloc::measure`) instead of exhausting the machine's memory.
const HARD_LIMIT: usize = 1 << 30;
/// Shrinking a failing input stops after this many re-parses.
const SHRINK_TRIES: usize = 4000;
/// Failures kept (shrunk and printed) per target; the rest are only counted.
const KEPT_FAILURES: usize = 8;

/// One parser under fuzz.
pub trait Target {
    /// Names the target in the summary line.
    fn name(&self) -> &'static str;
    /// Input `rng` draws (structure-aware: a valid document, then mutated).
    fn input(&self, rng: &mut ChaCha8Rng) -> Vec<u8>;
    /// Parses the input the way a user's file is read; `Err` holds the error's lines (several
    /// only where the parser reports several problems, one per line).
    fn parse(&self, input: Vec<u8>) -> Result<(), Vec<String>>;
    /// The most heap a parse of `len` bytes may grow its thread by (see each target for why).
    fn budget(&self, len: usize) -> usize;
    /// Why an error line is malformed, if it is: by default, it is empty or spans lines.
    fn bad_line(&self, line: &str) -> Option<String> {
        if line.trim().is_empty() {
            Some("an empty error line".into())
        } else if line.contains(['\n', '\r']) {
            Some(format!("an error spanning lines: {line:?}"))
        } else {
            None
        }
    }
    /// The input as the report shows it (text targets: the text).
    fn show(&self, input: &[u8]) -> String {
        format!("{:?}", String::from_utf8_lossy(input))
    }
}

/// The inputs per target (`KVLAB_FUZZ_INPUTS`, default 100,000) and the seed
/// (`KVLAB_FUZZ_SEED`, default 0).
pub fn settings() -> (u64, u64) {
    let var = |name: &str, default: u64| match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?}: expected an integer")),
        Err(_) => default,
    };
    (var("KVLAB_FUZZ_INPUTS", 100_000), var("KVLAB_FUZZ_SEED", 0))
}

/// What went wrong with one input; shrinking keeps inputs that fail the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Panic,
    BadError,
    Heap,
}

#[derive(Debug)]
enum Verdict {
    Ok,
    Refused,
    Failed(Kind, String),
}

thread_local! {
    /// While a fuzz input is parsed: the last panic's message and place (the hook is silent).
    static PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static FUZZING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A panic hook that records panics of fuzzed parses instead of printing them, and leaves every
/// other panic (a failed assertion of the harness itself) to the default hook.
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if FUZZING.with(std::cell::Cell::get) {
                let place = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
                let payload = info.payload();
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{place}")));
            } else {
                default(info);
            }
        }));
    });
}

fn judge(target: &dyn Target, index: u64, input: &[u8]) -> Verdict {
    let copy = input.to_vec();
    FUZZING.with(|f| f.set(true));
    let (result, usage) = alloc::measure(target.name(), index, HARD_LIMIT, || {
        panic::catch_unwind(AssertUnwindSafe(|| target.parse(copy)))
    });
    FUZZING.with(|f| f.set(false));
    let budget = target.budget(input.len());
    if usage.peak_growth > budget {
        return Verdict::Failed(
            Kind::Heap,
            format!(
                "the heap grew by {} bytes (largest allocation {}) for {} input bytes; the \
                 budget is {budget}",
                usage.peak_growth,
                usage.largest,
                input.len()
            ),
        );
    }
    match result {
        Err(_) => {
            let msg = PANIC.with(|p| p.borrow_mut().take()).unwrap_or_default();
            Verdict::Failed(Kind::Panic, format!("panicked: {msg}"))
        }
        Ok(Ok(())) => Verdict::Ok,
        Ok(Err(lines)) if lines.is_empty() => {
            Verdict::Failed(Kind::BadError, "an error without a line".into())
        }
        Ok(Err(lines)) => match lines.iter().find_map(|l| target.bad_line(l)) {
            Some(why) => Verdict::Failed(Kind::BadError, why),
            None => Verdict::Refused,
        },
    }
}

/// Removes ever smaller chunks of `input` while it still fails as `kind` does.
fn shrink(target: &dyn Target, index: u64, mut input: Vec<u8>, kind: Kind) -> (Vec<u8>, String) {
    let mut why = String::new();
    let mut tries = 0;
    let mut chunk = input.len() / 2;
    while chunk >= 1 && tries < SHRINK_TRIES {
        let mut at = 0;
        while at < input.len() && tries < SHRINK_TRIES {
            let mut candidate = input.clone();
            candidate.drain(at..(at + chunk).min(input.len()));
            tries += 1;
            match judge(target, index, &candidate) {
                Verdict::Failed(k, w) if k == kind => {
                    input = candidate;
                    why = w;
                }
                _ => at += chunk,
            }
        }
        chunk /= 2;
    }
    if why.is_empty()
        && let Verdict::Failed(_, w) = judge(target, index, &input)
    {
        why = w;
    }
    (input, why)
}

/// Fuzzes `target` with the configured count and seed; prints one summary line and every kept
/// failure; panics if any input failed.
pub fn run(target: &dyn Target) {
    install_hook();
    let (count, seed) = settings();
    let (mut ok, mut refused, mut failed) = (0u64, 0u64, 0u64);
    let mut kept = Vec::new();
    for index in 0..count {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(index);
        let input = target.input(&mut rng);
        match judge(target, index, &input) {
            Verdict::Ok => ok += 1,
            Verdict::Refused => refused += 1,
            Verdict::Failed(kind, _) => {
                failed += 1;
                if kept.len() < KEPT_FAILURES {
                    let (small, why) = shrink(target, index, input, kind);
                    kept.push(format!(
                        "  input #{index}: {why}\n    shrunk: {}",
                        target.show(&small)
                    ));
                }
            }
        }
    }
    println!(
        "fuzz {}: {count} inputs (KVLAB_FUZZ_SEED={seed}): {ok} ok, {refused} refused, {failed} failed",
        target.name()
    );
    for k in &kept {
        println!("{k}");
    }
    assert_eq!(failed, 0, "fuzz {}: {failed} inputs failed (listed above)", target.name());
}
