"""Training states under pipeline parallelism, rank by rank (calc.memory.pipeline.stage_params): the first rank holds
the embedding, the last the head (and a copy of a tied head), every rank its own decoder layers. Numbers worked by hand
from the published configs (Llama 3 8B: H 4096, 32 layers, KV 1024, I 14336, V 128256; Gemma 2 9B: H 3584,
42 layers, 16 heads x 256, 8 KV heads, I 14336, 4 norms a layer, V 256000, tied)."""

from __future__ import annotations

from calc.memory.pipeline import StageSplit, rank_layers, stage_params
from calc.memory.training import training_bytes_per_gpu, training_memory
from calc.sources.catalog import load_model
from calc.specs import Parallelism

# Llama 3 8B, one layer: q 4096^2 + k, v 4096 x 1024 each + o 4096^2 = 41,943,040; MLP 3 x 4096 x 14336 =
# 176,160,768; two RMSNorms 8,192 -> 218,112,000. Embedding 128,256 x 4,096 = 525,336,576, head the same, final norm 4,096.
LLAMA_LAYER = 41_943_040 + 176_160_768 + 8_192
LLAMA_EMBED = 128_256 * 4_096
# Gemma 2 9B, one layer: q 3584 x 4096 + k, v 3584 x 2048 each + o 4096 x 3584 = 44,040,192; MLP 3 x 3584 x 14336 =
# 154,140,672; four RMSNorms 14,336 -> 198,195,200. Embedding 256,000 x 3,584 = 917,504,000 (tied).
GEMMA_LAYER = 44_040_192 + 154_140_672 + 14_336
GEMMA_EMBED = 256_000 * 3_584


def test_each_rank_holds_its_layers_and_the_first_the_embedding_the_last_the_head() -> None:
    m = load_model("llama3-8b")
    assert LLAMA_LAYER == 218_112_000
    assert stage_params(m, 4) == ((8 * LLAMA_LAYER + LLAMA_EMBED, 0), (8 * LLAMA_LAYER, 0),
                                  (8 * LLAMA_LAYER, 0), (8 * LLAMA_LAYER + LLAMA_EMBED + 4_096, 0))
    # the ranks sum to the model's 8,030,261,248 (an untied head adds no copy)
    assert sum(d for d, _ in stage_params(m, 4)) == 8_030_261_248


def test_a_tied_head_is_a_second_copy_of_the_embedding_on_the_last_rank() -> None:
    m = load_model("gemma2-9b")
    # 42 layers on PP 4: Megatron-Core's uneven split 10, 11, 11, 10
    first, second, third, last = stage_params(m, 4)
    assert first == (10 * GEMMA_LAYER + GEMMA_EMBED, 0)
    assert second == third == (11 * GEMMA_LAYER, 0)
    assert last == (10 * GEMMA_LAYER + GEMMA_EMBED + 3_584, 0)  # + the final norm, built by the last stage
    assert sum(d for d, _ in (first, second, third, last)) == 9_241_705_984 + GEMMA_EMBED


def test_interleaved_chunks_take_the_layers_of_their_virtual_stage() -> None:
    # 8 layers, PP 2 x VPP 2: virtual stages 0..3 hold layers (0,1), (2,3), (4,5), (6,7); rank r runs stages r and r + 2
    assert rank_layers(8, 2, StageSplit(vpp=2)) == ((0, 1, 4, 5), (2, 3, 6, 7))
    # the embedding and the loss taking a slot (126 + 2 = 128 = 16 x 8): the first and the last rank build 7 layers
    counts = [len(r) for r in rank_layers(126, 16, StageSplit(embedding=True, loss=True))]
    assert counts == [7] + [8] * 14 + [7]


def test_the_first_rank_prices_its_embedding_states() -> None:
    """bf16-adam (2 B weights, 2 B gradients, 12 B optimizer), TP 1, ZeRO 0: the first rank's states are its own
    2,270,232,576 parameters', where N/p averaged 2,007,565,312 (a 4.2 GB understatement)."""
    m = load_model("llama3-8b")
    parts = training_bytes_per_gpu(m, params=8_030_261_248, tp=1, pp=4, dp=1, seq=2048, recipe="bf16-adam", zero=0)
    first = 8 * LLAMA_LAYER + LLAMA_EMBED
    assert parts["weights"] == 2 * first
    assert parts["optimizer"] == 12 * first


def test_the_last_rank_is_priced_when_its_end_is_the_fuller() -> None:
    """One micro-batch in flight: the first rank holds 8 layers of it, the last 8 layers + the head's logits (V = 128,256
    a token): the head's 128K-wide logits make the last rank the fuller one."""
    m = load_model("llama3-8b")
    kw = dict(params=8_030_261_248, tp=1, pp=4, dp=1, seq=4096, recipe="bf16-adam", zero=0, in_flight=1)
    parts = training_bytes_per_gpu(m, **kw)
    assert parts["weights"] == 2 * (8 * LLAMA_LAYER + LLAMA_EMBED + 4_096)  # the last rank's own, its final norm too


def test_memory_mode_train_says_how_pipeline_states_are_priced() -> None:
    m = load_model("gemma2-9b")
    r = training_memory(m, plan=Parallelism(pp=4))
    line = next(a for a in r.assumptions if a.startswith("pipeline states"))
    assert f"{10 * GEMMA_LAYER + GEMMA_EMBED:,}" in line and "tied head" in line
    assert r.per_gpu["weights"] == 2 * (10 * GEMMA_LAYER + GEMMA_EMBED)


def test_each_rank_is_priced_with_its_own_states_and_activations(cli) -> None:
    """Gemma 2 27B (H 4608, 32 heads x 128, 16 KV heads, I 36864, four norms a layer: 18,874,368 x 2 + 9,437,184 x 2 +
    509,607,936 + 18,432 = 566,249,472 a layer) on PP 16: Megatron-Core's uneven split 2, 3 x 14, 2. Under 1F1B rank r
    holds 16 - r micro-batches: rank 0 32 layer-micro-batches beside 2 layers + the 256,000 x 4,608 embedding, rank 1
    15 x 3 = 45 beside 3 layers. Rank 1 is the fullest, and its peak is its own: its states are 3 layers' (the
    embedding is rank 0's), its activations 45 layers' (pairing rank 0's states with rank 1's activations called the
    job 94 GB, past an H100)."""
    from calc.memory.training import layer_activations

    d = cli("memory", "gemma2-27b", "--mode", "train", "--gpu", "h100", "--pp", "16", "--json").json()
    layer = 18_874_368 * 2 + 9_437_184 * 2 + 509_607_936 + 18_432
    assert layer == 566_249_472
    assert d["per_gpu"]["weights"] == 2 * 3 * layer and d["per_gpu"]["optimizer"] == 12 * 3 * layer
    m = load_model("gemma2-27b")
    per = layer_activations(m, 1, 4096, 1, False, "none", True)
    assert d["per_gpu"]["activations"] == 45 * per.saved + per.workspace
    assert d["fits"] is True
    line = next(a for a in d["assumptions"] if a.startswith("pipeline states"))
    assert f"the fullest rank 1 of 0-15 ({3 * layer:,} parameters, 3 layers" in line


def test_a_full_fine_tune_and_training_price_the_same_pipeline_rank(cli) -> None:
    """16 B a parameter either way (bf16 weights and gradients, fp32 master + Adam), the same activations: the
    fine-tune's states are scaled to the first rank's 2,899,456,000 parameters as training's are."""
    train = cli("memory", "gemma2-9b", "--mode", "train", "--gpu", "h100", "--pp", "4", "--json").json()
    tune = cli("memory", "gemma2-9b", "--mode", "finetune", "--method", "full", "--stack", "megatron", "--gpu", "h100",
               "--pp", "4", "--json").json()
    first = 10 * GEMMA_LAYER + GEMMA_EMBED
    assert tune["per_gpu"]["weights"] == train["per_gpu"]["weights"] == 2 * first
    assert tune["per_gpu"]["activations"] == train["per_gpu"]["activations"]
    assert sum(tune["per_gpu"].values()) == sum(train["per_gpu"].values())


def test_the_step_reduces_and_steps_the_parameters_of_the_rank_holding_the_most(cli) -> None:
    """train-step's DP all-reduce and optimizer step wait for the rank holding the most parameters: Llama 3 8B on
    PP 4, the last rank's 8 layers + final norm + head (2,270,236,672), not N/p = 2,007,565,312; the optimizer
    moves 28 B of each (bf16-adam: 2 read + 2 x 12 + 2 written)."""
    from calc.training.layout import Layout
    from calc.training.step import fullest_rank_share

    first = 8 * LLAMA_LAYER + LLAMA_EMBED + 4_096
    share = fullest_rank_share(load_model("llama3-8b"), Layout(pp=4), 1, 1)
    assert share == (first * 4 / 8_030_261_248, 1.0)
    r = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--pp", "4", "--explain")
    assert f"optimizer_s = {first:,} parameters x 28 B" in r.out
    assert f"x 4 B = {first:,} x 4" in r.out


def test_a_stack_without_the_schedule_refuses_it(cli) -> None:
    """LLM Foundry (Composer: FSDP, TP) runs no pipeline; DeepSpeed's PipelineEngine runs plain 1F1B (TrainSchedule),
    no interleaved chunks: train-step refuses the flag that asks for what the stack cannot run, and train-plan under
    DeepSpeed proposes no interleaved layout."""
    r = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--pp", "2", "--stack", "llm-foundry")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --pp") and "Composer" in r.err
    r = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--pp", "2", "--vpp", "2", "--stack", "deepspeed")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --vpp") and "TrainSchedule" in r.err
    plans = cli("train-plan", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--stack", "deepspeed", "--top", "50",
                "--json").json()["plans"]
    assert plans and all(p["vpp"] == 1 for p in plans)


def test_the_fsdp_stack_searches_what_torchtitan_runs(cli) -> None:
    """torchtitan shards with FSDP2 or replicates with DDP (no ZeRO-1/2 optimizer), and pipelines FSDP2 as its own
    FSDP+PP (--sharding fsdp-pp): train-plan --stack fsdp proposes ZeRO 0 or 3 only, ZeRO-3 with PP as fsdp-pp."""
    plans = cli("train-plan", "llama3-70b", "--gpu", "h100", "--num-gpus", "32", "--stack", "fsdp", "--top", "100",
                "--json").json()["plans"]
    assert plans and {p["zero"] for p in plans} <= {0, 3}
    assert all("FSDP+PP" in p["layout"] for p in plans if p["zero"] == 3 and p["pp"] > 1)
    pinned = cli("train-plan", "llama3-70b", "--gpu", "h100", "--num-gpus", "32", "--stack", "fsdp", "--pp", "4", "--zero",
                 "3", "--json").json()["plans"]
    assert pinned and all("FSDP+PP" in p["layout"] for p in pinned)


def test_a_qlora_rank_holds_its_own_bytes_not_a_share_of_the_average() -> None:
    """QA39 #2: under PP a QLoRA rank's weights are its own NF4 layers beside its own bf16 tensors, not the rank's share
    of the parameters times the model's average bytes per parameter (the bf16 embedding on rank 0 costs 2 B a
    parameter where the NF4 layers cost about 0.52). Gemma 2 9B on PP 4, rank 0 (10 layers + the embedding; it holds
    4 micro-batches in flight and is the fullest): 10 x (44,040,192 + 154,140,672) block-linear parameters in NF4 with
    double quantization, n/2 + n/64 + 4n/(64*256) B = 990,904,320 + 30,965,760 + 483,840; the embedding and 40
    norms of 3,584 in bf16, (917,504,000 + 143,360) x 2; q, v adapters of rank 8 on its 10 layers,
    10 x 8 x ((3584 + 4096) + (3584 + 2048)) = 1,064,960 parameters: 2 B each, their fp32 master 4 B, Adam 8 B,
    gradients 2 B."""
    from calc.memory.finetune import finetune_memory

    linears = 10 * (44_040_192 + 154_140_672)
    nf4 = linears // 2 + linears // 64 + 4 * linears // (64 * 256)
    assert nf4 == 990_904_320 + 30_965_760 + 483_840
    bf16 = (GEMMA_EMBED + 40 * 3_584) * 2
    adapters = 10 * 8 * ((3_584 + 4_096) + (3_584 + 2_048))
    assert adapters == 1_064_960
    # the gradient buffer persisting (Megatron's), so the gradients are a part of the peak of their own
    r = finetune_memory(load_model("gemma2-9b"), method="qlora", plan=Parallelism(pp=4), grad_buffer=True, suggest=False)
    assert r.per_gpu["weights"] == nf4 + bf16 + 2 * adapters  # 2,859,778,560: about 2.86 GB, not 1.93
    assert r.per_gpu["fp32 master"] == 4 * adapters
    assert r.per_gpu["optimizer states"] == 8 * adapters
    assert r.per_gpu["gradients"] == 2 * adapters


def test_a_lora_rank_without_the_embedding_holds_only_its_layers_adapters() -> None:
    """LoRA (bf16 frozen base) on Llama 3 8B at PP 4: every rank holds 8 layers, and the adapters of q, v at rank 16
    are per layer 16 x ((4096 + 4096) + (4096 + 1024)) = 212,992, 8 layers a rank, 1,703,936 on every rank, whichever
    the engine prices: the optimizer's 8 B each, where the rank's share of all parameters (2,270,236,672 of 8,030,261,248
    on the first) would price 1.13 x the average, 1,926,742 adapters' worth."""
    from calc.memory.finetune import finetune_memory

    r = finetune_memory(load_model("llama3-8b"), method="lora", lora_rank=16, plan=Parallelism(pp=4), suggest=False)
    assert r.per_gpu["optimizer states"] == 8 * 8 * 212_992


def test_the_fine_tuning_explain_adds_up_to_the_rank_it_prices() -> None:
    """QA40 #3: under PP the explain's weights and peak lines are the priced rank's own (rank 0 of Llama 3 8B at PP 4:
    8 layers + the embedding, (8 x 218,112,000 + 525,336,576) x 2 B + its adapters), and the peak line's terms add to
    the allocated peak it prints."""
    import re

    from calc.memory.finetune import finetune_memory

    r = finetune_memory(load_model("llama3-8b"), method="lora", seq=4096, plan=Parallelism(pp=4), grad_buffer=True,
                        suggest=False)
    adapters = 8 * 8 * ((4096 + 4096) + (4096 + 1024))  # q, v at rank 8 on rank 0's 8 layers
    assert r.per_gpu["weights"] == (8 * LLAMA_LAYER + LLAMA_EMBED) * 2 + adapters * 2
    weights_line = next(line for line in r.explain if line.startswith("weights ="))
    assert f"per GPU {r.per_gpu['weights']:,} B (pipeline rank 0" in weights_line
    peak_line = next(line for line in r.explain if line.startswith("peak ="))
    numbers = [int(x.replace(",", "")) for x in re.findall(r"\d[\d,]*", peak_line.split("(calc.")[0])]
    persistent, gradients, fsdp, forward, backward, transients = numbers
    assert persistent + gradients + fsdp + max(forward, backward) + transients == r.allocated_peak_bytes
