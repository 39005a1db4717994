"""Host launch floor of the training step (calc.training.host): op counts worked by hand from the layer's structure,
max(GPU, host) per pass, dense plans untouched at the default, the --host-op-us flag."""

from __future__ import annotations

from dataclasses import replace

import pytest

from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import Efficiencies, ModelCost
from calc.training.host import HOST_OP_S, exposed_host_s, layer_host_ops
from calc.training.layout import Layout, check_training_layout
from calc.training.step import step_terms


def test_layer_ops_hand_counted() -> None:
    # A DeepSeek-V3 MoE layer on TP2 + SP, EP32, unfused attention (the dgxc GB200 layout), Megatron-Core:
    # GEMM launches: q_a, q_b, kv_a, kv_b, o (5) + router (1) + shared fc1, fc2 (2) + routed fc1, fc2 x 8 local (16) = 24
    # other: 4 norms (input, pre-MLP, q_a, kv_a) + 2 adds + 2 rotary + 1 activation (5) + unfused attention 4
    #        + TP collectives 4 + router 72 + dispatcher 8 = 97
    # forward 24 + 97 = 121; backward 2 x 24 + 97 + 2 SP re-gathers = 147
    assert layer_host_ops(24, 4, False, 2, True, True) == (121, 147)
    # the same layer without TP, with a fused attention kernel: other = 4 + 5 + 1 + 72 + 8 = 90
    assert layer_host_ops(24, 4, True, 1, False, True) == (114, 138)


def test_exposed_is_the_excess_over_the_gpu() -> None:
    assert exposed_host_s(0.5, 0.25) == 0.25
    assert exposed_host_s(0.25, 0.5) == 0.0


def _qwen3_moe(host_op_s: float = HOST_OP_S) -> ModelCost:
    return ModelCost(load_model("qwen3-30b-a3b"), load_gpu("b200"), load_system("dgx-b200"), 4096, "bf16",
                     Efficiencies(host_op_s=host_op_s))


def test_qwen3_moe_layer_host_time_hand_worked() -> None:
    # qwen3-30b-a3b (48 MoE layers, 128 experts top-8, no shared expert, 2 norms) on 8 GPUs, EP8: 16 local experts.
    # Megatron launches: linear_qkv 1 + o_proj 1 + router 1 + routed fc1 16 + fc2 16 = 35
    # other: 2 norms + 5 + fused attention 1 + router 72 + dispatcher 8 = 88 -> forward 123, backward 70 + 88 = 158
    cost = _qwen3_moe()
    lc = cost.layer(0, 1, 1, 1, 8, False)
    assert lc.host_fwd == pytest.approx(123 * 15e-6)
    assert lc.host_bwd == pytest.approx(158 * 15e-6)


def test_a_binding_host_sets_the_layer_time() -> None:
    # At 1 ms per op the host binds on every pass: each of the 48 layers costs (123 + 158) ops x 1 ms per micro-batch
    # whatever its GPU time, so compute + host + EP (the GPU pass folded into the max) = m x 48 x 281 ms + the head.
    cost = _qwen3_moe(1e-3)
    layout = Layout(tp=1, dp=8, ep=8, zero=1)
    micro = check_training_layout(cost.m, layout, 8, 64, cost.seq)
    t = step_terms(cost, layout, 64, micro)
    head_f, head_b = cost.head_cost(1, 1, 1)
    layers = t.exposed["compute_s"] + t.exposed["host_s"] + t.exposed["ep_comm_s"] - micro * (head_f + head_b)
    assert micro == 8
    assert layers == pytest.approx(micro * 48 * 281e-3)
    # host 0: no host term, the step as without the floor
    off = step_terms(_qwen3_moe(0.0), layout, 64, micro)
    assert off.exposed["host_s"] == 0.0
    assert t.step_time_s > off.step_time_s


def test_dense_plan_untouched_at_the_default() -> None:
    # Llama-3 8B, seq 8192 on 8 H100: a layer's forward is several ms of GPU work against ~15 ops x 15 us.
    cost = ModelCost(load_model("llama3-8b"), load_gpu("h100"), load_system("dgx-h100"), 8192)
    layout = Layout(tp=1, dp=8, zero=1)
    t = step_terms(cost, layout, 32, 4)
    assert t.exposed["host_s"] == 0.0
    off = step_terms(ModelCost(cost.m, cost.gpu, cost.system, 8192, "bf16", replace(cost.eff, host_op_s=0.0)), layout, 32, 4)
    assert t.step_time_s == off.step_time_s


def test_cli_flag_and_explain(cli) -> None:
    args = ("train-step", "qwen3-30b-a3b", "--gpu", "b200", "--num-gpus", "8", "--ep", "8", "--global-batch", "64",
            "--seq", "4096")
    base = cli(*args, "--json").json()
    slow = cli(*args, "--host-op-us", "1000", "--json").json()
    none = cli(*args, "--host-op-us", "0", "--json").json()
    assert none["host_s"] == 0.0
    assert slow["host_s"] > base["host_s"] >= 0.0
    assert slow["step_time_s"] > none["step_time_s"]
    explained = cli(*args, "--host-op-us", "20", "--explain")
    assert "host launch: 20 us of CPU per launched op" in explained.out
    assert "123 ops forward, 158 backward x 20 us" in explained.out
    bad = cli(*args, "--host-op-us", "-1")
    assert bad.code == 2 and "--host-op-us" in bad.err


def test_1f1b_a2a_overlap_hides_under_the_other_pass() -> None:
    # Megatron combined 1F1B (pipeline_parallel/combined_1f1b.py): each MoE layer's forward all-to-all runs under the
    # backward compute of another micro-batch and vice versa; with overlap efficiency o a transfer e under a window w
    # exposes max(0, e - w) + (1 - o) min(e, w). qwen3-30b-a3b on 16 H100 (2 nodes), EP16: the A2A crosses the NIC.
    eff = Efficiencies(host_op_s=0.0)
    cost = ModelCost(load_model("qwen3-30b-a3b"), load_gpu("h100"), load_system("dgx-h100"), 4096, "bf16", eff)
    layout = Layout(tp=1, dp=16, ep=16, zero=1)
    plain = step_terms(cost, layout, 64, 4)
    lc = cost.layer(0, 1, 1, 1, 16, False)
    assert lc.ep_fwd == lc.ep_bwd > 0
    o = eff.overlap

    def exposed(e: float, w: float) -> float:
        return max(0.0, e - w) + (1 - o) * min(e, w)

    overlapped = step_terms(ModelCost(cost.m, cost.gpu, cost.system, 4096, "bf16", replace(eff, ep_overlap_1f1b=True)),
                            layout, 64, 4)
    assert plain.exposed["ep_comm_s"] == pytest.approx(4 * 48 * 2 * lc.ep_fwd)
    assert overlapped.exposed["ep_comm_s"] == pytest.approx(4 * 48 * (exposed(lc.ep_fwd, lc.bwd) + exposed(lc.ep_bwd, lc.fwd)))
    assert overlapped.totals["ep_comm_s"] == plain.totals["ep_comm_s"]
    assert overlapped.step_time_s < plain.step_time_s


def test_cli_1f1b_flag(cli) -> None:
    args = ("train-step", "qwen3-30b-a3b", "--gpu", "h100", "--num-gpus", "16", "--ep", "16", "--global-batch", "64",
            "--seq", "4096")
    plain, overlapped = cli(*args, "--json").json(), cli(*args, "--ep-overlap-1f1b", "--json").json()
    assert overlapped["ep_comm_s"] < plain["ep_comm_s"]
    assert "combined 1F1B" in cli(*args, "--ep-overlap-1f1b", "--explain").out
    both = cli(*args, "--ep-overlap-1f1b", "--ep-overlap", "0.5")
    assert both.code == 2 and "--ep-overlap-1f1b" in both.err


def test_deepep_sends_a_token_once_per_node() -> None:
    # Qwen3-235B (128 experts, top-8) with EP32 on DGX H100 (8 GPUs per node): the EP group spans 4 nodes of 32 experts.
    # A node is missed by all 8 experts with probability (96/128)(95/127)...(89/121) = 0.0927; a token reaches
    # 4 x 0.9073 = 3.629 nodes where the all-to-all dispatcher sends 8 copies: NIC bytes x 3.629 / 8 = 0.4536.
    from calc.hardware.collectives import collective_time
    from calc.hardware.moe_ops import deepep_nic_scale

    missed = 1.0
    for i in range(8):
        missed *= (96 - i) / (128 - i)
    assert missed == pytest.approx(0.0927, abs=1e-4)
    assert deepep_nic_scale(128, 8, 4) == pytest.approx(4 * (1 - missed) / 8)
    assert deepep_nic_scale(128, 8, 1) == 1.0
    # the all-to-all across nodes is NIC-bound here: (n - n_in)/n R / (50 GB/s x eff) + latency, scaled on the NIC part
    system = load_system("dgx-h100")
    m = load_model("qwen3-235b-a22b")
    a2a, deep = (ModelCost(m, load_gpu("h100"), system, 4096, "bf16", Efficiencies(dispatcher=d)).ep_comm_s(4096, 2, 32, 1)
                 for d in ("alltoall", "deepep"))
    routed = ModelCost(m, load_gpu("h100"), system, 4096).ep_routed_bytes(2048, 32)
    eff = Efficiencies().collective
    nic = 24 / 32 * routed / (system.inter_node_gb_s * 1e9 * eff)
    assert a2a == pytest.approx(2 * (nic + system.inter_node_latency_s))
    assert deep == pytest.approx(2 * (0.4536 * nic + system.inter_node_latency_s), rel=1e-3)
    assert collective_time("all_to_all", system, routed, 32, 1, eff, 0.5) < collective_time("all_to_all", system, routed, 32, 1, eff)


def test_cli_dispatcher_flag(cli) -> None:
    args = ("train-step", "qwen3-30b-a3b", "--gpu", "h100", "--num-gpus", "16", "--ep", "16", "--global-batch", "64",
            "--seq", "4096")
    plain, deep = cli(*args, "--json").json(), cli(*args, "--dispatcher", "deepep", "--json").json()
    assert deep["ep_comm_s"] < plain["ep_comm_s"]
    assert "a token once per node" in cli(*args, "--dispatcher", "deepep", "--explain").out
    dense = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "64", "--dispatcher", "deepep")
    assert dense.code == 2 and "--dispatcher" in dense.err
    # one vocabulary with serving: the values training does not price are refused in one line, never ignored
    for value in ("allgather", "naive"):
        r = cli(*args, "--dispatcher", value)
        assert r.code == 2 and r.err.startswith("llmcalc: error: --dispatcher: " + value) and r.err.count("\n") == 1
