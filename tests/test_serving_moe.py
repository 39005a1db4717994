"""MoE serving: expert parallelism with data-parallel attention (EP = DP x TP), the all-to-all, expert imbalance,
grouped GEMMs and MLA absorbed decode (calc.serving.moe). Numbers worked out by hand in the comments."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from calc.hardware.efficiency import GEMM_LAUNCH_S
from calc.model.flops import mla_decode_dims
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS, ServingAssumptions
from calc.serving.engine_memory import engine_memory
from calc.serving.launch import launch_command
from calc.serving.moe import (
    a2a_s,
    allgather_reducescatter_s,
    attention_ranks,
    moe_comm_s,
    naive_broadcast_s,
    nccl_alltoall_s,
)
from calc.serving.step import step_time, weight_gemm_time
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.specs.serving import EngineSettings


def test_attention_ranks() -> None:
    # vLLM --tensor-parallel-size 2 --data-parallel-size 4 --enable-expert-parallel: EP 8 = 4 x 2
    assert attention_ranks(2, 8) == 4
    assert attention_ranks(1, 8) == 8
    assert attention_ranks(4, 1) == 1


def test_all_to_all_by_hand() -> None:
    # Mixtral (k = 2, H = 4096) on a DGX H100 (NVLink 450 GB/s per direction), EP 8 inside the node, 64 tokens, TP 1:
    # sent = 64 x 2 x 4096 x 7/8 x 1.3 (imbalance) = 596,377.6 elements; x (1 B dispatch + 2 B combine) = 1,789,132.8 B
    # over 450e9 x 153/160 B/s = 4.1578 us, + 2 x 40 us low-latency floors = 84.158 us
    m, system = load_model("mixtral-8x7b"), load_system("dgx-h100")
    assert a2a_s(m, system, DEFAULT_ASSUMPTIONS, 64, 1, 8) == pytest.approx(84.158e-6, rel=1e-4)
    # the same at TP 2: each TP rank sends half the group's tokens: 2.0789 us + 80 us
    assert a2a_s(m, system, DEFAULT_ASSUMPTIONS, 64, 2, 8) == pytest.approx(82.079e-6, rel=1e-4)
    # EP 16 crosses nodes: the NIC (50 GB/s x 43/50 = 43 GB/s): 64 x 2 x 4096 x 15/16 x 1.3 x 3 B = 1,916,928 B
    # / 43e9 = 44.580 us + 80 us
    assert a2a_s(m, system, DEFAULT_ASSUMPTIONS, 64, 1, 16) == pytest.approx(124.580e-6, rel=1e-4)
    # 1024 tokens per rank (a prefill chunk): normal kernels, floor (EP - 1) x 3 us per call = 21 us, x 2
    # bytes 1024 x 2 x 4096 x 7/8 x 1.3 x 3 = 28,626,124.8 B / 430.3125e9 = 66.524 us; + 42 us
    assert a2a_s(m, system, DEFAULT_ASSUMPTIONS, 1024, 1, 8) == pytest.approx(108.524e-6, rel=1e-4)
    assert a2a_s(load_model("llama3-8b"), system, DEFAULT_ASSUMPTIONS, 64, 1, 8) == 0.0  # dense: no experts


def test_allgather_reducescatter_by_hand() -> None:
    """TensorRT-LLM's attention-DP MoE exchange (fused_moe_cutlass.py: allgather of x, top-k ids and weights, then
    reducescatter of the output), NCCL ring on a DGX H100 (450 GB/s per direction x 0.8 collective efficiency,
    3 us per ring step). Qwen3-235B-A22B (H 4096, top-8), EP 8, 64 tokens per rank, TP 1, per-tensor fp8 x (1 B):
    gathered 8 x 64 x (4096 x 1 + 8 x 8) = 2,129,920 B: 7 x 3 us + 7/8 x 2,129,920 / 360e9 = 26.177 us;
    reduce-scatter of 8 x 64 x 4096 x 2 = 4,194,304 B: 21 us + 7/8 x 4,194,304 / 360e9 = 31.194 us; 57.371 us."""
    m, system = load_model("qwen3-235b-a22b"), load_system("dgx-h100")
    assert allgather_reducescatter_s(m, system, 64, 1, 8, 1) == pytest.approx(57.371e-6, rel=1e-4)
    # bf16 x (block-scaled fp8 or 16-bit experts): 8 x 64 x (8192 + 64) = 4,227,072 B gathered: 21 + 10.274 us
    assert allgather_reducescatter_s(m, system, 64, 1, 8, 2) == pytest.approx((21 + 10.2741 + 31.1945) * 1e-6, rel=1e-4)
    assert allgather_reducescatter_s(m, system, 64, 1, 1, 1) == 0.0  # no EP: nothing exchanged
    assert allgather_reducescatter_s(load_model("llama3-8b"), system, 64, 1, 8, 1) == 0.0
    # moe_comm_s picks by ServingAssumptions.dispatcher
    gather = DEFAULT_ASSUMPTIONS.model_copy(update={"dispatcher": "allgather"})
    deep = DEFAULT_ASSUMPTIONS.model_copy(update={"dispatcher": "deepep"})
    assert moe_comm_s(m, system, gather, 64, 1, 8, 1) == allgather_reducescatter_s(m, system, 64, 1, 8, 1)
    assert moe_comm_s(m, system, deep, 64, 1, 8, 1) == a2a_s(m, system, deep, 64, 1, 8)


def test_nccl_alltoall_by_hand() -> None:
    """--dispatcher alltoall in serving: a plain NCCL all-to-all of every (token, expert) copy, bf16 both ways.
    Qwen3-235B-A22B (H 4096, top-8), EP 8 on a DGX H100 (450 GB/s x 0.8, 3 us), 64 tokens per rank, TP 1:
    S = 64 x 8 x 4096 x 2 B x 1.3 = 5,452,595.2 B; one call 3 us + 7/8 x S / 360e9 = 3 + 13.2528 us; dispatch +
    combine 32.5056 us. DeepEP (a2a_s) on the same: 7/8 x 64 x 8 x 4096 x 1.3 x 3 B = 7,156,531.2 B / 430.3125e9
    = 16.631 us + 2 x 40 us low-latency floors = 96.631 us."""
    m, system = load_model("qwen3-235b-a22b"), load_system("dgx-h100")
    a = ServingAssumptions(dispatcher="alltoall")
    assert nccl_alltoall_s(m, system, a, 64, 1, 8) == pytest.approx(32.5056e-6, rel=1e-4)
    assert moe_comm_s(m, system, a, 64, 1, 8) == nccl_alltoall_s(m, system, a, 64, 1, 8)
    assert a2a_s(m, system, a, 64, 1, 8) == pytest.approx(96.631e-6, rel=1e-4)
    # TP 2 inside each attention group: each TP rank sends half the group's tokens: 3 + 6.6264 us per call
    assert nccl_alltoall_s(m, system, a, 64, 2, 8) == pytest.approx(2 * 9.6264e-6, rel=1e-4)
    assert nccl_alltoall_s(m, system, a, 64, 1, 1) == 0.0


def test_naive_broadcast_by_hand() -> None:
    """--dispatcher naive (vLLM's naive all2all: a broadcast per DP rank of hidden states + router logits, an
    all-reduce of the gathered buffer). Qwen3-235B-A22B (H 4096, E 128), EP 8 on a DGX H100, 64 tokens per rank, bf16:
    rows 512; gathered 512 x (4096 x 2 + 128 x 2) = 4,325,376 B: 7 x 3 us + 7/8 x 4,325,376 / 360e9 = 31.5131 us;
    all-reduce of 512 x 4096 x 2 = 4,194,304 B: ring 42 + 2 x 7/8 x 4,194,304 / 360e9 = 62.389 us, tree
    6 x 3 + 2 x 4,194,304 / 360e9 = 41.3017 us: the tree; 72.8148 us, against allgather_reducescatter_s's
    31.5131 - 10.5131 + 10.2741 (no logits, k x 8 B routing) + 31.1945 = 62.4686 us."""
    m, system = load_model("qwen3-235b-a22b"), load_system("dgx-h100")
    assert naive_broadcast_s(m, system, 64, 1, 8, 2) == pytest.approx(72.8148e-6, rel=1e-4)
    assert allgather_reducescatter_s(m, system, 64, 1, 8, 2) == pytest.approx(62.4686e-6, rel=1e-4)
    assert moe_comm_s(m, system, ServingAssumptions(dispatcher="naive"), 64, 1, 8, 2) == naive_broadcast_s(m, system, 64, 1, 8, 2)
    assert naive_broadcast_s(load_model("llama3-8b"), system, 64, 1, 8) == 0.0


def test_allgather_volume_against_all_to_all_is_ep_over_k() -> None:
    """At large token counts the latencies vanish and the ratio of the bytes is the source's EP / k (with the
    collectives' own efficiencies and the a2a's imbalance): Llama 4 Maverick (top-1, H 5120), EP 8, 4,096 tokens,
    bf16 x. AG + RS per rank 7/8 x 8 x 4096 x (5120 x 2 + 8 + 5120 x 2) B = 7/8 x 671,350,784 B at 360 GB/s =
    1.6317 ms (+ 42 us); the all-to-all 4096 x 1 x 5120 x 7/8 x 1.3 x 3 B = 71,565,312 B at 430.3125 GB/s = 166.31 us
    (+ 42 us)."""
    m, system = load_model("llama4-maverick"), load_system("dgx-h100")
    assert allgather_reducescatter_s(m, system, 4096, 1, 8, 2) == pytest.approx(1.6317e-3 + 42e-6, rel=1e-3)
    assert a2a_s(m, system, DEFAULT_ASSUMPTIONS, 4096, 1, 8) == pytest.approx(166.31e-6 + 42e-6, rel=1e-3)


def test_ampere_grouped_gemm_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    """16-bit grouped GEMMs on Ampere at >= 128 tokens per expert run at ampere_grouped_gemm_rate (0.8: aiconfigurator's
    A100 TensorRT-LLM 1.0 table, calc.serving.assumptions) of the dense rate; Hopper and fp8 keep theirs; below one
    tile the decode rate holds. Mixtral 8x7B, 4,096 tokens at TP 2 on an A100 (1,024 tokens per expert): its expert
    GEMMs take 1 / 0.8 = 1.25 x what they take at rate 1 (the launch, once per GEMM, is not rated)."""
    import calc.serving.step as step
    from calc.serving.moe import expert_gemm_rate

    assert expert_gemm_rate(1024, DEFAULT_ASSUMPTIONS, "bf16", "Ampere") == 0.8
    assert expert_gemm_rate(1024, DEFAULT_ASSUMPTIONS, "bf16", "Hopper") == 1.0
    assert expert_gemm_rate(1024, DEFAULT_ASSUMPTIONS, "fp8", "Ampere") == DEFAULT_ASSUMPTIONS.fp8_grouped_gemm_rate
    assert expert_gemm_rate(64, DEFAULT_ASSUMPTIONS, "bf16", "Ampere") == DEFAULT_ASSUMPTIONS.grouped_gemm_efficiency
    m, gpu = load_model("mixtral-8x7b"), load_gpu("a100-80g")
    experts = [g for g in step.model_gemms(m)[0] if g.expert]
    monkeypatch.setattr(step, "model_gemms", lambda _m: (experts, 0))
    slow = weight_gemm_time(m, gpu, 4096, 0, 2, "bf16", None, 1, DEFAULT_ASSUMPTIONS)[0]
    dense = weight_gemm_time(m, gpu, 4096, 0, 2, "bf16", None, 1, ServingAssumptions(ampere_grouped_gemm_rate=1.0))[0]
    launch = sum(g.layers for g in experts) * GEMM_LAUNCH_S
    assert slow - launch == pytest.approx(1.25 * (dense - launch))


def test_engine_dispatcher_default_by_release() -> None:
    """Each engine's default expert-parallel exchange from its source (calc.serving.assumptions.engine_dispatcher):
    vLLM VLLM_ALL2ALL_BACKEND "naive" at v0.9.0.1 / v0.9.2 (vllm/envs.py), "allgather_reducescatter" from 0.11;
    SGLang --moe-a2a-backend "none" (DP-attention gather); TensorRT-LLM NotEnabled on Hopper (all-gather)."""
    from calc.serving.assumptions import engine_dispatcher

    assert engine_dispatcher("vllm", (0, 9, 2)) == "naive"
    assert engine_dispatcher("vllm", (0, 10, 2)) == "naive"
    assert engine_dispatcher("vllm", (0, 11, 0)) == "allgather"
    assert engine_dispatcher("vllm") == "allgather"  # the current release
    assert engine_dispatcher("sglang", (0, 4, 6)) == engine_dispatcher("sglang") == "allgather"
    assert engine_dispatcher("trtllm", (1, 0)) == "allgather"
    assert ServingAssumptions().dispatcher == "allgather"
    assert "all-gather + reduce-scatter" in ServingAssumptions(dispatcher="allgather").lines()[-1]
    assert "DeepEP" in ServingAssumptions(dispatcher="deepep").lines()[-1]
    assert "(--dispatcher naive)" in ServingAssumptions(dispatcher="naive").lines()[-1]


def test_mla_absorbed_decode_dims() -> None:
    # DeepSeek-V3: r_kv = 512, d_rope = 64 -> scores over 576 latent dims, values the 512-dim latent;
    # unabsorbed (prefill) heads are 128 + 64 = 192 / 128
    m = load_model("deepseek-v3")
    assert mla_decode_dims(m) == (576, 512)
    assert mla_decode_dims(load_model("llama3-8b")) is None
    # one decode sequence at 1,000 keys on one GPU: attention FLOPs = 2 x 128 heads x (576 + 512) x 61 layers x 1000
    gpu = load_gpu("h200")
    st = step_time(m, gpu, DEFAULT_ASSUMPTIONS, tp=8, dtype="fp8", decode_seqs=1, decode_context=1000)
    gemm = weight_gemm_time(m, gpu, 1, 1, 8, "fp8")[1]
    assert st.flops - gemm == pytest.approx(2 * 128 * (576 + 512) * 61 * 1000 / 8, rel=1e-9)


def test_grouped_gemm_efficiency_scales_only_the_experts() -> None:
    # At one decode token every routed expert GEMM is a grouped GEMM (< 128 tokens per expert): with efficiency e its
    # time is x/e. t(e) = rest + x/e, so t(1/4) - t(1) = 3x and t(1/2) - t(1) = x: the difference ratio is exactly 3.
    m, gpu = load_model("mixtral-8x7b"), load_gpu("h100")

    def t(e: float) -> float:
        return weight_gemm_time(m, gpu, 1, 1, 1, "bf16", a=ServingAssumptions(grouped_gemm_efficiency=e))[0]

    assert (t(0.25) - t(1.0)) == pytest.approx(3 * (t(0.5) - t(1.0)), rel=1e-9)
    assert t(0.5) > t(1.0)
    dense = load_model("llama3-8b")  # no experts: the efficiency changes nothing
    assert weight_gemm_time(dense, gpu, 1, 1, 1, "bf16", a=ServingAssumptions(grouped_gemm_efficiency=0.5)) == \
        weight_gemm_time(dense, gpu, 1, 1, 1, "bf16")


def test_expert_imbalance_gates_a_compute_bound_step() -> None:
    # 8,192 tokens per attention rank at EP 8 (DP 8): every expert touched, 8 x 8192 x 2 / 8 = 16,384 rows per expert,
    # compute-bound; the busiest rank's expert GEMMs take imbalance x as long, the rest is unchanged:
    # t(2) - t(1) = x (expert time at 1) and t(3) - t(1) = 2x
    m, gpu = load_model("mixtral-8x7b"), load_gpu("h100")

    def t(f: float) -> float:
        return weight_gemm_time(m, gpu, 8192, 1, 1, "bf16", ep=8, a=ServingAssumptions(expert_imbalance=f))[0]

    assert t(3) - t(1) == pytest.approx(2 * (t(2) - t(1)), rel=2e-2)
    assert t(2) > t(1)


def test_tp_x_ep_engine_memory() -> None:
    # Mixtral at TP 2 x EP 4 (two attention groups of TP 2): everything but the routed experts split by TP 2, the
    # experts' 45,097,156,608 params whole over 4 ranks. Non-expert params: 24,154,214,400 - 45,097,156,608 / 2
    # = 1,605,636,096 (test_serving_step's EP 2 figure). Per GPU: (1,605,636,096 / 2 + 45,097,156,608 / 4) x 2 B
    # = 24,154,214,400 B, + half the router (4,096 x 8 a layer x 32 layers x 2 B = 2,097,152 B, vLLM's ReplicatedLinear
    # gate, whole on both TP ranks): 1,048,576 B
    m = load_model("mixtral-8x7b")
    mem = engine_memory(m, load_gpu("h100"), tp=2, ep=4, tokens_per_request=2000)
    assert mem.weights_bytes == 24_154_214_400 + 1_048_576


def test_launch_line_carries_dp_and_ep() -> None:
    # a TP 2 x EP 8 layout running 64 requests: DP 4 attention groups, 16 requests each
    m = load_model("mixtral-8x7b")
    best = SimpleNamespace(tp=2, pp=1, ep=8, batch=64)
    s = EngineSettings(max_model_len=4096)
    line = launch_command(m, s, best, "vllm", "auto", 8192).split()
    assert line[line.index("--tensor-parallel-size") + 1] == "2"
    assert line[line.index("--data-parallel-size") + 1] == "4"
    assert "--enable-expert-parallel" in line and line[line.index("--max-num-seqs") + 1] == "16"
    sg = launch_command(m, s, best, "sglang", "auto", 8192).split()
    assert sg[sg.index("--tp") + 1] == "8" and sg[sg.index("--dp") + 1] == "4" and sg[sg.index("--ep-size") + 1] == "8"


def test_corpus_moe_rows_with_ep_are_predicted() -> None:
    # TensorRT-LLM perf-overview Qwen3-235B-A22B / Llama-4-Maverick FP8 rows (--ep_size = --tp_size, attention DP)
    # were "not predicted"; they now run as DP 8 attention + EP 8 layouts
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import corpus_predict as cp
    from corpus_schema import load_corpus

    done = [cp.predict_or_reason(row)[0] for row, group, _ in load_corpus()
            if group.startswith("trtllm-perf-overview") and cp.row_model(row).moe and row.dtype == "fp8"]
    assert len([p for p in done if p]) >= 6


def test_serve_and_latency_share_the_end_to_end_formula() -> None:
    # issue 20: a request holds its slot TTFT + (O - 1) x TPOT (the prefill samples the first token), in `serve`
    # as in `latency`: mu = B / (TTFT + (O - 1) x TPOT) from the layout's own printed TTFT and TPOT (no queue)
    from calc.serving.latency import latency
    from calc.serving.plan import serve_plan

    m, gpu = load_model("llama3-8b"), load_gpu("h100")
    for output in (1, 200):
        plan = serve_plan(m, gpu, prompt=1000, output=output, num_gpus=1)
        x = plan.layouts[0]
        assert x.queue_ms == 0
        assert x.requests_per_s_per_replica == pytest.approx(
            x.batch / ((x.ttft_ms + (output - 1) * x.tpot_ms) / 1e3), rel=1e-9)
    r = latency(m, gpu, prompt=1000, output=200)
    assert r.e2e_s == pytest.approx(r.ttft_s + 199 * r.tpot_s, rel=1e-12)


def test_moe_routing_traffic_by_hand() -> None:
    """Qwen3-235B-A22B (H 4096, E 128, top-8, 94 MoE layers), 1,000 tokens on one rank at 1 TB/s:
    router 1000 x 128 x 12 B = 1.536 MB, permute/unpermute 1000 x 8 x 4096 x 6 B = 196.608 MB, combine
    1000 x 4096 x 2 B = 8.192 MB: 206.336 MB a layer, x 94 = 19.395584 GB -> 19.395584 ms. Under EP with
    TP 2 inside each attention group a rank routes half the group's tokens: half the time. The fused-MoE
    kernel chain adds its fixed latency once per MoE layer: 94 x 20 us = 1.88 ms."""
    from calc.serving.step import moe_routing_s

    m = load_model("qwen3-235b-a22b")
    traffic = ServingAssumptions(moe_kernel_floor_s=0.0, dispatcher="deepep")
    assert moe_routing_s(m, 1000, 1, 1, 1e12, traffic) == pytest.approx(19.395584e-3)
    assert moe_routing_s(m, 1000, 2, 8, 1e12, traffic) == pytest.approx(19.395584e-3 / 2)
    assert moe_routing_s(m, 1000, 1, 1, 1e12, ServingAssumptions(moe_kernel_floor_s=20e-6)) == pytest.approx(
        19.395584e-3 + 1.88e-3)
    assert moe_routing_s(load_model("llama3-8b"), 1000, 1, 1, 1e12) == 0.0
    # all-gather, TensorRT-LLM's CUTLASS MoE ("gathered"): every rank permutes the gathered EP x tokens / t rows:
    # 8 x 1000 at TP 1 = 8 x the time (vLLM's naive broadcasts gather the same rows; NCCL all-to-all sends like DeepEP)
    for gathered in ("allgather", "naive"):
        gather = traffic.model_copy(update={"dispatcher": gathered, "moe_permute_scope": "gathered"})
        assert moe_routing_s(m, 1000, 1, 8, 1e12, gather) == pytest.approx(8 * 19.395584e-3)
    nccl = traffic.model_copy(update={"dispatcher": "alltoall"})
    assert moe_routing_s(m, 1000, 2, 8, 1e12, nccl) == pytest.approx(19.395584e-3 / 2)


@pytest.mark.parametrize(("scope", "seconds"), [("gathered", 155.164672e-3), ("zero-fill", 112.041984e-3),
                                               ("local", 25.796608e-3)])
def test_allgather_routing_by_engine_scope(scope: str, seconds: float) -> None:
    """Qwen3-235B-A22B (H 4096, E 128, top-8, 94 MoE layers), 1,000 tokens per rank, TP 1, EP 8 fed by an all-gather:
    8,000 gathered rows on every rank at 1 TB/s. Router 8000 x 128 x 12 B = 12.288 MB and output write 8000 x 4096 x 2 B
    = 65.536 MB on every row; 64,000 routed copies x 4096 elements = 262.144 M elements at c bytes each:
      gathered  (upper bound)                 c = 6:           1572.864 MB -> 1650.688 MB a layer x 94 = 155.164672 ms
      zero-fill (vLLM / SGLang Triton)        c = 4 + 2 / 8:   1114.112 MB -> 1191.936 MB x 94 = 112.041984 ms
      local     (TensorRT-LLM, vLLM DeepGEMM) c = 6 / 8:        196.608 MB ->  274.432 MB x 94 =  25.796608 ms"""
    from calc.serving.step import moe_routing_s

    m = load_model("qwen3-235b-a22b")
    a = ServingAssumptions(moe_kernel_floor_s=0.0, dispatcher="allgather", moe_permute_scope=scope)
    assert moe_routing_s(m, 1000, 1, 8, 1e12, a) == pytest.approx(seconds)
    # at EP 1 nothing is gathered and every scope moves the 6 B of each copy: the 19.395584 ms of one rank above
    assert moe_routing_s(m, 1000, 1, 1, 1e12, a) == pytest.approx(19.395584e-3)


def test_vllm_deepgemm_scope_by_rows_and_dtype() -> None:
    """vLLM ("deepgemm"): block-fp8 experts at >= 128 gathered rows run DeepGEMM (local copies only, 25.796608 ms as
    above); bf16 experts, or 10 tokens x 8 = 80 gathered rows (< 128), the Triton zero-fill: 80 rows are 1/100 of the
    8,000 above, 1.12041984 ms."""
    from calc.serving.step import moe_routing_s

    m = load_model("qwen3-235b-a22b")
    a = ServingAssumptions(moe_kernel_floor_s=0.0, dispatcher="allgather", moe_permute_scope="deepgemm")
    assert moe_routing_s(m, 1000, 1, 8, 1e12, a, deepgemm=True) == pytest.approx(25.796608e-3)
    assert moe_routing_s(m, 1000, 1, 8, 1e12, a, deepgemm=False) == pytest.approx(112.041984e-3)
    assert moe_routing_s(m, 10, 1, 8, 1e12, a, deepgemm=True) == pytest.approx(1.12041984e-3)


def test_step_hands_deepgemm_for_block_fp8_on_hopper() -> None:
    """A vLLM step of Qwen3-235B-A22B on H200 at EP 8 (all-gather, 64 decode rows per rank -> 512 gathered): fp8 with
    block scales runs DeepGEMM (local copies), bf16 the Triton zero-fill; the step's routing is the one priced so."""
    from calc.hardware.efficiency import memory_efficiency
    from calc.serving.step import moe_routing_s, step_time

    m, gpu = load_model("qwen3-235b-a22b"), load_gpu("h200")
    a = ServingAssumptions(dispatcher="allgather", moe_permute_scope="deepgemm")
    bw = gpu.hbm_tb_s * 1e12 * memory_efficiency(gpu)
    for dtype, deepgemm in (("fp8", True), ("bf16", False)):
        st = step_time(m, gpu, a, tp=1, ep=8, dtype=dtype, decode_seqs=64, decode_context=1000)
        assert st.memory_s - st.bytes_read / bw == pytest.approx(moe_routing_s(m, 64, 1, 8, bw, a, deepgemm))
    assert moe_routing_s(m, 64, 1, 8, bw, a, True) < moe_routing_s(m, 64, 1, 8, bw, a, False)


def test_engine_permute_scope_reaches_the_assumptions() -> None:
    """--engine trtllm prices local copies, --engine sglang the zero-fill, --engine vllm DeepGEMM-or-Triton (0.10
    the Triton zero-fill), and --explain says which."""
    from calc.cli.options import ServingKnobs
    from calc.cli.serving import serving_assumptions
    from calc.specs.serving import EngineSettings

    for settings, scope in ((EngineSettings(engine="trtllm"), "local"), (EngineSettings(engine="sglang"), "zero-fill"),
                            (EngineSettings(engine="vllm"), "deepgemm"),
                            (EngineSettings(engine="vllm", engine_version="0.10.1"), "zero-fill")):
        a = serving_assumptions(ServingKnobs(reserve_gib=4.0), settings)
        assert a.moe_permute_scope == scope
        assert any("permute / unpermute under an all-gather" in line for line in a.lines())


def test_moe_step_adds_routing_traffic() -> None:
    """The step of an MoE model carries the routing term on top of the same GEMMs, attention and comm: the
    difference between its total and the sum of the other parts is exactly moe_routing_s at the step's
    bandwidth (H200 4.8 TB/s x 0.9)."""
    from calc.serving.step import moe_routing_s, step_time

    m, gpu = load_model("qwen3-235b-a22b"), load_gpu("h200")
    deep = ServingAssumptions(dispatcher="deepep")
    st = step_time(m, gpu, deep, tp=1, ep=8, dtype="fp8", decode_seqs=64, decode_context=1000)
    routing = moe_routing_s(m, 64, 1, 8, 4.8e12 * 0.9, deep)
    assert routing == pytest.approx(94 * ((64 * 128 * 12 + 64 * 8 * 4096 * 6 + 64 * 4096 * 2) / 4.32e12
                                          + DEFAULT_ASSUMPTIONS.moe_kernel_floor_s))
    assert st.memory_s - routing == pytest.approx(st.bytes_read / 4.32e12)


def test_grouped_gemm_waves_count_every_expert() -> None:
    """A grouped GEMM launches all experts' tiles in one kernel: 33 experts of a [256, 2048] @ [2048, 256] GEMM are
    2 x 2 x 33 = 132 CTAs, one full wave of an H100's 132 SMs (1.0); 34 experts are 136 CTAs, two waves: 136 / 264.
    A single such GEMM alone would split K (2048 / 1024 = 2 ways): 8 CTAs of 132."""
    from calc.serving.step import wave_efficiency

    h100 = load_gpu("h100")
    assert wave_efficiency(h100, 256, 256, 2048, groups=33) == 1.0
    assert wave_efficiency(h100, 256, 256, 2048, groups=34) == pytest.approx(136 / 264)
    assert wave_efficiency(h100, 256, 256, 2048) == pytest.approx(8 / 132)


def test_fp8_grouped_gemm_rate_only_above_one_tile() -> None:
    """fp8 grouped GEMMs at >= 128 tokens per expert run at fp8_grouped_gemm_rate of the dense rate; 16-bit ones at
    the dense rate; below one tile both at grouped_gemm_efficiency (calc.serving.moe.expert_gemm_rate)."""
    from calc.serving.moe import expert_gemm_rate

    a = ServingAssumptions(grouped_gemm_efficiency=0.8, fp8_grouped_gemm_rate=0.5)
    assert expert_gemm_rate(127, a, "fp8") == 0.8
    assert expert_gemm_rate(128, a, "fp8") == 0.5
    assert expert_gemm_rate(128, a, "bf16") == 1.0


@pytest.mark.parametrize(("tokens", "measured_us"), [(1, 31.5), (64, 104.4), (4096, 357.0), (16384, 1355.9)])
def test_moe_layer_reproduces_aiconfigurator_measurements(tokens: int, measured_us: float,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """One Qwen3-235B-A22B-FP8 MoE layer (fused experts + routing, no all-to-all) on H200 with EP8, balanced routing,
    ``tokens`` tokens into the EP group (8 attention ranks of tokens / 8): aiconfigurator 0.12's measured vLLM 0.24
    table (aiconfigurator_core/systems/data/h200_sxm/moe/vllm/0.24.0/moe_perf.parquet, moe_dtype fp8_block,
    hidden 4096, inter 1536, topk 8, 128 experts, moe_ep_size 8, distribution balanced): 31.5 us at 1 token,
    104.4 us at 64, 357.0 us at 4,096, 1,355.9 us at 16,384. Within 25% each."""
    import calc.serving.step as step
    from calc.hardware.efficiency import memory_efficiency
    from calc.serving.step import moe_routing_s

    m, gpu = load_model("qwen3-235b-a22b"), load_gpu("h200")
    # each rank routes its own tokens / 8; the kernel alone, as the table times it (no whole-step moe_serving_rate)
    a = ServingAssumptions(expert_imbalance=1.0, dispatcher="deepep", moe_serving_rate=1.0)
    experts = [g for g in step.model_gemms(m)[0] if g.expert]
    monkeypatch.setattr(step, "model_gemms", lambda _m: (experts, 0))
    seconds = weight_gemm_time(m, gpu, tokens / 8, 0, 1, "fp8", None, 8, a)[0]
    seconds += moe_routing_s(m, tokens / 8, 1, 8, gpu.hbm_tb_s * 1e12 * memory_efficiency(gpu), a)
    assert seconds / 94 == pytest.approx(measured_us * 1e-6, rel=0.25)


def test_attention_runs_in_the_kv_cache_dtype() -> None:
    # Qwen3-235B-A22B with fp8 weights on H200, TP 4, one 4,000-token causal prefill (each query sees 2,000.5 keys):
    # attention FLOPs = 2 x 64 heads x (128 + 128) x 4,000 x 2,000.5 x 94 layers / 4 = 6,161,924,096,000.
    # With the default 16-bit KV cache vLLM runs FA3 in bf16: / (989.4 TFLOPS x 0.45 Hopper flash) = 13.840 ms; with
    # an fp8 KV cache its fp8 path: / (1,978.9 x 0.45) = 6.920 ms. The weight GEMMs are the same in both, so the
    # compute parts differ by the attention alone: 6.920 ms.
    m, gpu = load_model("qwen3-235b-a22b"), load_gpu("h200")
    common = dict(tp=4, dtype="fp8", prefill_tokens=4000, prefill_prompt=4000)
    bf16 = step_time(m, gpu, DEFAULT_ASSUMPTIONS, kv_dtype="bf16", **common)
    fp8 = step_time(m, gpu, DEFAULT_ASSUMPTIONS, kv_dtype="fp8", **common)
    assert bf16.compute_s - fp8.compute_s == pytest.approx(13.840e-3 - 6.920e-3, rel=1e-3)


def test_fused_moe_row_tile_by_hand() -> None:
    """vLLM / SGLang fused_moe pad each expert's rows to BLOCK_SIZE_M: 16 when the step's M <= E, else 64
    (get_default_config), against gemm_time's 128. One token (M = 1 <= 128 experts): q(1, 16) / q(1, 128) = (1/16) /
    (1/128) = 8. 20 rows per expert in a 200-token step (M > E: 64 rows): (20/64) / (20/128) = 2. 100 rows under 64:
    100/128 either way = 1. From 128 rows on the GEMM's own tile quantisation: 1."""
    from calc.serving.moe import expert_row_tile

    assert expert_row_tile(1, 1, 128) == pytest.approx(8.0)
    assert expert_row_tile(20, 200, 128) == pytest.approx(2.0)
    assert expert_row_tile(100, 1000, 128) == pytest.approx(1.0)
    assert expert_row_tile(128, 128, 8) == 1.0


def test_one_token_streams_the_touched_experts_on_a_low_compute_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Qwen3-30B-A3B (48 MoE layers, 128 experts, top-8, hidden 2048, expert 768) in bf16 on an H20 (148 TFLOP/s bf16,
    4.0 TB/s): one decode token touches 8 experts, one row each. Padded to 16 rows the gate_up GEMM's compute is
    2 x 16 x 2048 x 1536 = 100.7 MFLOP per expert, 0.68 us at 148 TFLOP/s x 1.0 even at full peak... below its
    (1 x 2048 + 2048 x 1536 + 1 x 1536) x 2 B = 6,298,624 B / (4.0e12 x 0.9) = 1.7496 us of streaming: each expert GEMM
    is memory-bound. So the layer's experts stream 8 x 1.7496 us for gate_up and, for down ((768 + 768 x 2048 +
    2048) x 2 B = 3,151,360 B: 0.87538 us), 8 x 0.87538 us, both over the 0.8 grouped stream rate, plus a 4 us
    launch each: (13.997 + 7.003) / 0.8 + 8 = 34.25 us per layer, x 48 layers = 1.644 ms. (With the 128-row pad the gate_up compute
    alone, 805 MFLOP per expert, would be 5.4 us at full peak: compute-bound.)"""
    import calc.serving.step as step

    m, gpu = load_model("qwen3-30b-a3b"), load_gpu("h20")
    experts = [g for g in step.model_gemms(m)[0] if g.expert]
    monkeypatch.setattr(step, "model_gemms", lambda _m: (experts, 0))
    kernel = DEFAULT_ASSUMPTIONS.model_copy(update={"moe_serving_rate": 1.0})  # the kernel alone, no whole-step rate
    seconds = weight_gemm_time(m, gpu, 1, 0, 1, "bf16", None, 1, kernel)[0]
    gate_up = 8 * 6_298_624 / (4.0e12 * 0.9)
    down = 8 * 3_151_360 / (4.0e12 * 0.9)
    assert seconds == pytest.approx(48 * ((gate_up + down) / 0.8 + 2 * 4e-6), rel=1e-6)


def test_fp8_moe_scales_pick_the_grouped_rate() -> None:
    """Above one 128-row tile per expert an fp8 grouped GEMM runs at fp8_grouped_gemm_rate with block scales (the
    default) and at fp8_tensor_grouped_gemm_rate with one scale per tensor (TensorRT-LLM QuantAlgo FP8); 16-bit
    experts at the dense rate either way."""
    from calc.serving.moe import expert_gemm_rate

    block = ServingAssumptions(fp8_grouped_gemm_rate=0.5, fp8_tensor_grouped_gemm_rate=0.8)
    tensor = block.model_copy(update={"fp8_moe_scales": "tensor"})
    assert expert_gemm_rate(512, block, "fp8") == 0.5
    assert expert_gemm_rate(512, tensor, "fp8") == 0.8
    assert expert_gemm_rate(512, tensor, "bf16") == 1.0
    assert expert_gemm_rate(64, tensor, "fp8") == tensor.grouped_gemm_efficiency


def test_trtllm_fp8_rows_run_per_tensor_scales() -> None:
    """TensorRT-LLM's FP8 (ModelOpt / --quantization FP8) is one scale per tensor (corpus_knobs.STACK_FP8_SCALES);
    a row's own fp8_scales knob wins; 16-bit rows have none."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from corpus_knobs import fp8_scales

    def row(stack: str, dtype: str) -> SimpleNamespace:
        return SimpleNamespace(stack=SimpleNamespace(name=stack), dtype=dtype)

    assert fp8_scales(row("trtllm", "fp8"), {}) == "tensor"
    assert fp8_scales(row("vllm", "fp8"), {}) is None
    assert fp8_scales(row("vllm", "fp8"), {"fp8_scales": "tensor"}) == "tensor"
    assert fp8_scales(row("trtllm", "bf16"), {}) is None


def test_finite_run_waves_by_hand() -> None:
    """trtllm-bench runs a finite dataset (perf-overview $num_requests): 1,500 identical requests on an engine that
    admits 4,096 run as one wave of 1,500 (not a 4,096 steady state); 10 requests through room for 4 run as waves
    4, 4, 2. With tokens/s = 10 per request admitted (per rank s, 2 ranks: 20 s): 1,500 requests at 750 per rank ->
    15,000 tokens/s; waves 4, 4, 2 at 100 tokens/s each -> 10 / (4/100 + 4/100 + 2/100) = 100 tokens/s."""
    import corpus_predict as cp
    from corpus_schema import load_corpus

    assert cp.finite_run_tokens_per_s(1500, 4096, 2, lambda s: 20.0 * s) == pytest.approx(15000.0)
    assert cp.finite_run_tokens_per_s(10, 4, 1, lambda s: 100.0) == pytest.approx(100.0)
    # a row of the v1.0 perf overview carries its dataset size, read as a knob
    row = next(r for r, _g, _s in load_corpus() if r.id == "trtllm-po-v1.0-qwen3-235b-a22b-h200-tp8-fp8-128-4096")
    assert cp.knobs(row)["num_requests"] == 1500


def test_drain_excess_by_hand() -> None:
    """An offline run of exponential output lengths (mean O) ends when its longest output does. With a step that
    costs the same at every batch (s seconds), the drain of R requests takes T_end = min(O x H(R), cap) steps where the
    mean-length model charged O: the excess is (T_end - O) x s. R = 4, O = 100: H(4) = 1 + 1/2 + 1/3 + 1/4 = 25/12,
    T_end = 208.33 -> 208 steps, excess (208 - 100) x 0.01 = 1.08 s; a cap of 150 tokens stops it at 150: 0.5 s. One
    request has no tail (H(1) = 1)."""
    import corpus_predict as cp

    flat = lambda b: 0.01  # noqa: E731
    assert cp.drain_excess_s(4, 100, 2000, flat) == pytest.approx(1.08)
    assert cp.drain_excess_s(4, 100, 150, flat) == pytest.approx(0.5)
    assert cp.drain_excess_s(1, 100, 2000, flat) == pytest.approx(0.0)
    # a step linear in the batch, a + c b: the drain streams the weights (a) for every step but reads each token's
    # work (c) once, so its excess over O x step(R) is (T_end - O) a + c (sum_t b(t) - O R) ~ (T_end - O) a for R large
    a, c = 0.02, 1e-5
    excess = cp.drain_excess_s(1000, 200, 2000, lambda b: a + c * b)
    h = sum(1 / i for i in range(1, 1001))  # 7.485
    assert excess == pytest.approx((200 * h - 200) * a, rel=0.03)


def test_max_load_decode_step_is_the_decode_only_step() -> None:
    """max_load_decode_step prices a step with no prompt chunk: on llama3-8b / H100 TP1 it equals calc.serving.step.
    step_time at the request's mean context with decode_seqs = the running requests, and it grows with the batch."""
    from calc.serving.assumptions import DEFAULT_ASSUMPTIONS
    from calc.serving.plan import max_load_decode_step
    from calc.serving.step import decode_context, step_time
    from calc.sources.catalog import load_gpu, load_model

    m, gpu = load_model("llama3-8b"), load_gpu("h100")
    step = max_load_decode_step(m, gpu, prompt=200, output=200, tp=1)
    direct = step_time(m, gpu, DEFAULT_ASSUMPTIONS, tp=1, decode_seqs=64, decode_context=decode_context(200, 200))
    assert step(64) == pytest.approx(direct.total_s)
    assert step(1) < step(64) < step(512)


def _moe_layer_s(m, gpu, tokens: int, a) -> float:  # noqa: ANN001
    """One MoE layer's routed-expert GEMMs + routing on one GPU (TP 1, no EP), as calc.serving.step prices them."""
    import calc.serving.step as step
    from calc.hardware.efficiency import memory_efficiency
    from calc.serving.step import moe_routing_s

    experts = [g for g in step.model_gemms(m)[0] if g.expert]
    orig = step.model_gemms
    step.model_gemms = lambda _m: (experts, 0)
    try:
        s = weight_gemm_time(m, gpu, tokens, 0, 1, None, None, 1, a)[0]
    finally:
        step.model_gemms = orig
    s += moe_routing_s(m, tokens, 1, 1, gpu.hbm_tb_s * 1e12 * memory_efficiency(gpu), a)
    return s / (m.num_layers - m.moe.num_dense_layers)


def test_int4_experts_run_marlin_moe_at_the_measured_rate() -> None:
    """GPTQ / AWQ experts (W4A16, Marlin MoE in vLLM and SGLang) at >= 128 tokens per expert run at
    int4_grouped_gemm_rate (0.45 on Hopper) of a dense 16-bit GEMM; below it the decode rate holds; MXFP4 experts
    (gpt-oss: OpenAI's Triton kernel on Hopper) and fp16 experts keep theirs. Against aiconfigurator 0.12's vLLM 0.14
    H100 int4_wo table (vllm_marlin_moe, balanced, TP 1), read from the parquet: Mixtral 8x7B experts at 8,192 tokens
    21.10 ms per layer, Qwen3-30B-A3B's at 8,192 tokens 2.77 ms, Mixtral at 16 tokens 0.282 ms. At rate 1 the first
    two would be priced at about half the measured time."""
    from calc.memory.weights import requantize
    from calc.serving.moe import expert_gemm_rate
    from calc.serving.weights import weight_format

    a = DEFAULT_ASSUMPTIONS.model_copy(update={"moe_serving_rate": 1.0})  # the kernel alone, as the table times it
    assert expert_gemm_rate(1024, a, "int4", "Hopper", True) == 0.45
    assert expert_gemm_rate(1024, a, "int4", "Ampere", True) == 0.7
    assert expert_gemm_rate(64, a, "int4", "Hopper", True) == a.grouped_gemm_efficiency
    assert expert_gemm_rate(1024, a, "int4", "Hopper", False) == 1.0
    h100 = load_gpu("h100")
    mixtral, qwen = requantize(load_model("mixtral-8x7b"), "gptq")[0], requantize(load_model("qwen3-30b-a3b"), "awq")[0]
    assert weight_format(mixtral, h100, None).int4_experts and weight_format(qwen, h100, None).int4_experts
    assert not weight_format(load_model("gpt-oss-120b"), h100, None).int4_experts  # MXFP4: not Marlin-served
    assert not weight_format(requantize(load_model("llama3-8b"), "awq")[0], h100, None).int4_experts  # no experts
    assert _moe_layer_s(mixtral, h100, 8192, a) == pytest.approx(21.10e-3, rel=0.15)
    assert _moe_layer_s(qwen, h100, 8192, a) == pytest.approx(2.77e-3, rel=0.15)
    # decode-sized (2 tokens per expert): the weight-streaming rate, 0.331 ms here against 0.282 ms measured
    assert _moe_layer_s(mixtral, h100, 16, a) == pytest.approx(0.282e-3, rel=0.2)


def test_expert_gemms_are_continuous_across_one_tile(monkeypatch: pytest.MonkeyPatch) -> None:
    """The weight stream of a grouped GEMM runs at grouped_gemm_efficiency on both sides of 128 tokens per expert, so
    a memory-bound expert GEMM costs the same at 127.75 and 128 tokens per expert (one rate on the whole time made
    Mixtral 8x7B TP4 decode 11% faster at batch 512 than at 511). By hand, Mixtral 8x7B bf16 on H100 at TP 4, 512
    tokens (top-2 of 8: 128 per expert, all 8 touched), per layer:
        gate_up [128 x 4,096] @ [4,096 x 7,168]: (128 x 4,096 + 4,096 x 7,168 + 128 x 7,168) x 2 B = 61,603,840 B
        down    [128 x 3,584] @ [3,584 x 4,096]: (128 x 3,584 + 3,584 x 4,096 + 128 x 4,096) x 2 B = 31,326,208 B
        8 x (61,603,840 + 31,326,208) = 743,440,384 B / (3.35 TB/s x 0.9) / (0.8 grouped x msr)
    over 32 layers, + one launch per GEMM (compute side: 9.0e10 FLOPs a layer at ~600 TFLOP/s, below the stream)."""
    import calc.serving.step as step

    m, gpu = load_model("mixtral-8x7b"), load_gpu("h100")
    a = ServingAssumptions(expert_imbalance=1.0, moe_serving_rate=0.65)
    experts = [g for g in step.model_gemms(m)[0] if g.expert]
    monkeypatch.setattr(step, "model_gemms", lambda _m: (experts, 0))
    t511 = weight_gemm_time(m, gpu, 511, 0, 4, "bf16", None, 1, a)[0]
    t512 = weight_gemm_time(m, gpu, 512, 0, 4, "bf16", None, 1, a)[0]
    by_hand = 32 * (743_440_384 / (3.35e12 * 0.9) / (0.8 * 0.65) + 2 * GEMM_LAUNCH_S)
    assert t512 == pytest.approx(by_hand, rel=1e-6)
    assert t512 == pytest.approx(t511, rel=3e-3)

