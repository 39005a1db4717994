"""One activation-memory model for training: train-step, train-plan and memory --mode train agree; the per-tensor
figure matches Korthikanti's table 2 for GPT-3; Meta's Llama 3.1 405B layout fits; interleaving's in-flight count."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from calc.memory.training import layer_activations, training_memory
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.specs import Parallelism
from calc.training.cost import Efficiencies, ModelCost
from calc.training.layout import Layout
from calc.training.step import in_flight_microbatches, memory_per_gpu, train_step

GIB = 2**30


def _gpt3_175b():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from validate_training import gpt_model

    return gpt_model({"id": "gpt3", "hidden": 12288, "heads": 96, "layers": 96, "vocab": 51200, "seq": 2048})


@pytest.mark.parametrize(("tp", "sp", "recompute", "korthikanti"), [
    # Korthikanti et al. 2022 table 2, s = 2048, b = 1, h = 12288, a = 96 (5as/h = 80), fp16 with dropout:
    (1, False, "none", 2048 * 12288 * (34 + 80)),                  # sbh(34 + 5as/h) = 2,868,903,936
    (8, False, "none", 2048 * 12288 * (10 + 24 / 8 + 80 / 8)),     # sbh(10 + 24/t + 5as/(ht)) = 578,813,952
    (8, True, "none", 2048 * 12288 / 8 * (34 + 80)),               # sbh/t (34 + 5as/h) = 358,612,992
    (8, True, "full", 2 * 2048 * 12288 / 8),                       # 2sbh/t = 6,291,456
])
def test_per_tensor_gpt3_layer_is_korthikanti_table_2(tp: int, sp: bool, recompute: str, korthikanti: float) -> None:
    # the per-tensor buffers of a GPT-3 layer (eager attention, dropout 0.1): LayerNorm inputs 2 x 2sbh, QKV input 2sbh,
    # Q K V 6sbh, scores 2as^2b + attention dropout mask as^2b + its output 2as^2b, projection input 2sbh,
    # MLP input 2sbh, GeLU input 8sbh and output 8sbh, two residual dropout masks 2sbh: table 2 exactly, plus
    # the 4 B per token each LayerNorm keeps for its statistics (2 x 4 x 2048 tokens, /t with SP; none when the layer
    # is recomputed from its input)
    per = layer_activations(_gpt3_175b(), 1, 2048, tp, sp, recompute, False, dropout=0.1)  # type: ignore[arg-type]
    stats = 0 if recompute == "full" else 2 * 4 * 2048 // (tp if sp else 1)
    assert per.saved == korthikanti + stats


# Llama 3.1 405B (126 layers, H 16384, 128 heads, 8 KV heads, d 128, I 53248, V 128256) at TP8 SP, s 8192, b 1,
# FlashAttention, no dropout; bytes of one layer, one micro-batch, one GPU:
#   2 norm inputs 2 x 8192 x (16384 x 2 + 4) / 8       =  67,117,056
#   q/k/v input, o_proj input, gate/up input 3 x 8192 x 16384 x 2 / 8 = 100,663,296
#   Q, K, V 8192 x (128 + 2 x 8) x 128 x 2 / 8          =  37,748,736
#   log-sum-exp 8192 x 128 x 4 / 8                      =     524,288
#   gate, up outputs 8192 x 2 x 53248 x 2 / 8           = 218,103,808
#   down input 8192 x 53248 x 2 / 8                     = 109,051,904
#   layer                                               = 533,209,088
LAYER_405B = 533_209_088
PARAMS_405B = 405_853_388_800


def test_meta_405b_layout_fits_on_h100() -> None:
    # Llama 3 paper (arXiv 2407.21783) sec. 3.3.2, table 4: 16,384 H100 80GB, TP 8, CP 1, PP 16, DP 128, seq 8,192,
    # batch 16 per DP (global 2,048 = 16M tokens), 400 TFLOPs/GPU (41% BF16 MFU); optimizer states sharded (ZeRO 1).
    cost = ModelCost(load_model("llama3.1-405b"), load_gpu("h100"), load_system("dgx-h100"), 8192)
    layout = Layout(tp=8, pp=16, dp=128, sp=True, zero=1)
    r = train_step(cost, layout, global_batch=2048, num_gpus=16384)
    # Megatron-Core's uneven split of 126 layers on PP 16: [7, 8 x 14, 7]. 1F1B keeps p - r micro-batches in flight on
    # rank r (m = 2048/128 = 16 = p): rank 0 holds 16 x 7 = 112 layer-micro-batches, rank 1 15 x 8 = 120, the most
    # (rank 2: 14 x 8 = 112); + the backward workspace 2 x the largest tensor (gate/up outputs 218,103,808)
    # (the last stage: 7 layers + head inputs 8192 x (16384 x 2 + 4) + 8192 x 16384 x 2 + fp32 loss
    #  12 x 8192 x 128256 / 8 = 5,845,377,024 B, smaller)
    activations = 120 * LAYER_405B + 2 * 218_103_808
    assert r.memory_per_gpu["activations"] == activations == 64_421_298_176
    # states: rank 1's own, 8 layers of 3,187,703,808 parameters (the embedding is rank 0's): bf16 weights and gradients
    # 2 B / t = 8; 12 B of optimizer state / 8 / DP 128
    rank1 = 8 * 3_187_703_808
    assert r.memory_per_gpu["weights"] == r.memory_per_gpu["gradients"] == rank1 * 2 // 8 == 6_375_407_616
    assert r.memory_per_gpu["optimizer"] == rank1 * 12 // 8 // 128 == 298_847_232
    # 2 x 6,375,407,616 + 298,847,232 + 64,421,298,176 + 0.5 GiB CUDA context (no fragmentation: expandable segments)
    # = 78,007,831,552 B = 72.65 GiB < 79.20 GiB
    assert r.memory_per_gpu_bytes == 78_007_831_552
    assert r.fits and r.step_time_s is not None
    # Korthikanti's GPT formula (34 sbh/t per layer) on rank 1's 120 layer-micro-batches (the embedding's dropout mask
    # is rank 0's): 120 x 34 x 8192 x 16384/8 = 68,451,041,280 B; 76.40 GiB in all
    textbook = ModelCost(cost.m, cost.gpu, cost.system, 8192, eff=Efficiencies(activations="textbook"))
    old = train_step(textbook, layout, global_batch=2048, num_gpus=16384)
    assert old.memory_per_gpu["activations"] == 120 * 34 * 8192 * 16384 // 8
    assert old.fits and old.memory_per_gpu_bytes / GIB == pytest.approx(76.40, abs=0.01)


def test_train_step_and_memory_train_agree() -> None:
    m = load_model("llama3-70b")
    for pp, recompute in ((1, "none"), (4, "full"), (2, "selective")):
        cost = ModelCost(m, load_gpu("h100"), load_system("dgx-h100"), 4096)
        layout = Layout(tp=8, pp=pp, dp=2, sp=True, zero=1, recompute=recompute)  # type: ignore[arg-type]
        micro = 8  # global batch 16 / DP 2: at least p micro-batches, so p are in flight
        step = memory_per_gpu(cost, layout, micro)
        mem = training_memory(m, plan=Parallelism(tp=8, pp=pp, dp=2, sequence_parallel=True), zero=1, micro_batch=1,
                              seq=4096, recompute=recompute, fused=True, grad_accum=micro,  # type: ignore[arg-type]
                              fragmentation=0.0, in_flight=min(pp, micro))
        assert step == mem.per_gpu


def test_selective_recompute_with_flash_keeps_what_none_keeps() -> None:
    # Megatron's selective recomputation re-runs the attention core; FlashAttention never stores the s x s scores,
    # so the saved tensors are the same as without recomputation (and the step model adds no time for it)
    m = load_model("llama3-8b")
    none = layer_activations(m, 1, 4096, 2, True, "none", True)
    selective = layer_activations(m, 1, 4096, 2, True, "selective", True)
    assert selective == none
    # with eager attention it drops the scores: 32 heads x 4096 x 4096 x 2 B / TP 2 = 536,870,912 B per layer
    eager = layer_activations(m, 1, 4096, 2, True, "none", False).saved
    eager_sel = layer_activations(m, 1, 4096, 2, True, "selective", False).saved
    lse = 4096 * 32 * 4 // 2  # the recomputed core keeps FlashAttention-style log-sum-exp instead: 262,144 B
    assert eager - eager_sel == 32 * 4096 * 4096 * 2 // 2 - lse


def test_interleaved_in_flight_count() -> None:
    # Megatron-LM interleaved schedule, rank 0: 2(p-1) + (v-1)p warm-up chunk forwards (capped at m v) + 1, each 1/v
    # of the stage. p = 4, v = 2, m = 8: (6 + 4 + 1)/2 = 5.5 = p (1 + (p-1)/(p v)) = 4 x 1.375
    assert in_flight_microbatches(Layout(pp=4, vpp=2), 8) == pytest.approx(5.5)
    # p = 16, v = 7, m = 32: (30 + 96 + 1)/7 = 18.142857
    assert in_flight_microbatches(Layout(pp=16, vpp=7), 32) == pytest.approx(127 / 7)
    # m = p = 16 (Meta's 405B layout): all m v = 32 chunk forwards run before the first backward -> 16, as in 1F1B
    assert in_flight_microbatches(Layout(pp=16, vpp=2), 16) == 16 == in_flight_microbatches(Layout(pp=16), 16)


def test_microbatch_group_in_flight_count() -> None:
    # N micro-batches per model chunk (Megatron-Core microbatch_group_size_per_vp_stage, torch
    # ScheduleInterleaved1F1B microbatches_per_round, Llama 3's tunable N): rank 0 runs 2(p-1) + (v-1)N warm-up
    # chunk forwards (capped at m v) + 1 in the steady state, each 1/v of the stage.
    # Llama 3 405B, 8K GPUs: p = 16, v = 8, m = 32. N = p (depth-first, the default): (30 + 7 x 16 + 1)/8 = 143/8
    default = Layout(pp=16, vpp=8)
    assert in_flight_microbatches(default, 32) == pytest.approx(17.875)
    assert in_flight_microbatches(default.with_(pp_microbatch_group=16), 32) == pytest.approx(17.875)
    # N = m = 32 (breadth-first): (30 + 7 x 32 + 1)/8 = 255/8, one short of all 256 chunk forwards
    assert in_flight_microbatches(default.with_(pp_microbatch_group=32), 32) == pytest.approx(31.875)
    # 16K GPUs, m = 16 = N: 30 + 112 = 142 > m v = 128 -> every forward first, 128/8 = 16
    assert in_flight_microbatches(default, 16) == 16
    # the paper's Figure 6: p = 4, v = 2, M = 10, N = 5: (6 + 5 + 1)/2 = 6 stage micro-batches on rank 0
    assert in_flight_microbatches(Layout(pp=4, vpp=2, pp_microbatch_group=5), 10) == 6


def test_microbatch_group_memory_and_refusals() -> None:
    from calc.errors import LLMCalcError
    from calc.training.layout import check_training_layout

    # Llama 3.1 405B (H 16384, I 53248, 128 heads, 8 KV heads of 128) at TP 8 + SP, s = 8192, b = 1, flash, no
    # recompute: one layer saves two norm inputs 2 x 8192 x (16384 x 2 + 4)/8, the q/k/v and gate/up inputs
    # 2 x 8192 x 16384 x 2/8, Q K V 8192 x (128 + 16) x 128 x 2/8, O 8192 x 16384 x 2/8, LSE 8192 x 128 x 4/8,
    # gate + up 8192 x 2 x 53248 x 2/8, act(gate) x up 8192 x 53248 x 2/8
    layer = (2 * 8192 * (16384 * 2 + 4) // 8 + 2 * 8192 * 16384 * 2 // 8 + 8192 * 144 * 128 * 2 // 8
             + 8192 * 16384 * 2 // 8 + 8192 * 128 * 4 // 8 + 8192 * 2 * 53248 * 2 // 8 + 8192 * 53248 * 2 // 8)
    assert layer == 533_209_088
    m = load_model("llama3.1-405b")
    cost = ModelCost(m, load_gpu("h100"), load_system("dgx-h100"), 8192)
    lay = Layout(tp=8, pp=16, dp=64, vpp=8, sp=True, zero=1, pp_embedding=True, pp_loss=True)
    dfs = memory_per_gpu(cost, lay, 32)["activations"]
    bfs = memory_per_gpu(cost, lay.with_(pp_microbatch_group=32), 32)["activations"]
    # one layer a chunk (126 + 2 slots / 128 chunks; the first rank's chunk 0 is the embedding alone, the last rank's
    # chunk 7 the loss alone). Rank 1, all of whose chunks hold a layer, is the fullest: 2 x 14 + 7 N warm-up
    # forwards + 1 in the steady state, 141 at N = 16 (depth-first), 253 at N = 32: 112 more layer-micro-batches
    # (rank 0 holds 112 and 222 of them, its 30 / 32 embedding-only forwards adding none; calc.memory.pipeline)
    assert bfs - dfs == pytest.approx(112 * layer, abs=8)
    for bad in (lay.with_(pp_microbatch_group=8),  # below PP: the first rank would wait for its chunk-0 outputs
                lay.with_(pp_microbatch_group=24),  # 32 micro-batches are not whole groups of 24
                lay.with_(vpp=1, pp_microbatch_group=16)):  # no interleaving
        with pytest.raises(LLMCalcError) as err:
            check_training_layout(m, bad, 8192, 2048, 8192)
        assert err.value.field == "--pp-microbatch-group"
    assert check_training_layout(m, lay.with_(pp_microbatch_group=32), 8192, 2048, 8192) == 32


def test_plan_search_caches_layer_activations() -> None:
    from calc.training.plan import search_plans

    cost = ModelCost(load_model("llama3-70b"), load_gpu("h100"), load_system("dgx-h100"), 8192)
    r = search_plans(cost, 64, 64)
    assert r.plans
    # one entry per (b, s/c, t, SP, recompute, attention, dropout), far fewer than the layouts checked
    assert 0 < len(cost.activation_cache) < r.layouts_considered


def test_memory_train_and_finetune_full_are_one_engine(cli) -> None:
    """`memory --mode train` and `--mode finetune --method full` price the same job alike (issue 21 item 2). Worked
    by hand for llama3-8b, 8 GPUs, ZeRO-3, b=1, s=4096, bf16 + fp32 Adam (16 B/param): N = 8,030,261,248;
    weights 2N/8 = 2,007,565,312; optimizer (master + m + v) 12N/8 = 12,045,391,872; FSDP in flight: the
    root unit (embedding + head 2 x 128,256 x 4096 + norm 4096 = 1,050,677,248 params) in bf16 + fp32 grads
    = 6 x 1,050,677,248 = 6,304,063,488 (two blocks: 2 x 218,112,000 x 2 + 4 x 218,112,000 = 1,744,896,000, smaller).
    `memory --mode train` prices a Megatron-class stack (fused norms/SwiGLU, expandable segments: 0 fragmentation), as
    train-step does, with Megatron-Core's vocab-parallel cross-entropy; fine-tuning defaults to eager PEFT/HF (5%) and
    torch's fp32 cross-entropy: the same job is finetune --compile --fragmentation 0 --loss megatron. The FSDP units'
    gradients are fp32 as PyTorch FSDP reduces them: --stack llm-foundry (the default Megatron stack, as train-step,
    reduces Megatron-FSDP units in bf16)."""
    job = ("llama3-8b", "--zero", "3", "--num-gpus", "8", "--gpu", "h100", "--seq", "4096", "--json")
    train = cli("memory", "--mode", "train", *job, "--stack", "llm-foundry").json()
    full = cli("memory", "--mode", "finetune", "--method", "full", *job, "--compile", "--fragmentation", "0",
               "--loss", "megatron").json()
    eager = cli("memory", "--mode", "finetune", "--method", "full", *job).json()
    assert train["per_gpu_bytes"] == full["per_gpu_bytes"]
    assert train["per_gpu"]["weights"] == full["per_gpu"]["weights"] == 2_007_565_312
    assert train["per_gpu"]["optimizer"] == 12_045_391_872 == full["per_gpu"]["fp32 master"] + full["per_gpu"]["optimizer states"]
    assert train["per_gpu"]["FSDP unsharded layers"] == full["per_gpu"]["FSDP unsharded layers"] == 6_304_063_488
    assert train["per_gpu"]["CUDA context"] == full["per_gpu"]["CUDA context"] == 2**29  # 0.5 GiB, counted once
    assert train["per_gpu"]["allocator fragmentation"] == 0  # expandable segments
    # eager fine-tuning: the allocator's 5% of its allocated peak, counted once
    allocated = eager["per_gpu_bytes"] - eager["per_gpu"]["allocator fragmentation"] - 2**29
    assert eager["per_gpu"]["allocator fragmentation"] == -(-allocated * 5 // 100)


def test_selective_means_megatron_in_every_mode(cli) -> None:
    """--recompute selective (Megatron: the attention core) saves nothing under flash attention in both modes;
    sac (torchtitan op-level SAC) saves memory in both."""
    job = ("llama3-8b", "--seq", "4096", "--json")
    for mode in (("--mode", "train"), ("--mode", "finetune", "--method", "full")):
        none = cli("memory", *mode, *job).json()["per_gpu_bytes"]
        selective = cli("memory", *mode, *job, "--recompute", "selective").json()["per_gpu_bytes"]
        sac = cli("memory", *mode, *job, "--recompute", "sac").json()["per_gpu_bytes"]
        assert selective == none and sac < none


def test_loss_buffers_per_stack() -> None:
    """The last stage's cross-entropy buffers by stack (calc.memory.activations.lm_head_buffers), llama3-8b
    (V = 128,256), 4096 tokens, TP 8: 4096 x 128,256 = 525,336,576 logits, 65,667,072 per TP rank.
    Megatron-Core vocab-parallel CE: fp32 softmax 4 B + bf16 gradient cast 2 B = 6 B -> 394,002,432 B;
    flash-attn fused CE: bf16 logits 2 B + bf16 dlogits 2 B = 4 B -> 262,668,288 B; torch CE on fp32 logits, vocab
    sharded (TP 8, loss_parallel's decomposed backward: saved log-softmax 4 + zeros 4 + exp 4 + sum 4 = 16 B)
    -> 1,050,673,152 B; on one device (TP 1, fused aten kernels: 4 + 4 + 4 = 12 B) 12 x 525,336,576 = 6,304,038,912 B."""
    from calc.memory.activations import lm_head_buffers

    m = load_model("llama3-8b")
    for loss, expected in (("megatron", 394_002_432), ("flash-ce", 262_668_288), ("fp32", 1_050_673_152)):
        assert lm_head_buffers(m, 1, 4096, loss, 8, 2, True, 8)[-1].bytes == expected
    assert lm_head_buffers(m, 1, 4096, "fp32", 8, 2, True, 1)[-1].bytes == 6_304_038_912
    # compiled torch CE: bf16 logits saved + bf16 dlogits = 4 B per logit, 4,096 x 128,256 x 4 = 2,101,346,304 on one
    # device; under TP priced as loss_parallel's decomposition, 16 B per logit of the shard: 4,096 x 128,256 x 16 / 8
    assert lm_head_buffers(m, 1, 4096, "compiled", 8, 2, True, 1)[-1].bytes == 2_101_346_304
    assert lm_head_buffers(m, 1, 4096, "compiled", 8, 2, True, 8)[-1].bytes == 1_050_673_152


def test_compiled_loss_is_eager_under_tp_in_the_buffer_and_in_the_allocator_alike() -> None:
    """One rule (calc.memory.activations.priced_loss) for both places a loss touches the peak. On one device a compiled
    loss holds 4 B per logit against eager fp32's 12 (lm_head_buffers) and leaves no freed fp32 logits block (2 B per
    logit of bf16-sized hole, calc.memory.training) for the caching allocator: 4,096 x 128,256 x (12 - 4 + 2) B =
    5,253,365,760 B less; under TP 2 both are priced as loss_parallel's eager decomposition, the same peak."""
    m = load_model("llama3-8b")

    def peak(tp: int, loss: str) -> int:
        return training_memory(m, plan=Parallelism(tp=tp, dp=8 // tp), zero=3, micro_batch=1, seq=4096, loss=loss,
                               caching_allocator=True, fused=True).per_gpu_bytes

    assert peak(1, "fp32") - peak(1, "compiled") == 4096 * 128_256 * (12 - 4 + 2) == 5_253_365_760
    assert peak(2, "compiled") == peak(2, "fp32")


def test_unknown_training_loss_is_refused() -> None:
    from calc.errors import LLMCalcError

    with pytest.raises(LLMCalcError, match="--loss"):
        training_memory(load_model("llama3-8b"), loss="bfloat16-ce")


def test_corpus_stack_loss() -> None:
    """llm-foundry runs flash-attn's fused CE by default (ComposerMPTCausalLM loss_fn 'fused_crossentropy'),
    torchtitan torch CE on fp32 logits; a row's own loss knob wins; other stacks take the engine's default."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from types import SimpleNamespace

    from corpus_knobs import training_loss

    def row(stack: str) -> SimpleNamespace:
        return SimpleNamespace(stack=SimpleNamespace(name=stack))

    def dated(date: str) -> SimpleNamespace:
        return SimpleNamespace(stack=SimpleNamespace(name="torchtitan"), source=SimpleNamespace(date=date))

    # torchtitan compiles its loss with the model from 2025-04-02 (bbb1b616e), not between 2024-12-18 (e8977b007) and
    # then; a month alone reads as its last day (the 2024-12 tables ran at 9dec370, 2024-12-26)
    assert training_loss(dated("2025-06-16"), {"compile": True}) == "compiled"
    assert training_loss(dated("2025-06"), {"compile": True}) == "compiled"
    assert training_loss(dated("2024-12"), {"compile": True}) == "fp32"
    assert training_loss(dated("2025-03-12"), {"compile": True}) == "fp32"
    assert training_loss(dated("2024-11-05"), {"compile": True}) == "compiled"
    assert training_loss(dated("2025-06-16"), {}) == "fp32"
    assert training_loss(row("llm-foundry"), {}) == "flash-ce"
    assert training_loss(row("torchtitan"), {}) == "fp32"
    assert training_loss(row("llm-foundry"), {"loss": "fp32"}) == "fp32"
    assert training_loss(row("megatron-bridge"), {}) is None
