//! Host-side weights: the one form every source (seeded random init, GGUF) produces and every
//! transform (KV-head conversion) edits, before upload to a burn device.
//!
//! Linear weights are kept `[out, in]` row-major, as PyTorch and GGUF store them; upload
//! transposes them to burn's `[in, out]`.

use crate::config::ModelConfig;

/// A dense f32 array, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
}

impl HostTensor {
    pub fn new(data: Vec<f32>, shape: Vec<usize>) -> Self {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        Self { data, shape }
    }

    /// `[rows, cols]` of a matrix.
    pub fn dims2(&self) -> [usize; 2] {
        match self.shape.as_slice() {
            [r, c] => [*r, *c],
            [n] => [1, *n],
            other => [other[..other.len() - 1].iter().product(), other[other.len() - 1]],
        }
    }

    /// Rows `start..end` of a matrix.
    pub fn rows(&self, start: usize, end: usize) -> &[f32] {
        let [_, cols] = self.dims2();
        &self.data[start * cols..end * cols]
    }
}

/// One decoder layer's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerWeights {
    /// `[hidden]`
    pub attn_norm: HostTensor,
    /// `[n_heads * head_dim, hidden]`
    pub wq: HostTensor,
    /// `[n_kv_heads * head_dim, hidden]`
    pub wk: HostTensor,
    /// `[n_kv_heads * head_dim, hidden]`
    pub wv: HostTensor,
    /// `[hidden, n_heads * head_dim]`
    pub wo: HostTensor,
    /// `[hidden]`
    pub mlp_norm: HostTensor,
    /// `[intermediate, hidden]`
    pub gate: HostTensor,
    /// `[intermediate, hidden]`
    pub up: HostTensor,
    /// `[hidden, intermediate]`
    pub down: HostTensor,
    /// Q/K/V biases, where the family has them (`arch.qkv_bias`).
    pub qkv_bias: Option<QkvBias>,
    /// Per-head RMSNorm weights of q and k, where the family norms them (`arch.qk_norm`).
    pub qk_norm: Option<QkNorm>,
    /// Norms of attention's and the MLP's outputs, where the family has them
    /// (`arch.post_norms`).
    pub post_norms: Option<PostNorms>,
}

/// Biases added to the Q, K and V projections' outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct QkvBias {
    /// `[n_heads * head_dim]`
    pub q: HostTensor,
    /// `[n_kv_heads * head_dim]`
    pub k: HostTensor,
    /// `[n_kv_heads * head_dim]`
    pub v: HostTensor,
}

/// RMSNorm weights applied to each head's q and k vectors before RoPE.
#[derive(Debug, Clone, PartialEq)]
pub struct QkNorm {
    /// `[head_dim]`
    pub q: HostTensor,
    /// `[head_dim]`
    pub k: HostTensor,
}

/// RMSNorm weights of the block outputs, applied before each residual add.
#[derive(Debug, Clone, PartialEq)]
pub struct PostNorms {
    /// `[hidden]`: attention's output.
    pub attn: HostTensor,
    /// `[hidden]`: the MLP's output.
    pub mlp: HostTensor,
}

/// Every parameter of a model, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelWeights {
    pub config: ModelConfig,
    /// `[vocab, hidden]`
    pub embed: HostTensor,
    pub layers: Vec<LayerWeights>,
    /// `[hidden]`
    pub final_norm: HostTensor,
    /// `[vocab, hidden]`; `None` when tied to `embed`.
    pub lm_head: Option<HostTensor>,
}

impl ModelWeights {
    /// Checks every shape against the config; names the first tensor that disagrees.
    pub(crate) fn check_shapes(&self) -> Result<(), String> {
        let c = &self.config;
        let (d, q, kv, ff) =
            (c.hidden_size, c.n_heads * c.head_dim, c.n_kv_heads * c.head_dim, c.intermediate_size);
        let mut expect: Vec<(String, &HostTensor, Vec<usize>)> = vec![
            ("embed".into(), &self.embed, vec![c.vocab_size, d]),
            ("final_norm".into(), &self.final_norm, vec![d]),
        ];
        if let Some(head) = &self.lm_head {
            expect.push(("lm_head".into(), head, vec![c.vocab_size, d]));
        }
        if self.layers.len() != c.n_layers {
            return Err(format!("{} layers, config says {}", self.layers.len(), c.n_layers));
        }
        for (i, l) in self.layers.iter().enumerate() {
            for (name, t, shape) in [
                ("attn_norm", &l.attn_norm, vec![d]),
                ("wq", &l.wq, vec![q, d]),
                ("wk", &l.wk, vec![kv, d]),
                ("wv", &l.wv, vec![kv, d]),
                ("wo", &l.wo, vec![d, q]),
                ("mlp_norm", &l.mlp_norm, vec![d]),
                ("gate", &l.gate, vec![ff, d]),
                ("up", &l.up, vec![ff, d]),
                ("down", &l.down, vec![d, ff]),
            ] {
                expect.push((format!("layers.{i}.{name}"), t, shape));
            }
        }
        for (i, l) in self.layers.iter().enumerate() {
            let present = [
                ("qkv_bias", l.qkv_bias.is_some(), c.arch.qkv_bias),
                ("qk_norm", l.qk_norm.is_some(), c.arch.qk_norm),
                ("post_norms", l.post_norms.is_some(), c.arch.post_norms),
            ];
            if let Some((name, has, wants)) = present.iter().find(|(_, has, wants)| has != wants) {
                return Err(format!(
                    "layers.{i}.{name} is {} but the architecture {} it",
                    if *has { "present" } else { "missing" },
                    if *wants { "needs" } else { "has no place for" }
                ));
            }
            if let Some(b) = &l.qkv_bias {
                expect.push((format!("layers.{i}.bq"), &b.q, vec![q]));
                expect.push((format!("layers.{i}.bk"), &b.k, vec![kv]));
                expect.push((format!("layers.{i}.bv"), &b.v, vec![kv]));
            }
            if let Some(n) = &l.qk_norm {
                expect.push((format!("layers.{i}.q_norm"), &n.q, vec![c.head_dim]));
                expect.push((format!("layers.{i}.k_norm"), &n.k, vec![c.head_dim]));
            }
            if let Some(n) = &l.post_norms {
                expect.push((format!("layers.{i}.attn_post_norm"), &n.attn, vec![d]));
                expect.push((format!("layers.{i}.mlp_post_norm"), &n.mlp, vec![d]));
            }
        }
        for (name, t, shape) in expect {
            if t.shape != shape {
                return Err(format!("{name} has shape {:?}, expected {:?}", t.shape, shape));
            }
        }
        Ok(())
    }
}
