//! Running the scheduler's batches through a real model, so serving throughput is measured in
//! wall-clock tokens per second rather than modelled.
//!
//! The model's K/V live in one [`F32Store`] of `budget / bytes_per_token` token slots per
//! layer — the budget the simulation divides — and every request's tokens sit at the slots
//! the simulated allocator gave it: a reserved extent (`reserve-*`) or a block table
//! (`paged`). Each busy iteration runs, in the scheduler's order: one batched decode step of
//! every running request (rows of different lengths, padded and masked, as a serving batch
//! is), then one prefill per admitted request. Greedy decoding; prompt ids are drawn from a
//! seeded generator, so two runs feed the same tokens.
//!
//! A request's last slot is the one reserved for the token this iteration produces (vLLM
//! allocates it up front); that token's K/V are written when it is fed, next iteration.
//!
//! Requests of one prefix group get the same prefix ids, so a request that shares another's
//! blocks reads the K/V its own prompt would have produced; copies-on-write copy slots in the
//! store before the write; a swapped-out request's K/V are read to host memory
//! (`TensorData`) and written back into its new slots when it returns. The clock is the
//! wall time of all of it, the device synced.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use burn::prelude::*;
use kvlab_model::Model;
use kvlab_model::model::tokens_tensor;
use kvlab_strategies::SlotStore;
use kvlab_strategies::table_cache::TableCache;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::memory::SlotCopy;
use crate::work::{Executor, IterationWork, RowWork};

/// What executing a schedule measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Execution {
    /// Wall-clock time of forwards, copies and swaps (device synced), the whole run.
    pub wall: Duration,
    /// The part of `wall` spent moving K/V to and from the host.
    pub swap_wall: Duration,
    /// Tokens produced: one per decode row and one per prefill.
    pub tokens_produced: u64,
    /// Tokens fed through the model (prompts, recomputation, decoded tokens).
    pub tokens_fed: u64,
    pub decode_steps: u64,
    pub prefills: u64,
}

impl Execution {
    /// Produced tokens per second of forward time.
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens_produced as f64 / self.wall.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Runs every scheduled iteration through `model`, greedily.
pub struct ModelExecutor<'m, B: Backend> {
    model: &'m Model<B>,
    cache: TableCache<B>,
    rng: ChaCha8Rng,
    /// Per request: its prompt ids then every token it produced so far.
    tokens: HashMap<u64, Vec<u32>>,
    /// Per request: tokens whose K/V are in the store now.
    stored: HashMap<u64, usize>,
    /// Per prefix group: its prefix ids.
    prefixes: HashMap<u64, Vec<u32>>,
    /// Per swapped-out request: its K/V per layer, on the host.
    swapped: HashMap<u64, Vec<(TensorData, TensorData)>>,
    /// Finished requests: prompt ids and every token produced.
    pub finished: HashMap<u64, Vec<u32>>,
    pub measured: Execution,
}

impl<'m, B: Backend> ModelExecutor<'m, B> {
    /// An executor over a store of `n_slots` token slots (the budget in tokens).
    pub fn new(model: &'m Model<B>, n_slots: usize, seed: u64) -> Self {
        let c = &model.config;
        let cache = TableCache::new(c.n_layers, n_slots, c.n_kv_heads, c.head_dim, &model.device());
        Self {
            model,
            cache,
            rng: ChaCha8Rng::seed_from_u64(seed),
            tokens: HashMap::new(),
            stored: HashMap::new(),
            prefixes: HashMap::new(),
            swapped: HashMap::new(),
            finished: HashMap::new(),
            measured: Execution::default(),
        }
    }

    /// The table a row reads this iteration and how many of its tokens are new: every held
    /// slot but the last (reserved for the token produced now).
    fn table(&mut self, row: &RowWork) -> Result<(Vec<usize>, usize), String> {
        let vocab = self.model.config.vocab_size as u32;
        let rng = &mut self.rng;
        let prefixes = &mut self.prefixes;
        let tokens = self.tokens.entry(row.id).or_insert_with(|| {
            // A group's prefix ids are drawn once; the rest of each prompt is its own.
            let shared = row.prefix.map_or(Vec::new(), |p| {
                let ids = prefixes.entry(p.group).or_default();
                while ids.len() < p.tokens {
                    ids.push(rng.random_range(0..vocab));
                }
                ids[..p.tokens].to_vec()
            });
            let own = (shared.len()..row.prompt_tokens).map(|_| rng.random_range(0..vocab));
            shared.iter().copied().chain(own).collect()
        });
        let fed = row.slots.len().checked_sub(1).filter(|&n| n > 0).ok_or("empty row")?;
        let stored = self.stored.get(&row.id).copied().unwrap_or(0);
        if fed <= stored || fed > tokens.len() {
            return Err(format!(
                "request {}: {fed} tokens to attend with {stored} stored and {} known",
                row.id,
                tokens.len()
            ));
        }
        Ok((row.slots[..fed].to_vec(), fed - stored))
    }

    /// One forward of `rows` (same new-token count each), appending each row's greedy token.
    fn forward(
        &mut self,
        rows: &[&RowWork],
        tables: Vec<Vec<usize>>,
        t: usize,
    ) -> Result<(), String> {
        let inputs: Vec<Vec<u32>> = rows
            .iter()
            .zip(&tables)
            .map(|(r, table)| {
                let toks = &self.tokens[&r.id];
                toks[table.len() - t..table.len()].to_vec()
            })
            .collect();
        let refs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
        let device = self.model.device();
        let ids = tokens_tensor::<B>(&refs, &device);
        self.cache.set_rows(tables.clone(), t).map_err(|e| e.to_string())?;
        let logits = self.model.forward_last(ids, &mut self.cache).map_err(|e| e.to_string())?;
        let next: Vec<i64> =
            logits.argmax(1).into_data().convert::<i64>().to_vec().map_err(|e| format!("{e:?}"))?;
        for ((r, table), id) in rows.iter().zip(&tables).zip(next) {
            self.stored.insert(r.id, table.len());
            self.tokens.get_mut(&r.id).expect("known request").push(id as u32);
        }
        self.measured.tokens_produced += rows.len() as u64;
        self.measured.tokens_fed += (rows.len() * t) as u64;
        Ok(())
    }

    /// Copies slots' K/V within the store, every layer (a copy-on-write).
    fn copy(&mut self, c: &SlotCopy) {
        for layer in 0..self.model.config.n_layers {
            let (k, v) = self.cache.store().read(layer, &c.from);
            self.cache.store_mut().write(layer, &c.to, k, v);
        }
    }

    /// Reads a preempted request's K/V to host memory.
    fn swap_out(&mut self, row: &RowWork) -> Result<(), String> {
        let start = Instant::now();
        let mut layers = Vec::with_capacity(self.model.config.n_layers);
        for layer in 0..self.model.config.n_layers {
            let (k, v) = self.cache.store().read(layer, &row.slots);
            layers.push((k.into_data(), v.into_data()));
        }
        self.swapped.insert(row.id, layers);
        self.stored.remove(&row.id);
        self.measured.swap_wall += start.elapsed();
        Ok(())
    }

    /// Writes a swapped-out request's K/V back into the first of its new slots.
    fn swap_in(&mut self, row: &RowWork) -> Result<(), String> {
        let start = Instant::now();
        let layers =
            self.swapped.remove(&row.id).ok_or(format!("request {}: nothing swapped", row.id))?;
        let device = self.model.device();
        let mut n = 0;
        for (layer, (k, v)) in layers.into_iter().enumerate() {
            n = k.shape[0];
            let slots = row.slots.get(..n).ok_or("fewer slots than swapped tokens")?;
            let (k, v) = (Tensor::from_data(k, &device), Tensor::from_data(v, &device));
            self.cache.store_mut().write(layer, slots, k, v);
        }
        self.stored.insert(row.id, n);
        // The copy is not done until the device says so.
        B::sync(&device).map_err(|e| format!("{e:?}"))?;
        self.measured.swap_wall += start.elapsed();
        Ok(())
    }
}

impl<B: Backend> Executor for ModelExecutor<'_, B> {
    fn iteration(&mut self, work: &IterationWork) -> Result<f64, String> {
        let start = Instant::now();
        self.run(work)?;
        B::sync(&self.model.device()).map_err(|e| format!("{e:?}"))?;
        let took = start.elapsed();
        self.measured.wall += took;
        Ok(took.as_secs_f64())
    }
}

impl<B: Backend> ModelExecutor<'_, B> {
    fn run(&mut self, work: &IterationWork) -> Result<(), String> {
        for id in &work.preempted {
            self.stored.remove(id);
        }
        for row in &work.swapped_out {
            self.swap_out(row)?;
        }
        for c in &work.copies {
            self.copy(c);
        }
        if !work.decode.is_empty() {
            let mut tables = Vec::with_capacity(work.decode.len());
            for row in &work.decode {
                let (table, new) = self.table(row)?;
                if new != 1 {
                    return Err(format!("request {}: a decode step feeds {new} tokens", row.id));
                }
                tables.push(table);
            }
            let rows: Vec<&RowWork> = work.decode.iter().collect();
            self.forward(&rows, tables, 1)?;
            self.measured.decode_steps += 1;
        }
        for row in &work.prefill {
            if row.swapped_in {
                self.swap_in(row)?;
            } else {
                if let Some(c) = &row.copy {
                    self.copy(c);
                }
                self.stored.insert(row.id, row.shared);
            }
            let (table, new) = self.table(row)?;
            self.forward(&[row], vec![table], new)?;
            self.measured.prefills += 1;
        }
        for id in &work.finished {
            self.stored.remove(id);
            if let Some(tokens) = self.tokens.remove(id) {
                self.finished.insert(*id, tokens);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use kvlab_model::generate::{Sampling, generate};
    use kvlab_model::{Model, ModelConfig};
    use kvlab_strategies::{ConcatCache, KvLayout};

    use super::*;
    use crate::{Policy, Preemption, Request, SimConfig, simulate_with};

    type B = burn_flex::Flex;

    /// Every request of a trace served in ragged batches, at the allocator's slots, with
    /// preemptions (recomputed or swapped to the host and back), and with prefixes shared
    /// between requests of a group (copy-on-write of partly filled blocks), produces exactly
    /// the tokens it produces alone with a full cache.
    #[test]
    fn served_tokens_equal_generating_each_request_alone() {
        let config = ModelConfig::seed_toy();
        let weights = kvlab_model::init::random_weights(&config, 0);
        let model = Model::<B>::from_weights(&weights, &Default::default()).unwrap();
        let requests: Vec<Request> = (0..12)
            .map(|i| {
                let prompt = 3 + (i as usize * 7) % 11;
                Request::new(i, i / 3, prompt, 2 + (i as usize * 5) % 9)
                    .with_prefix(i % 3, prompt.min(6))
            })
            .collect();
        let bytes_per_token = config.kv_bytes_per_token(4) as u64;
        let paged = Policy::Paged { block_size: 4 };
        let runs = [
            (paged, false, Preemption::Recompute),
            (paged, true, Preemption::Recompute),
            (paged, true, Preemption::Swap),
            (paged, false, Preemption::Swap),
            (Policy::ReserveExact, false, Preemption::Recompute),
            (Policy::ReservePow2, false, Preemption::Recompute),
        ];
        for (policy, sharing, preemption) in runs {
            let label = format!("{policy:?} sharing={sharing} {preemption}");
            // 48 tokens of budget: a few requests at a time, preemptions under paging.
            let sim = SimConfig {
                sharing,
                preemption,
                swap_bytes: 1024 * bytes_per_token,
                ..SimConfig::new(policy, 48 * bytes_per_token, bytes_per_token, 32)
            };
            let mut exec = ModelExecutor::new(&model, 48, 7);
            let r = simulate_with(&sim, &requests, &mut exec).unwrap();
            assert_eq!(r.summary.completed, requests.len(), "{label}");
            if matches!(policy, Policy::Paged { .. }) {
                assert!(r.summary.preemptions > 0, "the budget is meant to force preemption");
            }
            if preemption == Preemption::Swap {
                assert!(r.traffic.swap_ins > 0 && r.traffic.recomputed_tokens == 0, "{label}");
                assert!(exec.measured.swap_wall > Duration::ZERO);
            }
            if sharing {
                assert!(r.traffic.prefix_hit_tokens > 0 && r.traffic.cow_tokens > 0, "{label}");
            }
            let produced = r.summary.tokens_per_iteration * r.summary.iterations as f64;
            assert_eq!(exec.measured.tokens_produced, produced.round() as u64, "{label}");
            for req in &requests {
                let served = &exec.finished[&req.id];
                let (prompt, out) = served.split_at(req.prompt_tokens);
                assert_eq!(out.len(), req.output_tokens, "{label} request {}", req.id);
                let mut cache = ConcatCache::<B>::new(KvLayout::new(&config, 1));
                let alone = generate(
                    &model,
                    &mut cache,
                    &[prompt.to_vec()],
                    req.output_tokens,
                    &Sampling::Greedy,
                    |_| {},
                )
                .unwrap();
                assert_eq!(out, alone[0].as_slice(), "{label} request {}", req.id);
            }
        }
    }
}
