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
    pub fn check_shapes(&self) -> Result<(), String> {
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
        for (name, t, shape) in expect {
            if t.shape != shape {
                return Err(format!("{name} has shape {:?}, expected {:?}", t.shape, shape));
            }
        }
        Ok(())
    }
}
