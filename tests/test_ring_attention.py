"""Context-parallel ring attention (calc.training.ring_attention): transfers, their overlap and the merge traffic,
worked by hand from the engines' sources (Transformer Engine p2p ring; PyTorch context_parallel as torchtitan runs
it: repeat_kv before SDPA, one all-gather of K/V under step 0, fp32 dK/dV sends, fp32 merge)."""

import pytest

from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import Efficiencies, ModelCost
from calc.training.ring_attention import ring_comm_s, ring_merge_bytes

SEQ, CP = 262144, 8


def test_merge_bytes_by_hand():
    # compiled (one fused pass per step): forward per step after the first: read fp32 out 4 + bf16 step out 2,
    # write fp32 out 4 = 10; once: step 0's upcast 2+4 + the final downcast 4+2 = 12
    # backward per step: dQ += 4+2+4 = 10, dK and dV 2 x (4 + 2 + 4) = 20 -> 30; once: 3 upcasts + 3 downcasts x 6 = 36
    fwd, bwd = ring_merge_bytes("torch-allgather", CP, 1.0)
    assert fwd == pytest.approx(7 * 10 + 12)
    assert bwd == pytest.approx(7 * 30 + 36)
    assert ring_merge_bytes("p2p", CP, 1.0) == (0.0, 0.0)
    assert ring_merge_bytes("torch-allgather", 1, 1.0) == (0.0, 0.0)
    assert ring_merge_bytes("allgather", CP, 1.0) == (0.0, 0.0)  # Llama 3's all-gather CP: no merge pass described


def test_allgather_ring_overlap_by_hand():
    # c = 4, all-gather 30 ms, one fp32 dK/dV send 10 ms, attention 80 ms forward / 200 ms backward, overlap 0.85:
    # forward: 30 ms under step 0 (80/4 = 20 ms): 10 ms sticks out + 0.15 x 20 = 13 ms
    # backward: all-gather under 50 ms: 0.15 x 30 = 4.5 ms; 3 sends under 50 ms each: 3 x 1.5 = 4.5 ms; last 10 ms
    fwd, bwd, total = ring_comm_s("torch-allgather", 4, 0.0, 0.030, 0.010, 0.080, 0.200, 0.85)
    assert fwd == pytest.approx(0.013)
    assert bwd == pytest.approx(0.0045 + 0.0045 + 0.010)
    assert total == pytest.approx(2 * 0.030 + 4 * 0.010)
    # p2p: 3 block sends of 10 ms under 80 ms (0.15 x 30), 6 under 200 ms (0.15 x 60)
    fwd, bwd, total = ring_comm_s("p2p", 4, 0.010, 0.0, 0.0, 0.080, 0.200, 0.85)
    assert (fwd, bwd, total) == pytest.approx((0.0045, 0.009, 0.09))
    # Llama 3's all-gather CP: the 30 ms all-gather exposed forward, again backward with a 25 ms reduce-scatter
    fwd, bwd, total = ring_comm_s("allgather", 4, 0.010, 0.030, 0.010, 0.080, 0.200, 0.85, 0.025)
    assert (fwd, bwd, total) == pytest.approx((0.030, 0.055, 0.085))


def _layer(stack):
    gpu = load_gpu("h100-sxm")
    cost = ModelCost(load_model("llama3.1-8b"), gpu, load_system("dgx-h100"), SEQ, "bf16", Efficiencies(stack=stack))
    return cost, cost.layer(0, 1, 1, CP, 1, False)


def test_torchtitan_ring_moves_query_heads_and_fp32_grads():
    # llama3.1-8b: 32 query heads, 8 KV heads, head dim 128; s/c = 32,768; bf16 K and V after repeat_kv:
    # block = 32,768 x 32 x 2 x 128 x 2 B = 536,870,912 B. dgx-h100 NVLink 450 GB/s, 3 us, NCCL efficiency 0.8.
    block = 32768 * 32 * 2 * 128 * 2
    gather = 7 * 3e-6 + 7 / 8 * (8 * block) / (450e9 * 0.8)  # ring all-gather of the 8 blocks
    grad_send = 3e-6 + 2 * block / (450e9 * 0.8)  # fp32 dK/dV: twice the bf16 block
    cost, lc = _layer("fsdp")
    assert lc.cp_total == pytest.approx(2 * gather + 8 * grad_send, rel=1e-9)
    # merge traffic: elements of the output 32,768 x 32 x 128, (7 x 10 + 12) B forward, at the HBM rate / e_stack
    elements = 32768 * 32 * 128
    assert lc.ring_merge_fwd == pytest.approx(82 * elements / cost.hbm * cost.kernel_scale, rel=1e-9)
    assert lc.ring_merge_bwd == pytest.approx(246 * elements / cost.hbm * cost.kernel_scale, rel=1e-9)


def test_megatron_ring_moves_kv_heads_unchanged():
    # Transformer Engine rings the 8 KV heads: 32,768 x 8 x 2 x 128 x 2 B = 134,217,728 B per p2p step;
    # 7 forward + 14 backward sends; no merge traffic counted
    step = 3e-6 + 32768 * 8 * 2 * 128 * 2 / (450e9 * 0.8)
    _, lc = _layer("megatron")
    assert lc.cp_total == pytest.approx(21 * step, rel=1e-9)
    assert lc.ring_merge_fwd == lc.ring_merge_bwd == 0.0


def test_cp_comm_override_and_unknown():
    gpu = load_gpu("h100-sxm")
    cost = ModelCost(load_model("llama3.1-8b"), gpu, load_system("dgx-h100"), SEQ, "bf16",
                     Efficiencies(stack="fsdp", cp_comm="p2p"))
    _, megatron = _layer("megatron")
    assert cost.layer(0, 1, 1, CP, 1, False).cp_total == pytest.approx(megatron.cp_total)
    with pytest.raises(Exception, match="cp-comm"):
        Efficiencies(cp_comm="bogus").resolved_cp_comm()


def test_a_ring_that_leaves_the_node_waits_on_the_nic():
    # llama3.1-8b at TP4 CP4 on dgx-h100 (8 GPUs a node, ranks TP fastest): CP ranks 0, 1 sit in node 0, 2, 3 in node 1,
    # so the ring's 1 -> 2 and 3 -> 0 hops cross the 400 Gb/s NIC (50 GB/s, 10 us) and every step waits on them.
    # Transformer Engine's block: s/c = 65,536 x 2 KV heads per TP rank x 2 x 128 x 2 B = 67,108,864 B; 3 forward + 6
    # backward sends. At TP2 CP4 the same ring holds 8 GPUs (one node): NVLink 450 GB/s, 3 us, block twice as wide.
    cost = ModelCost(load_model("llama3.1-8b"), load_gpu("h100-sxm"), load_system("dgx-h100"), SEQ, "bf16",
                     Efficiencies(stack="megatron"))
    nic_step = 1e-5 + 65536 * 2 * 2 * 128 * 2 / (50e9 * 0.8)
    assert cost.layer(0, 1, 4, 4, 1, True).cp_total == pytest.approx(9 * nic_step, rel=1e-9)
    nvlink_step = 3e-6 + 65536 * 4 * 2 * 128 * 2 / (450e9 * 0.8)
    assert cost.layer(0, 1, 2, 4, 1, True).cp_total == pytest.approx(9 * nvlink_step, rel=1e-9)
