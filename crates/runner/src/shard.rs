//! Splitting a sweep into shards that run anywhere (a Slurm job array, several machines) and
//! are merged back by `runner merge`.
//!
//! A [`Plan`] assigns every run of an experiment (every workload's runs, after `--only`) to
//! one of N shards, balancing an estimate of each run's cost. The estimate only has to rank
//! runs: tokens pushed through the model × the model's parameters (× the context for
//! `none`, which recomputes it every step). Costs are integers and the assignment breaks ties
//! by shard index and pinned run order, so the same file and N give the same plan on any
//! machine.
//!
//! A shard run writes the plan beside its CSVs as [`MANIFEST_FILE`]; the merge reads it back
//! to know which runs must be present, and where each should have come from.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use kvlab_model::ModelConfig;
use kvlab_strategies::StrategyKind;
use serde::{Deserialize, Serialize};

use crate::experiment::{Experiment, PplMode};
use crate::sweep::{Run, Workload};

/// The plan a shard directory was written under (`<out>/<experiment>/shard.json`).
pub(crate) const MANIFEST_FILE: &str = "shard.json";

/// `--shard I/N`: shard `index` (0-based, as `$SLURM_ARRAY_TASK_ID`) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSpec {
    pub index: usize,
    pub count: usize,
}

impl ShardSpec {
    /// Parses `I/N` with `0 ≤ I < N`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not I/N with 0 ≤ I < N (e.g. --shard 0/4)");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// One run of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PlannedRun {
    /// The workload name (the CSV the run's row goes to).
    pub workload: String,
    pub run_id: String,
    /// Estimated cost: tokens through the model × weights per token (see the module docs).
    pub cost: u128,
    pub shard: usize,
}

/// Every run of one experiment, in the pinned order, each with its shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Plan {
    pub experiment: String,
    pub backend: String,
    pub shards: usize,
    /// `--only` filters the plan was made under (`key=value`).
    pub only: Vec<String>,
    pub runs: Vec<PlannedRun>,
}

impl Plan {
    /// Plans `e`'s runs (those matching `only`) over `shards` shards.
    pub fn new(e: &Experiment, only: &[(String, String)], shards: usize) -> Result<Self> {
        if shards == 0 {
            bail!("--shards must be at least 1");
        }
        let backend = e.backend.name();
        let mut runs = vec![];
        for w in e.workloads() {
            for run in e.runs(w) {
                let run_id = run.id(backend);
                if crate::sweep::id_matches(&run_id, only) {
                    let cost = estimate_cost(e, &run);
                    runs.push(PlannedRun { workload: w.name().into(), run_id, cost, shard: 0 });
                }
            }
        }
        assign(&mut runs, shards);
        Ok(Self {
            experiment: e.name().into(),
            backend: backend.into(),
            shards,
            only: only.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            runs,
        })
    }

    /// The estimated cost of each shard.
    pub fn loads(&self) -> Vec<u128> {
        let mut loads = vec![0u128; self.shards];
        for r in &self.runs {
            loads[r.shard] += r.cost;
        }
        loads
    }

    /// A human-readable plan: one block per shard, its runs in pinned order.
    pub(crate) fn render(&self) -> String {
        let total: u128 = self.runs.iter().map(|r| r.cost).sum::<u128>().max(1);
        let mut s = format!(
            "# {}: {} runs over {} shards (backend {})\n",
            self.experiment,
            self.runs.len(),
            self.shards,
            self.backend
        );
        for (shard, load) in self.loads().into_iter().enumerate() {
            let runs: Vec<&PlannedRun> = self.runs.iter().filter(|r| r.shard == shard).collect();
            s += &format!(
                "shard {shard}/{}: {} runs, {:.1}% of the estimated cost\n",
                self.shards,
                runs.len(),
                100.0 * load as f64 / total as f64
            );
            for r in runs {
                s += &format!("  {}\t{}\n", r.workload, r.run_id);
            }
        }
        s
    }

    /// Checks that a shard directory holds no manifest, or this one (a resumed shard must be
    /// the same shard of the same plan).
    pub(crate) fn check_manifest(&self, dir: &Path, shard: ShardSpec) -> Result<()> {
        let path = dir.join(MANIFEST_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
        let found: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{}: unreadable shard manifest", path.display()))?;
        if found != (Manifest { shard, plan: self.clone() }) {
            bail!(
                "{} was written for shard {} of a plan of {} runs; this is shard {shard} of a \
                 plan of {} runs (experiment '{}'): write elsewhere with --out DIR",
                path.display(),
                found.shard,
                found.plan.runs.len(),
                self.runs.len(),
                self.experiment
            );
        }
        Ok(())
    }

    /// Writes the plan, with the shard it is run for, into the shard's results directory.
    pub(crate) fn write_manifest(&self, dir: &Path, shard: ShardSpec) -> Result<()> {
        let manifest = Manifest { shard, plan: self.clone() };
        let path = dir.join(MANIFEST_FILE);
        std::fs::write(&path, serde_json::to_string_pretty(&manifest)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Which runs of one experiment this process runs: those matching `--only`, and with
/// `--shard I/N` only those the plan gives shard I.
#[derive(Debug, Clone)]
pub(crate) struct Selection {
    pub only: Vec<(String, String)>,
    pub shard: Option<(ShardSpec, Plan)>,
    /// `(workload, run id)` of the runs the plan gives this shard.
    held: HashSet<(String, String)>,
}

impl Selection {
    /// The selection for `e`: its plan is made here when a shard is asked for.
    pub fn new(
        e: &Experiment,
        only: &[(String, String)],
        shard: Option<ShardSpec>,
    ) -> Result<Self> {
        let shard = match shard {
            Some(s) => Some((s, Plan::new(e, only, s.count)?)),
            None => None,
        };
        let held = match &shard {
            Some((s, plan)) => plan
                .runs
                .iter()
                .filter(|r| r.shard == s.index)
                .map(|r| (r.workload.clone(), r.run_id.clone()))
                .collect(),
            None => HashSet::new(),
        };
        Ok(Self { only: only.to_vec(), shard, held })
    }

    pub fn keeps(&self, workload: Workload, run_id: &str) -> bool {
        crate::sweep::id_matches(run_id, &self.only)
            && (self.shard.is_none()
                || self.held.contains(&(workload.name().to_string(), run_id.to_string())))
    }
}

/// What a shard directory's `shard.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub shard: ShardSpec,
    pub plan: Plan,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("{}: not a shard directory (no {MANIFEST_FILE})", dir.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("{}: unreadable", path.display()))
    }
}

/// Longest processing time first: the costliest unassigned run goes to the least loaded shard.
/// Ties: the earlier run in pinned order first; the lower shard index.
fn assign(runs: &mut [PlannedRun], shards: usize) {
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by(|&a, &b| runs[b].cost.cmp(&runs[a].cost).then(a.cmp(&b)));
    let mut loads = vec![0u128; shards];
    for i in order {
        let shard = (0..shards).min_by_key(|&s| (loads[s], s)).unwrap_or(0);
        loads[shard] += runs[i].cost.max(1);
        runs[i].shard = shard;
    }
}

/// A `.gguf` path's size is not known without opening it: plan it as SmolLM2-135M.
fn model_config(name: &str) -> ModelConfig {
    ModelConfig::preset(name).unwrap_or_else(|_| ModelConfig::smollm2_135m())
}

/// Tokens pushed through the model by a run (one token recomputed per position of the context
/// counts once per position: `none` pays the whole prefix again at every step).
fn tokens_processed(e: &Experiment, run: &Run) -> u128 {
    let recompute = run.kind() == StrategyKind::NONE;
    // Streaming `steps` tokens one at a time after a prefill of `prefix`.
    let streamed = |prefix: u128, steps: u128| -> u128 {
        if recompute { (1..=steps).map(|i| prefix + i).sum::<u128>() } else { prefix + steps }
    };
    let w = &e.file.workload;
    let batch = run.batch() as u128;
    let context = run.usize("context").unwrap_or(1) as u128;
    match run.workload {
        Workload::Walkthrough => {
            w.walkthrough.as_ref().map_or(1, |p| streamed(p.prompt_tokens as u128, p.steps as u128))
        }
        Workload::Memory => batch * context,
        Workload::Throughput => w.throughput.as_ref().map_or(1, |p| {
            let passes = (p.repeats + p.warmup).max(1) as u128;
            passes * batch * streamed(context, p.decode_tokens as u128)
        }),
        Workload::Perplexity => w.perplexity.as_ref().map_or(1, |p| match p.mode {
            PplMode::Chunked => p.tokens as u128,
            PplMode::Streaming => streamed(0, p.tokens as u128),
        }),
        // A simulation, unless its batches are executed through the model.
        Workload::Fragmentation => w.fragmentation.as_ref().map_or(1, |p| {
            let requests = p.requests.unwrap_or(100) as u128;
            if p.execute { requests * p.max_seq_len as u128 / 2 } else { requests }
        }),
        Workload::Retrieval => w.retrieval.as_ref().map_or(1, |p| {
            let cases = (p.depths.len() * p.samples) as u128;
            cases * streamed(context, p.answer_tokens as u128)
        }),
    }
}

/// A run's estimated cost; simulations do not touch the model's weights.
pub(crate) fn estimate_cost(e: &Experiment, run: &Run) -> u128 {
    let tokens = tokens_processed(e, run).max(1);
    let executes = e.file.workload.fragmentation.as_ref().is_some_and(|p| p.execute);
    if run.workload == Workload::Fragmentation && !executes {
        return tokens;
    }
    tokens * crate::model::parameters(&model_config(run.model()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cost: u128) -> PlannedRun {
        PlannedRun { workload: "memory".into(), run_id: format!("c={cost}"), cost, shard: 9 }
    }

    #[test]
    fn shard_spec_parses_zero_based_indices_only_below_the_count() {
        assert_eq!(ShardSpec::parse("0/4"), Ok(ShardSpec { index: 0, count: 4 }));
        assert_eq!(ShardSpec::parse("3/4").map(|s| s.to_string()), Ok("3/4".into()));
        for bad in ["4/4", "1/0", "x/2", "1", "-1/2", "1/2/3"] {
            assert!(ShardSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn greedy_assignment_stays_within_one_run_of_the_mean() {
        // LPT's bound: the heaviest shard exceeds the mean by less than the costliest run.
        let costs: Vec<u128> = (0..57).map(|i| (i * 7919 % 101 + 1) as u128 * 1000).collect();
        for shards in 1..=8 {
            let mut runs: Vec<PlannedRun> = costs.iter().map(|&c| run(c)).collect();
            assign(&mut runs, shards);
            let mut loads = vec![0u128; shards];
            for r in &runs {
                loads[r.shard] += r.cost;
            }
            let total: u128 = costs.iter().sum();
            let max_run = *costs.iter().max().unwrap();
            let heaviest = *loads.iter().max().unwrap();
            assert!(heaviest * shards as u128 <= total + shards as u128 * max_run, "{loads:?}");
            assert!(runs.iter().all(|r| r.shard < shards));
        }
    }

    #[test]
    fn equal_costs_deal_round_robin_in_pinned_order() {
        let mut runs: Vec<PlannedRun> = (0..6).map(|_| run(5)).collect();
        assign(&mut runs, 4);
        let shards: Vec<usize> = runs.iter().map(|r| r.shard).collect();
        assert_eq!(shards, [0, 1, 2, 3, 0, 1]);
    }

    #[test]
    fn the_model_size_orders_runs_of_equal_tokens() {
        let toy = crate::model::parameters(&ModelConfig::seed_toy());
        let smol = crate::model::parameters(&ModelConfig::smollm2_135m());
        // SmolLM2-135M's published count (tied embeddings); the toy model's untied head counts
        // twice: 2 · (4 · 256 · 64 · 4 + 3 · 256 · 512 + 2 · 256) + 256 + 2 · 256 · 100.
        assert_eq!(smol, 134_515_008);
        assert_eq!(toy, 1_363_200);
    }
}
