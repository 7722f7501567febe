//! The writer's older headers that committed results still carry: each CSV's header is
//! versioned, and a file with one of these is an older version the readers still take (rows
//! are read by column name, a column the file lacks takes its default; `runner compare`
//! reports the columns one version has and the other lacks without failing on them).
//!
//! A results directory stays on an older version only where re-running it is out of reach of
//! the machine that changed the writer: timings measured over five rounds that the text cites
//! (`results/perf`), a CUDA GPU (`results/gpu`), a Vulkan device (`results/wgpu*`), or hours
//! of CPU (the larger sweeps). A writer change that leaves any other committed CSV behind
//! fails `tests/results_headers.rs`: re-run that experiment, or add its old header here,
//! saying why. Re-running a directory makes its entry here unneeded; an entry no committed file
//! carries fails the same test, so the list never outlives its files.

/// One older header of one CSV file name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retired {
    /// The CSV's file name (`throughput.csv`).
    pub file: &'static str,
    /// The columns, comma-separated, as the file's first line.
    pub header: &'static str,
    /// What the writer changed since (so a reader knows which columns the file lacks and why).
    pub since: &'static str,
}

/// The older header versions, by file name.
pub const RETIRED: &[Retired] = &[
    Retired {
        file: "memory.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,block_size,bits,group_size,quant_axis,scheme,residual,kv_heads,\
                 head_reduction,batch,context,kv_tokens,kv_allocated_bytes,kv_live_bytes,\
                 kv_metadata_bytes,formula_bytes,bytes_per_token,formula_bytes_per_token,\
                 process_peak_bytes,device_bytes_in_use,device_bytes_reserved",
        since: "before the keep-policy (bc168dc), rotation (bed7b91) and key_order (c34c1a8) \
                strategy keys and plan_formula_bytes (fc9f6b9)",
    },
    Retired {
        file: "memory.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,block_size,bits,group_size,quant_axis,scheme,residual,rotation,\
                 key_order,kv_heads,head_reduction,batch,context,kv_tokens,kv_allocated_bytes,\
                 kv_live_bytes,kv_metadata_bytes,formula_bytes,bytes_per_token,\
                 formula_bytes_per_token,process_peak_bytes,device_bytes_in_use,\
                 device_bytes_reserved",
        since: "before the keep-policy strategy keys (bc168dc) and plan_formula_bytes (fc9f6b9)",
    },
    Retired {
        file: "throughput.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,block_size,bits,group_size,quant_axis,scheme,residual,kv_heads,\
                 head_reduction,batch,context,decode_tokens,repeats,prefill_tok_per_s,\
                 decode_tok_per_s,ms_per_token_p50,ms_per_token_p90",
        since: "before the keep-policy, rotation and key_order keys, the key_bucket axis and \
                columns (8a5aecc) and the attention axis (c8c6774)",
    },
    Retired {
        file: "throughput.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,block_size,bits,group_size,quant_axis,scheme,residual,rotation,\
                 key_order,kv_heads,head_reduction,batch,key_bucket,context,decode_tokens,\
                 repeats,prefill_tok_per_s,decode_tok_per_s,ms_per_token_p50,ms_per_token_p90,\
                 key_bucket_used,first_step_ms",
        since: "before the keep-policy strategy keys (bc168dc) and the attention axis (c8c6774)",
    },
    Retired {
        file: "throughput.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,recent,window,kernel,block_size,bits,group_size,quant_axis,scheme,\
                 residual,rotation,key_order,kv_heads,head_reduction,batch,key_bucket,context,\
                 decode_tokens,repeats,prefill_tok_per_s,decode_tok_per_s,ms_per_token_p50,\
                 ms_per_token_p90,key_bucket_used,first_step_ms",
        since: "before the attention axis (c8c6774)",
    },
    Retired {
        file: "perplexity.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,block_size,bits,group_size,quant_axis,scheme,residual,kv_heads,\
                 head_reduction,mode,chunk,corpus,tokens,mean_nll,ppl,ppl_delta_pct,\
                 kv_allocated_bytes,kv_live_bytes",
        since: "before the keep-policy, rotation and key_order keys and the KL and top-1 \
                agreement columns (46188b5)",
    },
    Retired {
        file: "perplexity.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,block_size,bits,group_size,quant_axis,scheme,residual,rotation,\
                 key_order,kv_heads,head_reduction,mode,chunk,corpus,tokens,mean_nll,ppl,\
                 ppl_delta_pct,kv_allocated_bytes,kv_live_bytes",
        since: "before the keep-policy strategy keys (bc168dc) and the KL and top-1 agreement \
                columns (46188b5)",
    },
    Retired {
        file: "perplexity.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,block_size,bits,group_size,quant_axis,scheme,residual,rotation,\
                 key_order,kv_heads,head_reduction,mode,chunk,corpus,tokens,mean_nll,ppl,\
                 ppl_delta_pct,kl_mean,kl_p99,kl_max,top1_agree_pct,kv_allocated_bytes,\
                 kv_live_bytes",
        since: "before the keep-policy strategy keys (bc168dc)",
    },
    Retired {
        file: "retrieval.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,block_size,bits,group_size,quant_axis,scheme,residual,rotation,\
                 key_order,kv_heads,head_reduction,context,question,haystack,corpus,cases,\
                 correct,accuracy_pct,needle_kept_pct,prefill_tokens,prefill_s,\
                 prefill_tok_per_s,kv_allocated_bytes,kv_live_bytes",
        since: "before the keep-policy strategy keys (bc168dc)",
    },
    Retired {
        file: "fragmentation.csv",
        header: "experiment,run_id,git_commit,backend,device,model,policy,block_size,\
                 budget_tokens,budget_bytes,trace_kind,sharing,prompt_tokens,evict,keep_tokens,\
                 compaction,cost,preemption,swap_tokens,trace,trace_requests,trace_seed,\
                 max_seq_len,bytes_per_token,kv_budget_bytes,kv_budget_tokens,requests,\
                 completed,rejected,rejected_too_long,rejected_never_fits,preemptions,\
                 iterations,mean_running,max_running,token_state_pct,shared_pct,reserved_pct,\
                 internal_pct,external_pct,free_pct,stranded_pct,tokens_per_iteration,\
                 kv_bytes_per_request,kv_bytes_per_request_unshared,sharing_saved_pct,\
                 prefill_tokens,recomputed_tokens,prefix_hit_tokens,cow_tokens,evicted_tokens,\
                 blocks_reclaimed,compacted_tokens,swap_outs,swap_ins,swap_bytes,elapsed_s,\
                 ttft_iter_p50,ttft_iter_p90,ttft_iter_p99,tpot_iter_p50,tpot_iter_p90,\
                 tpot_iter_p99,ttft_s_p50,ttft_s_p90,ttft_s_p99,tpot_s_p50,tpot_s_p90,\
                 tpot_s_p99,max_internal_tokens_per_request,model_tokens,model_decode_steps,\
                 model_prefills,model_wall_s,model_swap_s,model_tok_per_s",
        since: "before the serving workload's attention axis (c8c6774)",
    },
    Retired {
        file: "fragmentation_series.csv",
        header: "experiment,run_id,model,policy,block_size,kv_budget_bytes,trace_kind,sharing,\
                 prompt_tokens,evict,keep_tokens,compaction,cost,preemption,swap_tokens,\
                 iteration,running,waiting,utilization,stranded,live_tokens,blocks_held,\
                 stranded_blocks",
        since: "before the serving workload's attention axis (c8c6774)",
    },
    Retired {
        file: "memory.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,recent,window,kernel,block_size,bits,group_size,quant_axis,scheme,\
                 residual,rotation,key_order,kv_heads,head_reduction,batch,context,kv_tokens,\
                 kv_allocated_bytes,kv_live_bytes,kv_metadata_bytes,formula_bytes,\
                 plan_formula_bytes,bytes_per_token,formula_bytes_per_token,process_peak_bytes,\
                 device_bytes_in_use,device_bytes_reserved",
        since: "before the key_bits, value_bits, key_scheme, value_scheme (2e9461d), rank \
                (1b527e1) and rank_basis (393044e) strategy keys",
    },
    Retired {
        file: "throughput.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,recent,window,kernel,block_size,bits,group_size,quant_axis,scheme,\
                 residual,rotation,key_order,kv_heads,head_reduction,batch,key_bucket,attention,\
                 context,decode_tokens,repeats,prefill_tok_per_s,decode_tok_per_s,ms_per_token_p50,\
                 ms_per_token_p90,key_bucket_used,first_step_ms",
        since: "before the key_bits, value_bits, key_scheme, value_scheme (2e9461d), rank \
                (1b527e1) and rank_basis (393044e) strategy keys",
    },
    Retired {
        file: "perplexity.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,recent,window,kernel,block_size,bits,group_size,quant_axis,scheme,\
                 residual,rotation,key_order,kv_heads,head_reduction,mode,chunk,corpus,tokens,\
                 mean_nll,ppl,ppl_delta_pct,kl_mean,kl_p99,kl_max,top1_agree_pct,\
                 kv_allocated_bytes,kv_live_bytes",
        since: "before the key_bits, value_bits, key_scheme, value_scheme (2e9461d), rank \
                (1b527e1) and rank_basis (393044e) strategy keys",
    },
    Retired {
        file: "retrieval.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,recent,window,kernel,block_size,bits,group_size,quant_axis,scheme,\
                 residual,rotation,key_order,kv_heads,head_reduction,context,question,haystack,\
                 corpus,cases,correct,accuracy_pct,needle_kept_pct,prefill_tokens,prefill_s,\
                 prefill_tok_per_s,kv_allocated_bytes,kv_live_bytes",
        since: "before the key_bits, value_bits, key_scheme, value_scheme (2e9461d), rank \
                (1b527e1) and rank_basis (393044e) strategy keys",
    },
    Retired {
        file: "memory.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,recent,window,kernel,block_size,bits,key_bits,value_bits,group_size,\
                 quant_axis,scheme,key_scheme,value_scheme,residual,rotation,rank,rank_basis,\
                 key_order,kv_heads,head_reduction,batch,context,kv_tokens,kv_allocated_bytes,\
                 kv_live_bytes,kv_metadata_bytes,formula_bytes,plan_formula_bytes,\
                 bytes_per_token,formula_bytes_per_token,process_peak_bytes,device_bytes_in_use,\
                 device_bytes_reserved",
        since: "before the query_bits strategy key (f83198e) and, in perplexity.csv, the draws \
                columns (a6ba815)",
    },
    Retired {
        file: "perplexity.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,recent,window,kernel,block_size,bits,key_bits,value_bits,group_size,\
                 quant_axis,scheme,key_scheme,value_scheme,residual,rotation,rank,rank_basis,\
                 key_order,kv_heads,head_reduction,mode,chunk,corpus,tokens,mean_nll,ppl,\
                 ppl_delta_pct,kl_mean,kl_p99,kl_max,top1_agree_pct,kv_allocated_bytes,\
                 kv_live_bytes",
        since: "before the query_bits strategy key (f83198e) and, in perplexity.csv, the draws \
                columns (a6ba815)",
    },
    Retired {
        file: "walkthrough.csv",
        header: "experiment,run_id,git_commit,backend,device,model,strategy,cache_tokens,\
                 sink_tokens,recent,window,kernel,block_size,bits,key_bits,value_bits,group_size,\
                 quant_axis,scheme,key_scheme,value_scheme,residual,rotation,rank,rank_basis,\
                 key_order,kv_heads,head_reduction,prompt_tokens,steps,generated,kv_tokens,\
                 kv_live_bytes,formula_bytes",
        since: "before the query_bits strategy key (f83198e) and, in perplexity.csv, the draws \
                columns (a6ba815)",
    },
];

/// The older version `header` of `file` is, if it is one.
pub fn find(file: &str, header: &[String]) -> Option<&'static Retired> {
    RETIRED.iter().find(|r| r.file == file && r.columns().eq(header.iter().map(String::as_str)))
}

impl Retired {
    /// The header's column names, in order.
    pub fn columns(&self) -> impl Iterator<Item = &'static str> {
        self.header.split(',')
    }
}
