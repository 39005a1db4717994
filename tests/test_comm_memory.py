"""Communication memory per rank (calc.serving.comm_memory): NCCL's buffer constants worked by hand."""

from __future__ import annotations

from calc.serving.assumptions import ServingAssumptions
from calc.serving.comm_memory import (
    CONNECTION_BYTES,
    comm_buffer_bytes,
    connection_bytes,
    nccl_release,
    nvls_channel_bytes,
    nvls_channels,
)
from calc.serving.engine_memory import engine_memory
from calc.sources.catalog import load_gpu, load_model
from calc.specs.serving import EngineSettings

MIB, GIB = 2**20, 2**30
CA = 3 * 8 * MIB  # vLLM custom all-reduce: 8 MiB buffer + 8 MiB signal + 8 MiB rank_data


def test_one_connection_is_ll_ll128_simple() -> None:
    # LL: 8 lines x 512 threads x 8 steps x 16 B = 524,288; LL128: 120 elems x 640 threads x 8 steps x 8 B = 4,915,200;
    # Simple: NCCL_BUFFSIZE 4 MiB = 4,194,304 -> 9,633,792 B (9.19 MiB, the size users see per proxy connection)
    assert CONNECTION_BYTES == 524_288 + 4_915_200 + 4_194_304 == 9_633_792


def test_a_connection_allocates_whole_ipc_granules() -> None:
    # p2p.cc: each side's size rounded up to CUDA_IPC_MIN 2,097,152 B, each with a 4,096-B header (MEM_ALIGN).
    # P2P read (A100): sender 4,096 + 4,194,304 = 4,198,400 -> 6,291,456; receiver 4,096 + 524,288 + 4,915,200 =
    # 5,443,584 -> 6,291,456. No read (Hopper): sender 4,096 -> 2,097,152; receiver 4,096 + 9,633,792 = 9,637,888 ->
    # 10,485,760. Either way 12,582,912 B (12 MiB), not the 9,633,792 B of buffers.
    assert connection_bytes(True) == 6_291_456 + 6_291_456 == 12_582_912
    assert connection_bytes(False) == 2_097_152 + 10_485_760 == 12_582_912


def test_nvls_channels_by_nccl_release() -> None:
    # ncclNvlsSetup in v2.20.5-1 / v2.21.5-1 sizes the buffers by comm->nChannels (the collective channels);
    # v2.19.3-1 by comm->nvlsChannels, >= v2.22.3-1 by nvlsResources->nChannels (16 on Hopper)
    h100 = load_gpu("h100")
    assert nvls_channels(h100, 24, (2, 20, 5)) == 24 and nvls_channels(h100, 24, (2, 21, 5)) == 24
    assert nvls_channels(h100, 24, (2, 19, 3)) == 16 and nvls_channels(h100, 24, (2, 26, 2)) == 16


def test_nvls_buffers_by_nccl_release() -> None:
    # per NVLS channel and head, both directions: <= 2.20 2 x (4 MiB + 2 MiB credits); 2.21 2 x (1 MiB + 2 MiB);
    # >= 2.22 2 x 1 MiB. An 8 x H100 log (>= 2.22): "nvlsPerRankSize 33554432" = 16 channels x 2 MiB.
    assert nvls_channel_bytes((2, 20, 5)) == 12 * MIB
    assert nvls_channel_bytes((2, 21, 5)) == 6 * MIB
    assert 16 * nvls_channel_bytes((2, 26, 2)) == 33_554_432
    assert nccl_release("vllm", (0, 6, 3)) == (2, 20, 5) and nccl_release("vllm-v0", (0, 6, 5)) == (2, 21, 5)
    assert nccl_release("vllm", (0, 9, 2)) >= (2, 22)


def test_h100_tp4_vllm_and_sglang() -> None:
    h100 = load_gpu("h100")
    # vLLM >= 0.9: 2 communicators x 24 channels x (ring 1 + tree 2) x 12,582,912 = 1,811,939,328 B
    # + NVLS 2 x 16 x 2 MiB x 4 heads = 268,435,456 B + custom all-reduce 25,165,824 B = 2,105,540,608 B (1.96 GiB)
    vllm, line = comm_buffer_bytes(h100, 4, "vllm", (0, 11), None)
    assert vllm == 1_811_939_328 + 268_435_456 + 25_165_824 == 2_105_540_608
    assert "NVLS 0.25 GiB" in line and "24 channels" in line and "12 MiB" in line
    # SGLang sets NCCL_NVLS_ENABLE=0: 1,811,939,328 + 25,165,824 = 1,837,105,152 B
    sglang, line = comm_buffer_bytes(h100, 4, "sglang", (0, 4), None)
    assert sglang == 1_837_105_152 and "NVLS off" in line
    # TP 2: no NVLS (NCCL needs > 2 GPUs), tree 1 connection: 2 x 24 x 2 x 12,582,912 + 25,165,824 = 1,233,125,376 B
    assert comm_buffer_bytes(h100, 2, "vllm", (0, 11), None)[0] == 1_233_125_376


def test_h100_tp8_under_nccl_2_20_sizes_nvls_by_the_collective_channels() -> None:
    # vLLM 0.5.3 (torch 2.3 -> NCCL 2.20.5), TP 8: ring / tree 2 x 24 x 3 x 12,582,912 = 1,811,939,328 B; NVLS
    # 2 communicators x 24 channels x 2 x (4 MiB + 2 MiB) x 8 heads = 4,831,838,208 B (4.5 GiB; 16 channels would
    # give 3 GiB); custom all-reduce 25,165,824 B: 6,668,943,360 B
    total, line = comm_buffer_bytes(load_gpu("h100"), 8, "vllm-v0", (0, 5, 3), None)
    assert total == 1_811_939_328 + 4_831_838_208 + 25_165_824 == 6_668_943_360
    assert "NCCL 2.20.5" in line and "NVLS 4.50 GiB" in line


def test_pcie_flat_and_given_override() -> None:
    # an L4 node (PCIe, no NVSwitch): the flat 0.25 GiB; a given comm_buffer_gib wins everywhere
    assert comm_buffer_bytes(load_gpu("l4"), 4, "vllm", (0, 11), None)[0] == GIB // 4
    assert comm_buffer_bytes(load_gpu("h100"), 8, "vllm", (0, 11), 0.5) == (GIB // 2, "0.5 GiB communication buffers (given)")


def test_engine_subtracts_it_and_explains_it() -> None:
    m, h100 = load_model("llama3-70b"), load_gpu("h100")
    s = EngineSettings(max_model_len=8192)
    formula = engine_memory(m, h100, settings=s, tp=4)
    flat = engine_memory(m, h100, settings=s, tp=4, assumptions=ServingAssumptions(comm_buffer_gib=0.25))
    # V1 >= 0.9.1: non-torch = int(0.1 GiB) + communication; the formula's 2,105,540,608 B against 0.25 GiB
    assert formula.non_torch_bytes == int(0.1 * GIB) + 2_105_540_608
    assert flat.non_torch_bytes == int(0.1 * GIB) + GIB // 4
    assert flat.kv_budget_bytes - formula.kv_budget_bytes == 2_105_540_608 - GIB // 4
    assert any("calc.serving.comm_memory" in line for line in formula.assumptions)


def test_comm_buffer_flag_replaces_the_formula_in_every_serving_command() -> None:
    """--comm-buffer-gib G: each of the TP 4 ranks keeps G GiB for communication. Llama 3 70B holds, per token and
    rank, 80 layers x (8 KV heads / 4) x 128 x 2 (K and V) x 2 B = 81,920 B of KV, so 3 GiB more of buffers is
    3 x 2^30 / 81,920 = 39,321.6 tokens fewer, to the engine's 16-token block."""
    from conftest import run_cli

    def tokens(*flags: str) -> int:
        r = run_cli("concurrency", "llama3-70b", "--gpu", "h100", "--tp", "4", "--max-model-len", "8192", "--json", *flags)
        assert r.code == 0, r.err
        return r.json()["kv_cache_tokens"]

    per_token_rank = 80 * (8 // 4) * 128 * 2 * 2
    lost = tokens("--comm-buffer-gib", "0") - tokens("--comm-buffer-gib", "3")
    assert abs(lost - 3 * 2**30 / per_token_rank) <= 16
    for command in (("latency", "llama3-70b", "--gpu", "h100", "--tp", "4", "--prompt", "1000", "--output", "100"),
                    ("serve", "llama3-70b", "--gpu", "h100", "--prompt", "1000", "--output", "100", "--tpot-ms", "50")):
        explained = run_cli(*command, "--comm-buffer-gib", "3", "--explain")
        assert explained.code == 0, explained.err
        assert "buffers per GPU when split = 3 GiB" in explained.out  # the assumption line --explain prints
    bad = run_cli("concurrency", "llama3-70b", "--gpu", "h100", "--tp", "4", "--comm-buffer-gib", "-1")
    assert bad.code == 2 and "--comm-buffer-gib" in bad.err


def test_comm_buffer_flag_refused_on_one_gpu() -> None:
    """One GPU builds no communicator (no buffers to size), so --comm-buffer-gib would change nothing: refused in
    latency, concurrency and serve --num-gpus 1, one line naming the flag."""
    from conftest import run_cli

    for command in (("latency", "llama3-8b", "--gpu", "h100", "--prompt", "1000"),
                    ("concurrency", "llama3-8b", "--gpu", "h100", "--max-model-len", "8192"),
                    ("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--num-gpus", "1")):
        r = run_cli(*command, "--comm-buffer-gib", "3")
        assert r.code == 2 and r.err.startswith("llmcalc: error: --comm-buffer-gib:") and r.err.count("\n") == 1, r.err
    split = run_cli("concurrency", "llama3-8b", "--gpu", "h100", "--tp", "2", "--max-model-len", "8192", "--comm-buffer-gib", "3")
    assert split.code == 0, split.err
