"""Cross-command identities of serving capacity and inference memory (issue 20; issue 24 item 7): one
capacity rule and one weight placement, so every command admits the same requests for the same deployment.
Each identity is checked through two commands (or engine functions), and each against a number worked
out by hand from the specs (H100 SXM: CUDA total 81105 MiB = 85,044,756,480 B, the total torch.cuda.mem_get_info
reports and vLLM budgets on) and the default engine, vLLM V1 (0.11): utilisation 0.9,
block 16; non-torch memory 0.1 GiB (V1 >= 0.9.1 counts only what appears above its snapshot, the CUDA context is
outside it); on a device of >= 70 GiB that is not an A100 (EngineArgs.get_batch_defaults, vLLM >= 0.9)
max_num_batched_tokens 8192 and max_num_seqs 1024, so the profile run is 8192 tokens whatever max_model_len is
(chunked prefill is always on in V1) and its sampler logits min(1024, 8192) = 1024 rows at 38 B per logit (the
PyTorch-native top-k/top-p sort of a pip 0.11 install: bf16 logits 2 + fp32 copy 4 + sorted values 4 + int64 indices
8 + int64 iota 8 + CUB alternate key/value buffers 12), the peak of the profile when it outweighs the forward."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from calc.memory import inference_memory
from calc.memory.kv import kv_cache_bytes_per_token
from calc.model.parallel import inference_layout, kv_heads_per_gpu, pp_stage_layers
from calc.serving.capacity import batch_fit_problem, concurrency
from calc.serving.engine_memory import kv_slots, request_kv_bytes
from calc.sources.catalog import list_models, load_gpu, load_model
from calc.specs import Parallelism
from calc.specs.serving import EngineSettings

H100_BYTES = 85_044_756_480  # 81105 MiB
USABLE = 76_540_280_832  # int(0.9 x 85,044,756,480)
NON_TORCH = 107_374_182  # int(0.1 x 2^30)


# -- 1. report: one KV pool and one batch-1 TTFT ------------------------------------------------------

def test_report_shows_the_pool_concurrency_and_serve_compute(cli):
    rep = cli("report", "qwen2.5-7b", "--gpu", "h100", "--json").json()
    conc = cli("concurrency", "qwen2.5-7b", "--gpu", "h100", "--max-model-len", "1280", "--json").json()
    pools = {rep["concurrency"]["kv_cache_tokens"], conc["kv_cache_tokens"]}
    assert len(pools) == 1, pools  # was 1,061,056 (concurrency) vs 988,656 (serve's plan) on one page
    # the serving plan runs the engine its line starts: max_num_seqs at the batch (concurrency takes the same cap)
    best = rep["serving"]["best"]
    capped = cli("concurrency", "qwen2.5-7b", "--gpu", "h100", "--max-model-len", "1280", "--max-num-seqs",
                 str(best["batch"]), "--json").json()
    assert capped["kv_cache_tokens"] >= best["kv_cache_tokens"] >= conc["kv_cache_tokens"]
    assert rep["concurrency"]["max_concurrency"] == conc["max_concurrency"]
    lat = cli("latency", "qwen2.5-7b", "--gpu", "h100", "--prompt", "1024", "--output", "256", "--json").json()
    assert rep["latency"]["ttft_s"] == lat["ttft_s"] and rep["latency"]["tpot_s"] == lat["tpot_s"]


def test_report_pool_by_hand():
    # qwen2.5-7b bf16 (7,615,616,512 params): weights 15,231,233,024 B; vLLM V1 on an H100: profile run of
    # max_num_batched_tokens 8192 tokens (not max_model_len 1280): forward per token 3 x 3584 + 3 x 18944 (gated MLP)
    # = 67,584 values x 2 B x 8192 = 1,107,296,256 B; sampling phase (larger) 8192 x 3584 x 2 = 58,720,256 hidden
    # states + 1024 x 152,064 x 38 = 5,917,114,368 -> 5,975,834,624 B.
    # KV/token = 2 x 28 x 4 x 128 x 2 = 57,344 B; block 917,504 B.
    # (76,540,280,832 - 15,231,233,024 - 5,975,834,624 - 107,374,182) // 917,504 = 60,191 blocks -> 752 requests.
    budget = USABLE - 15_231_233_024 - 5_975_834_624 - NON_TORCH
    blocks = budget // 917_504
    assert blocks == 60_191
    r = concurrency(load_model("qwen2.5-7b"), load_gpu("h100"), max_tokens=1280, dtype=None)
    assert r.num_gpu_blocks == blocks and r.kv_cache_tokens == 16 * blocks
    assert r.max_concurrency == blocks // 80  # 1280 - 1 slots = 80 blocks


# -- 2. latency admits exactly what concurrency says fits ---------------------------------------------

def test_llama3_8b_concurrency_and_latency_agree_by_hand(cli):
    # weights 8,030,261,248 x 2 = 16,060,522,496 B; vLLM V1 profile run of 8192 tokens (max_num_batched_tokens):
    # forward 8192 x (3 x 4096 + 3 x 14336) x 2 = 905,969,664, below the sampling phase 8192 x 4096 x 2 = 67,108,864
    # + 1024 x 128,256 x 38 = 4,990,697,472 -> 5,057,806,336 B.
    # KV/token 2 x 32 x 8 x 128 x 2 = 131,072 B, block 2,097,152 B; a 4096-token request: 4095 slots = 256 blocks.
    # (76,540,280,832 - 16,060,522,496 - 5,057,806,336 - 107,374,182) // 2,097,152 = 26,376 blocks -> 103 requests.
    blocks = (USABLE - 16_060_522_496 - 5_057_806_336 - NON_TORCH) // 2_097_152
    assert blocks == 26_376
    fits = blocks // 256
    assert fits == 103
    conc = cli("concurrency", "llama3-8b", "--gpu", "h100", "--max-model-len", "4096", "--json")
    assert conc.code == 0 and conc.json()["max_concurrency"] == fits
    base = ("latency", "llama3-8b", "--gpu", "h100", "--prompt", "2048", "--output", "2048", "--json")
    assert cli(*base, "--batch", str(fits)).code == 0
    over = cli(*base, "--batch", str(fits + 1))
    assert over.code == 2 and f"{fits} requests" in over.err


@pytest.mark.parametrize(("model", "gpu", "prompt", "output", "tp"), [
    ("llama3-8b", "a100-40g", 1000, 200, 1),
    ("gemma3-4b", "l4", 3000, 1000, 1),
    ("mixtral-8x7b", "h100", 4000, 1000, 2),
    ("qwen2.5-7b", "rtx4090", 500, 500, 1),
])
def test_latency_admits_exactly_concurrency(model, gpu, prompt, output, tp):
    m, g, s = load_model(model), load_gpu(gpu), EngineSettings()
    n = concurrency(m, g, num_gpus=tp, max_tokens=prompt + output, dtype=None).max_concurrency
    assert n >= 1
    plan = Parallelism(tp=tp)
    assert batch_fit_problem(m, g, plan, s, None, None, n, prompt + output) is None  # accepted
    refused = batch_fit_problem(m, g, plan, s, None, None, n + 1, prompt + output)
    assert refused is not None and refused.message.startswith("does not fit")
    assert refused.flag in ("--max-num-seqs", "--num-gpus")


def test_a_request_holds_prompt_plus_output_minus_one_slots():
    # The last sampled token is never written to the cache: 4097 tokens fit 256 blocks of 16, 4098 need 257.
    m = load_model("llama3-8b")
    assert kv_slots(4097) == 4096 and kv_slots(1) == 1
    assert request_kv_bytes(m, 4097, "bf16", 1, 1, 16) == 256 * 2_097_152
    assert request_kv_bytes(m, 4098, "bf16", 1, 1, 16) == 257 * 2_097_152


# -- 3. the engine-log concurrency and ours, side by side ---------------------------------------------

def test_gemma3_log_line_and_max_concurrency_by_hand(cli):
    # gemma3-4b: 34 layers (29 sliding, window 1024; 5 full), 4 KV heads x 256, tied embeddings.
    # weights: the checkpoint vLLM loads (Gemma3ForConditionalGeneration, vision tower included) 4,300,079,472 x 2 =
    # 8,600,158,944 B (the safetensors total_size); vLLM V1 profile run of 8192 tokens: forward 8192 x (3 x 2560 +
    # 3 x 10240) x 2 = 629,145,600, below the sampling phase 8192 x 2560 x 2 = 41,943,040 + 1024 x 262,208 x 38 =
    # 10,203,037,696 -> 10,244,980,736 B. KV per layer and token 2 x 4 x 256 x 2 = 4096 B.
    # The hybrid KV-cache groups (vLLM V1 >= 0.9.1, kv_cache_utils.py _get_kv_cache_groups_uniform_page_size):
    # 29 >= 1.5 x 5 -> groups of 5: ceil(29 / 5) = 6 sliding groups (one padding layer) + 1 full = 7; a block index
    # holds 5 pages of 16 x 4096 = 327,680 B.
    # (76,540,280,832 - 8,600,158,944 - 10,244,980,736 - 107,374,182) // 327,680 = 175,743 blocks;
    # a request of 4096 tokens (4095 slots): 256 full blocks + 6 x 1024 / 16 = 384 sliding ones = 640 -> 274 requests.
    blocks = (USABLE - 8_600_158_944 - 10_244_980_736 - NON_TORCH) // (5 * 16 * 4096)
    assert blocks == 175_743
    r = cli("concurrency", "gemma3-4b", "--gpu", "h100", "--max-model-len", "4096", "--json").json()
    assert r["num_gpu_blocks"] == blocks and r["max_concurrency"] == blocks // 640 == 274
    # "GPU KV cache size" = blocks // 7 groups x 16; "Maximum concurrency" = blocks / (256 full + 6 sliding groups x
    # (cdiv(min(1023 + 8192, 4096), 16) + 1 = 257)) = blocks / 1798 (get_max_concurrency_for_kv_cache_config)
    assert f"GPU KV cache size: {blocks // 7 * 16:,} tokens" in r["engine_log"]
    assert f"Maximum concurrency for 4,096 tokens per request: {blocks / 1798:.2f}x" in r["engine_log"]
    table = cli("concurrency", "gemma3-4b", "--gpu", "h100", "--max-model-len", "4096").out
    assert "summed over the KV-cache groups" in table and "capped at their window" in table


def test_log_divides_by_whole_blocks_of_max_model_len():
    # 1000 tokens = 63 blocks of 16 (not 62.5): vLLM's ratio is blocks / 63
    r = concurrency(load_model("llama3-8b"), load_gpu("h100"), max_tokens=1000)
    line = next(x for x in r.engine_log if x.startswith("Maximum concurrency"))
    assert line == f"Maximum concurrency for 1,000 tokens per request: {r.num_gpu_blocks / 63:.2f}x"


# -- 4. pipeline-stage weights: one placement ----------------------------------------------------------

def test_pp_weights_memory_and_concurrency_agree_by_hand(cli):
    # llama3-8b PP4: 8 layers per stage of q,o 2 x 4096^2 + k,v 2 x 4096 x 1024 = 41,943,040 attention
    # + 3 x 4096 x 14336 = 176,160,768 MLP + 2 x 4096 norms = 218,112,000 params; the last stage adds the final
    # norm (4096) and the LM head (128,256 x 4096 = 525,336,576), the first the embedding (the same size).
    # memory's per-GPU figure is the fullest (last) stage; concurrency's total holds each layer once: the model's
    # 8,030,261,248 parameters x 2 B
    last = (8 * 218_112_000 + 4096 + 525_336_576) * 2
    mem = cli("memory", "llama3-8b", "--mode", "infer", "--pp", "4", "--json").json()
    conc = cli("concurrency", "llama3-8b", "--gpu", "h100", "--pp", "4", "--num-gpus", "4", "--json").json()
    assert mem["per_gpu"]["weights"] == last and conc["weights_bytes"] == 8_030_261_248 * 2
    assert 4 * (8 * 218_112_000) * 2 + 2 * (525_336_576 * 2) + 4096 * 2 == conc["weights_bytes"]


def test_vllm_stage_partition():
    # get_pp_indices: L // p each, the remainder one each from the second-to-last stage backwards
    assert pp_stage_layers(61, 4) == [15, 15, 16, 15]
    assert pp_stage_layers(32, 4) == [8, 8, 8, 8]
    assert pp_stage_layers(10, 4) == [2, 3, 3, 2]


# -- 5. min_gpus is a count `memory --num-gpus` accepts -------------------------------------------------

@pytest.mark.parametrize(("gpu", "n"), [("rtx4090", 40), ("a100-40g", 24), ("l40s", 24)])
def test_405b_min_gpus_is_accepted(cli, gpu, n):
    # 405B bf16 = 811 GB of weights; 40 does not divide its 128 heads, so 40 GPUs are TP 8 x PP 5
    r = cli("memory", "llama3.1-405b", "--gpu", gpu, "--json")
    assert r.json()["min_gpus"] == n
    ok = cli("memory", "llama3.1-405b", "--gpu", gpu, "--num-gpus", str(n), "--json")
    assert ok.code == 0 and ok.json()["fits"] is True and ok.json()["tp"] * ok.json()["pp"] == n


@pytest.mark.parametrize("gpu", ["rtx4090", "a100-40g", "l40s", "h100"])
def test_min_gpus_is_deployable_for_every_catalog_model(gpu):
    g = load_gpu(gpu)
    for m in list_models():
        n = inference_memory(m, gpu=g, dtype=None).min_gpus
        if n is None:
            continue
        layout = inference_layout(m, n)
        assert layout is not None, (m.name, n)
        assert inference_memory(m, gpu=g, plan=layout, dtype=None).fits, (m.name, n)


# -- 6. KV heads per TP rank: one function ----------------------------------------------------------------

def test_kv_heads_replicated_past_the_kv_head_count():
    m = load_model("llama3-8b")  # 8 KV heads
    assert [kv_heads_per_gpu(m, t) for t in (1, 2, 8, 16, 32)] == [8, 4, 1, 1, 1]
    assert kv_cache_bytes_per_token(m, "bf16", tp=16) == 2 * 32 * 1 * 128 * 2


def test_kv_head_arithmetic_lives_in_one_place():
    root = Path(__file__).resolve().parents[1] / "calc"
    pattern = re.compile(r"kv_heads\s*//|kv_heads\s*%|%\s*m\.kv_heads")
    hits = [str(p.relative_to(root)) for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert hits == ["model/parallel.py"], hits


# -- 7. one exit code per outcome -------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ("memory", "llama3-70b", "--gpu", "rtx4090"),
    ("concurrency", "llama3-70b", "--gpu", "h100"),
])
def test_does_not_fit_exits_2_with_and_without_json(cli, args):
    table, as_json = cli(*args), cli(*args, "--json")
    assert table.code == as_json.code == 2
    assert table.err.count("\n") == as_json.err.count("\n") == 1 and "does not fit" in as_json.err
    data = as_json.json()  # the JSON is still printed, whole
    assert data.get("fits", data.get("max_concurrency")) in (False, 0)


def test_fits_exits_0(cli):
    assert load_gpu("h100").cuda_total_bytes == H100_BYTES  # the capacity every derivation above starts from
    for args in (("memory", "llama3-8b", "--gpu", "h100"), ("concurrency", "llama3-8b", "--gpu", "h100")):
        assert cli(*args).code == cli(*args, "--json").code == 0


@pytest.mark.parametrize("engine", ["vllm-v0", "vllm", "sglang", "trtllm"])
def test_context_table_rows_are_runs_at_that_length(engine):
    # A "vs context length" row answers "the engine launched with --max-model-len T": the same figures as concurrency
    # run at T. vLLM V0's profile run is max(max_model_len, 2048) tokens long (vllm/engine/arg_utils.py), so its pool
    # grows as the length shrinks: at 8,192 the table once reused the 8,192-token pool (441 at 1,024, where a run at
    # 1,024 admits 442).
    m, g = load_model("llama3-8b"), load_gpu("h100")
    full = concurrency(m, g, max_tokens=8192, settings=EngineSettings(engine=engine, max_model_len=8192))
    assert [r.max_tokens for r in full.table] == [1024, 2048, 4096, 8192]
    for row in full.table:
        run = concurrency(m, g, max_tokens=row.max_tokens,
                          settings=EngineSettings(engine=engine, max_model_len=row.max_tokens))
        assert (row.max_concurrency, row.max_running) == (run.max_concurrency, run.max_running)
