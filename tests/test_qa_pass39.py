"""Pass 39: compare takes serve's expert-parallel exchange options (one vocabulary across the serving commands)."""

from __future__ import annotations


def test_compare_takes_serves_dispatcher_and_reads_serves_answer(cli) -> None:
    """DeepSeek-V3 on 16 H200: serve's pick is data-parallel attention over EP 8; with DeepEP's exchange compare's
    row for h200 is serve's figure for the same request, and the option changes it (it was "no such option")."""
    rows = {}
    for extra in ((), ("--dispatcher", "deepep")):
        cmp = {r["gpu"]: r for r in cli("compare", "deepseek-v3", "h200", "b200", "--num-gpus", "16", *extra, "--json").json()}
        best = cli("serve", "deepseek-v3", "--gpu", "h200", "--num-gpus", "16", *extra, "--json").json()["layouts"][0]
        assert cmp["h200"]["tokens_per_s"] == best["tokens_per_s_per_gpu"] * 16
        rows[extra] = cmp["h200"]["tokens_per_s"]
    assert rows[()] != rows[("--dispatcher", "deepep")]
    r = cli("compare", "llama3-8b", "h100", "h200", "--rate", "5", "--dispatcher", "deepep")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --dispatcher") and "has none" in r.err
    r = cli("compare", "mixtral-8x7b", "h100", "h200", "--num-gpus", "1", "--moe-permute-scope", "local")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --moe-permute-scope")


def test_a_moe_fine_tune_under_pp_prices_the_rank_as_training_does(cli) -> None:
    """DeepSeek-V3 (3 dense layers, then MoE) on PP 4, Megatron-Core's split 15, 16, 16, 14: rank 1's 16 MoE layers hold
    the most. A full fine-tune's own states are scaled by the rank's share of all the parameters, dense and routed
    experts alike, so its weights are training's: 2 B x rank 1's parameters (calc.model.params' counts, tested against
    transformers). Scaled by the dense share alone they were 429 GB against 368 GB."""
    from calc.memory.pipeline import stage_params
    from calc.sources.catalog import load_model

    args = ("deepseek-v3", "--stack", "megatron", "--gpu", "h100", "--pp", "4", "--json")
    train = cli("memory", args[0], "--mode", "train", *args[1:]).json()
    tune = cli("memory", args[0], "--mode", "finetune", "--method", "full", *args[1:]).json()
    rank1 = sum(stage_params(load_model("deepseek-v3"), 4)[1])
    assert train["per_gpu"]["weights"] == tune["per_gpu"]["weights"] == 2 * rank1


def test_memory_infer_finds_a_pipelined_count_between_whole_nodes(cli) -> None:
    """QA40 #10: Llama 3.1 405B in bf16 (405,853,388,800 parameters, 811.7 GB) does not fit 8 H100s (811.7 / 8 =
    101.5 GB against 79.20 GiB = 85.0 GB each) and no count from 9 to 11 is a serving layout (TP must divide the 128
    heads in powers of two); 12 GPUs as TP 4 x PP 3 (42 of 126 layers a stage, 811.7 / 12 = 67.6 GB plus the
    embedding or head) fit. The smallest count `memory` names is that one, and `memory --num-gpus 12` places it."""
    r = cli("memory", "llama3.1-405b", "--gpu", "h100", "--seq", "1280", "--json")
    assert r.json()["min_gpus"] == 12
    placed = cli("memory", "llama3.1-405b", "--gpu", "h100", "--seq", "1280", "--num-gpus", "12", "--json").json()
    assert (placed["tp"], placed["pp"], placed["fits"]) == (4, 3, True)
    # QA40 #17: the serving commands place a bare --num-gpus 12 the same way
    served = cli("latency", "llama3.1-405b", "--gpu", "h100", "--num-gpus", "12", "--json").json()
    assert (served["tp"], served["pp"]) == (4, 3)


def test_an_awq_checkpoint_needs_whole_groups_of_inputs(cli) -> None:
    """QA40 #16: AWQ / GPTQ quantize whole groups of 128 inputs; gpt-oss's matrices read 2,880 = 22.5 x 128 inputs, so no
    g128 checkpoint of it exists: --dtype awq is refused as --dtype int4 --group-size 128 is, naming the width."""
    for fmt in ("awq", "gptq"):
        r = cli("memory", "gpt-oss-120b", "--gpu", "h100", "--dtype", fmt)
        assert r.code == 2 and r.err.startswith("llmcalc: error: --dtype") and "2,880" in r.err, r.err
    assert cli("memory", "llama3-8b", "--gpu", "h100", "--dtype", "awq").code == 0  # 4,096 and 14,336 are multiples


def test_a_shared_prefix_on_a_state_space_hybrid_is_refused(cli) -> None:
    """QA40 #6: vLLM's hybrid allocator runs a model with state layers without prefix caching, so --shared-prefix
    would change nothing: refused, naming it; a transformer still stores the prefix once."""
    r = cli("concurrency", "bamba-9b", "--gpu", "h100", "--max-model-len", "8192", "--shared-prefix", "4000")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --shared-prefix"), r.err
    base = cli("concurrency", "llama3-8b", "--gpu", "h100", "--max-model-len", "8192", "--json").json()
    shared = cli("concurrency", "llama3-8b", "--gpu", "h100", "--max-model-len", "8192", "--shared-prefix", "4000",
                 "--json").json()
    assert shared["max_concurrency"] > base["max_concurrency"]


def test_releases_without_the_hybrid_allocator_cache_local_layers_whole(cli) -> None:
    """QA40 #8 / #15: a vLLM release that runs every attention layer under one full-attention KV spec caches the whole
    context on its local layers (unify_hybrid_kv_cache_specs). Gemma 3 27B (62 layers, 16 KV heads x 128, bf16:
    62 x 16 x 128 x 2 x 2 = 507,904 B a token) at 8,192 tokens (8,191 slots in whole blocks of 16: 8,192) holds
    507,904 x 8,192 = 4,160,749,568 B under V1 0.8 and V0, its windows applied from 0.9.1. Llama 4 Scout (48 layers, 8 KV
    heads x 128: 196,608 B a token) at 65,536 tokens holds 196,608 x 65,536 = 12,884,901,888 B under 0.11 (chunked
    attention's hybrid manager off by default from 0.10.1 to 0.13), less under 0.10.0 and 0.14."""
    def per_request(*args: str) -> int:
        return cli("concurrency", *args, "--json").json()["kv_cache_bytes_per_request"]

    gemma = ("gemma3-27b", "--gpu", "h100", "--max-model-len", "8192")
    assert 62 * 16 * 128 * 2 * 2 * 8192 == 4_160_749_568
    assert per_request(*gemma, "--engine-version", "0.8") == 4_160_749_568
    assert per_request(*gemma, "--engine", "vllm-v0") == 4_160_749_568
    assert per_request(*gemma, "--engine-version", "0.9.1") < 4_160_749_568
    scout = ("llama4-scout", "--gpu", "h100", "--num-gpus", "4", "--max-model-len", "65536")
    assert per_request(*scout, "--engine-version", "0.11") == 48 * 8 * 128 * 2 * 2 * 65_536 == 12_884_901_888
    assert per_request(*scout, "--engine-version", "0.10.0") == per_request(*scout, "--engine-version", "0.14") \
        < 12_884_901_888 // 2


def test_a_utilization_above_the_free_memory_is_refused(cli) -> None:
    """QA40 #23: vLLM V1 (from 0.9.1) refuses to start when gpu_memory_utilization x total exceeds the memory free at
    startup, the total less its CUDA context: on an H100 (79.20 GiB by CUDA) 1 - 0.5 / 79.20 = 0.9937, so 1.0 and
    0.995 are refused naming the flag, 0.99 runs."""
    for util in ("1", "0.995"):
        r = cli("concurrency", "llama3-8b", "--gpu", "h100", "--gpu-memory-utilization", util)
        assert r.code == 2 and r.err.startswith("llmcalc: error: --gpu-memory-utilization") and "<= 0.993" in r.err, r.err
    assert cli("concurrency", "llama3-8b", "--gpu", "h100", "--gpu-memory-utilization", "0.99").code == 0


def test_tensorrt_llm_has_no_fp8_on_ampere(cli) -> None:
    """QA40 #13: TensorRT-LLM's support matrix lists FP8 from Ada (SM89) and Hopper, not Ampere (SM80 / SM86): fp8
    weights (given, or as DeepSeek-V3 ships them) or an fp8 KV cache on an A100 are refused under --engine trtllm,
    naming the flag; vLLM runs fp8 weights there weight-only (FP8 Marlin), and TensorRT-LLM runs them on an H100."""
    r = cli("latency", "llama3-8b", "--gpu", "a100", "--engine", "trtllm", "--dtype", "fp8")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --dtype: TensorRT-LLM has no fp8"), r.err
    r = cli("concurrency", "llama3-8b", "--gpu", "a100", "--engine", "trtllm", "--kv-dtype", "fp8")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --kv-dtype: TensorRT-LLM has no fp8"), r.err
    assert cli("latency", "llama3-8b", "--gpu", "a100", "--dtype", "fp8").code == 0
    assert cli("latency", "llama3-8b", "--gpu", "h100", "--engine", "trtllm", "--dtype", "fp8").code == 0


def test_serve_breaks_near_ties_towards_the_smaller_replica(cli) -> None:
    """QA40 #14: without traffic, serve ranked Llama 3 8B on TP 1 x PP 2 (2 GPUs) first for a few percent more tokens/s
    per GPU than one GPU, inside every band. Within 5% of the best the fewest GPUs per replica rank first."""
    d = cli("serve", "llama3-8b", "--gpu", "h100", "--json").json()
    best, rows = d["best"], d["layouts"]
    top = max(x["tokens_per_s_per_gpu"] for x in rows if x["meets_targets"])
    ties = [x for x in rows if x["meets_targets"] and x["tokens_per_s_per_gpu"] >= 0.95 * top]
    assert best["gpus_per_replica"] == min(x["gpus_per_replica"] for x in ties) == 1


def test_vllm_v1_block_sizes_on_cuda_are_multiples_of_16(cli) -> None:
    """QA40 #28: vLLM V1's FlashAttention backend takes block sizes in multiples of 16 on CUDA; 8 is refused naming
    --block-size (it changed no figure), 32 runs."""
    r = cli("concurrency", "llama3-8b", "--gpu", "h100", "--block-size", "8")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --block-size"), r.err
    assert cli("concurrency", "llama3-8b", "--gpu", "h100", "--block-size", "32").code == 0
