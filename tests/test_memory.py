"""Memory with hand-worked values (reference section 3)."""

from __future__ import annotations

import pytest

from calc.memory import inference_memory, korthikanti_layer_bytes, kv_cache_bytes_per_token, training_memory
from calc.sources.catalog import load_gpu, load_model
from calc.specs import Parallelism


def test_llama2_70b_kv_cache() -> None:
    # 80 layers x 8 KV heads x 128 x 2 (K, V) x 2 bytes = 327,680 B/token; x 4000 = 1,310,720,000.
    m = load_model("llama2-70b")
    assert kv_cache_bytes_per_token(m, "fp16") == 327_680
    assert inference_memory(m, batch=1, seq=4000).kv_cache_bytes == 1_310_720_000


def test_kv_heads_split_then_replicated() -> None:
    # Llama-2-70B has 8 KV heads: TP 4 holds 2 per GPU, TP 16 replicates to 1 per GPU.
    m = load_model("llama2-70b")
    assert kv_cache_bytes_per_token(m, "fp16", tp=4) == 327_680 // 4
    assert kv_cache_bytes_per_token(m, "fp16", tp=16) == 327_680 // 8


def test_mla_and_mqa_kv() -> None:
    # DeepSeek-V3: 61 x (512 + 64) x 2 bytes = 70,272 B/token. Falcon-7B MQA: 2*32*1*64*2 = 8,192.
    assert kv_cache_bytes_per_token(load_model("deepseek-v3"), "bf16") == 70_272
    assert kv_cache_bytes_per_token(load_model("falcon-7b"), "bf16") == 8_192


def test_int4_weights_with_group_scales() -> None:
    # Llama-2-7B int4: the 32 x (4 x 4096^2 + 3 x 4096 x 11008) = 6,476,005,376 block weights at 1/2 B = 3,238,002,688
    # + one fp16 scale per 128 of them, 2 x 6,476,005,376 / 128 = 101,187,584; embedding and head 2 x 32000 x 4096 and
    # the 65 norms x 4096 stay bf16: 2 x 262,410,240 = 524,820,480 -> 3,864,010,752.
    r = inference_memory(load_model("llama2-7b"), dtype="int4", group_size=128)
    assert r.weights_bytes == 3_864_010_752


def test_llama2_7b_training_states_and_zero1() -> None:
    # bf16 Adam: 16 B/param -> 107,814,649,856 before ZeRO; ZeRO-1 over DP 4 keeps weights 2N and
    # grads 2N whole and a quarter of the 12N optimizer: 12*6,738,415,616/4 = 20,215,246,848.
    n = 6_738_415_616
    # (with gradient accumulation the gradients persist through the step, so they show whole)
    r = training_memory(load_model("llama2-7b"), plan=Parallelism(dp=4), zero=1, grad_accum=4)
    assert r.weights_bytes + r.gradient_bytes + r.optimizer_bytes == 16 * n
    assert r.per_gpu["optimizer"] == 12 * n // 4
    assert r.per_gpu["weights"] == 2 * n and r.per_gpu["gradients"] == 2 * n


def test_zero3_shards_everything() -> None:
    n = 6_738_415_616
    r = training_memory(load_model("llama2-7b"), plan=Parallelism(dp=8), zero=3, grad_accum=2)
    assert r.per_gpu["weights"] + r.per_gpu["gradients"] + r.per_gpu["optimizer"] == 16 * n // 8


# Worked example (Korthikanti et al. 2022 table 2) for GPT-3 175B-like shapes:
# s = 2048, b = 1, h = 12288, a = 96, t = 8. sbh = 25,165,824; 5as/h = 80.
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"tp": 1}, 25_165_824 * (34 + 80)),                                     # no parallelism
        ({"tp": 8}, 25_165_824 * (10 + 24 / 8 + 80 / 8)),                        # TP: 23 * sbh
        ({"tp": 8, "sequence_parallel": True}, 25_165_824 / 8 * (34 + 80)),      # TP + SP
        ({"tp": 8, "recompute": "selective"}, 25_165_824 * (10 + 24 / 8)),       # selective, TP
        ({"tp": 8, "sequence_parallel": True, "recompute": "selective"}, 25_165_824 * 34 / 8),
        ({"tp": 8, "recompute": "full"}, 2 * 25_165_824),                        # full recompute
        ({"tp": 1, "flash": True}, 25_165_824 * 34),                             # FlashAttention
    ],
)
def test_korthikanti_per_layer(kwargs: dict, expected: float) -> None:
    assert korthikanti_layer_bytes(2048, 1, 12288, 96, **kwargs) == pytest.approx(expected)


def test_too_large_gives_verdict_and_gpu_count() -> None:
    # 70B fp16 = 137.95 GB of weights cannot sit on one 80 GiB A800; two hold it.
    r = inference_memory(load_model("llama2-70b"), gpu=load_gpu("a800"), seq=4000)
    assert r.fits is False and r.headroom_bytes_per_gpu < 0
    assert r.min_gpus == 2


def test_tp_must_divide_heads() -> None:
    from calc.errors import LLMCalcError

    with pytest.raises(LLMCalcError, match="--tp: 3 does not divide the 32 attention heads"):
        inference_memory(load_model("llama2-7b"), plan=Parallelism(tp=3))
