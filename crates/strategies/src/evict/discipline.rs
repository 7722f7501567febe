//! How an evicting cache lays out and reads a policy's slots. The score-driven policies (H2O,
//! TOVA, SnapKV, key-norm) take the default; the bounded windows of the article — window, sink,
//! shift-window — are policies that differ from it only here.

/// The slot discipline a [`super::policy::KeepPolicy`] asks of its cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discipline {
    /// The rule reads token positions only (window, sink): every KV head of a row keeps the same
    /// tokens, so a row is one region whose slots hold all its heads (`[n_kv, head_dim]`, as the
    /// static cache's do), and a slot's token follows from position arithmetic — no slot →
    /// position table is kept on the device, so none is counted. Such a policy neither observes
    /// attention nor reads key norms (those are per head).
    pub positional: bool,
    pub rope: Rope,
    pub evict: Evict,
}

/// At which positions keys are rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rope {
    /// At their positions in the text, when written (H2O, TOVA, SnapKV keep keys so).
    Text,
    /// At their rank in the cache, at every read (StreamingLLM): keys are stored unrotated,
    /// read oldest first and rotated by `0..kept`; the query sits at the last in-cache position.
    /// O(cache) per step, as in the paper's implementation.
    InCache,
}

/// What happens to the slots when a full region takes a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evict {
    /// The new token takes the victim's slot; nothing else moves (Mistral's rolling buffer,
    /// H2O's heavy-hitter cache).
    Replace,
    /// The oldest token leaves by moving every other slot one place toward the front and the new
    /// token enters the last slot (lit-llama's `torch.roll`): O(cache) data movement per token,
    /// kept to measure what a rolling buffer saves. The policy's victim is not asked.
    Roll,
}

impl Default for Discipline {
    fn default() -> Self {
        Self { positional: false, rope: Rope::Text, evict: Evict::Replace }
    }
}

impl Discipline {
    /// A rule over positions that keeps text positions and replaces in place.
    pub(crate) const POSITIONAL: Self =
        Self { positional: true, rope: Rope::Text, evict: Evict::Replace };
}
