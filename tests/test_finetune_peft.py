"""PEFT's adapter-input casts and DoRA's saved tensors: numbers worked out by hand from peft 0.20 tuners/lora/layer.py
(Linear.forward casts each adapted layer's input to the adapter dtype) and tuners/lora/dora.py (DoraLinearLayer)."""

from __future__ import annotations

import pytest

from calc.errors import LLMCalcError
from calc.memory.activations import LayerSetup, layer_buffers
from calc.memory.finetune import dora_norm_temporaries, finetune_memory
from calc.model.lora import parse_targets
from calc.sources.catalog import load_model

QV = frozenset({"q_proj", "v_proj"})


@pytest.fixture(scope="module")
def llama32():
    return load_model("llama3.2-3b")  # H 3072, 24 heads x 128, 8 KV heads (k/v out 1024), I 8192, 28 layers


def _bufs(m, setup, tokens=3072):
    return {b.name: b.bytes for b in layer_buffers(m, 1, tokens, setup)}


def test_fp32_casts_replace_the_shared_input(llama32):
    # q and v adapted, 3,072 tokens. Shared (bf16 adapters): the norm output once, 3072*3072*2 = 18,874,368 B.
    # PEFT fp32 adapters without autocast: q's and v's own fp32 copies, 3072*(3072 + 3072)*4 = 75,497,472 B, and the
    # shared bf16 norm output is no longer kept (the frozen linears need no input); A x in fp32: 3072*2*32*4 = 786,432
    shared = _bufs(llama32, LayerSetup(full=False, adapted=QV, lora_rank=32, fused=False))
    fp32 = _bufs(llama32, LayerSetup(full=False, adapted=QV, lora_rank=32, fused=False, adapter_copy_bytes=4))
    assert shared["q/k/v input (norm output)"] == 18_874_368
    assert "LoRA input copies (cast to the adapter dtype)" not in shared
    assert "q/k/v input (norm output)" not in fp32
    assert fp32["LoRA input copies (cast to the adapter dtype)"] == 75_497_472
    assert fp32["LoRA A x (adapter intermediates)"] == 786_432
    # one block differs by 75,497,472 - 18,874,368 + (786,432 - 393,216) = 57,016,320 B
    assert sum(fp32.values()) - sum(shared.values()) == 57_016_320


def test_autocast_copies_and_mlp_targets(llama32):
    # gate, up, down at r 10 under bf16 autocast: each keeps a bf16 copy of its input: 3072*(3072 + 3072 + 8192)*2
    # = 88,080,384 B; neither the norm output nor the down input (act(gate)*up) is kept for the frozen matrices
    s = LayerSetup(full=False, adapted=frozenset({"gate_proj", "up_proj", "down_proj"}), lora_rank=10, fused=False,
                   adapter_copy_bytes=2)
    b = _bufs(llama32, s)
    assert b["LoRA input copies (cast to the adapter dtype)"] == 88_080_384
    assert "gate/up input (norm output)" not in b and "down input (act(gate)*up)" not in b


def test_quantized_base_keeps_its_input_beside_the_copies(llama32):
    # bitsandbytes MatMul4Bit keeps the 4-bit linear's own input: the shared norm output stays, 3072*3072*2
    s = LayerSetup(full=False, adapted=QV, lora_rank=8, quantized=True, adapter_copy_bytes=4)
    b = _bufs(llama32, s)
    assert b["q/k/v input (norm output)"] == 18_874_368
    assert b["LoRA input copies (cast to the adapter dtype)"] == 75_497_472


def test_dropout_under_the_cast_keeps_the_dropped_copy_and_a_mask(llama32):
    # the dropped fp32 copy is what lora_A keeps (counted as the copy) plus a 1-byte mask: 3072*6144*1 = 18,874,368
    s = LayerSetup(full=False, adapted=QV, lora_rank=8, lora_dropout=0.1, adapter_copy_bytes=4)
    b = _bufs(llama32, s)
    assert b["LoRA dropout masks"] == 18_874_368
    assert "LoRA dropout copies + masks" not in b


def test_dora_saves_base_and_adapter_outputs(llama32):
    # (mag_norm_scale - 1) * base_result keeps base_result (bf16), mag_norm_scale * lora_result keeps lora_result
    # (fp32 under PEFT's cast): 3072 tokens x (q 3072 + v 1024) outputs x (2 + 4) = 75,497,472 B
    s = LayerSetup(full=False, adapted=QV, lora_rank=32, dora=True, adapter_copy_bytes=4)
    assert _bufs(llama32, s)["DoRA base + adapter outputs (for the magnitude)"] == 75_497_472


def test_dora_norm_temporaries(llama32):
    # largest adapted matrix q_proj 3072 x 3072; fp32: eye 4*3072^2 + lora_weight, weight.to(fp32), scaled, sum
    # 4*4*3072^2 = 5*37,748,736 = 188,743,680 B; bf16 adapters on the bf16 base (no cast copy): 2*(1 + 3)*3072^2
    # = 75,497,472 B
    qv = parse_targets("q,v")
    assert dora_norm_temporaries(llama32, qv, 4) == 188_743_680
    assert dora_norm_temporaries(llama32, qv, 2) == 75_497_472


def test_peak_moves_by_the_copies(llama32):
    # whole model, 28 blocks: the fp32 casts add 28 x 57,016,320 = 1,596,456,960 B to the forward end (the peak here),
    # times the allocator's 1.05 in the reserved figure
    kw = dict(method="lora", lora_rank=32, lora_targets="q,v", batch=4, seq=768, suggest=False)
    shared = finetune_memory(llama32, **kw)
    fp32 = finetune_memory(llama32, adapter_inputs="fp32", **kw)
    assert fp32.allocated_peak_bytes - shared.allocated_peak_bytes == 28 * 57_016_320
    with pytest.raises(LLMCalcError, match="--adapter-inputs"):
        finetune_memory(llama32, adapter_inputs="fp16", **kw)


def test_eager_rmsnorm_keeps_the_weight_operand_when_the_weight_trains(llama32):
    # HF LlamaRMSNorm: fp32 upcast 4*H + 1/rms 4 B per token; a trained weight also keeps the bf16 normalised input
    # (self.weight * hidden_states.to(input_dtype)): + 2*H. 3,072 tokens: 3072*(4*3072 + 4 + 2*3072) = 56,635,392 B;
    # frozen (LoRA): 3072*(4*3072 + 4) = 37,761,024 B
    full = _bufs(llama32, LayerSetup(full=True, fused=False))
    lora = _bufs(llama32, LayerSetup(full=False, adapted=QV, lora_rank=8, fused=False))
    assert full["attn norm input"] == 56_635_392 and full["mlp norm input"] == 56_635_392
    assert lora["attn norm input"] == 37_761_024


def test_prepare_kbit_casts_the_rest_to_fp32_and_the_checkpoints():
    # Llama 2 7B: block linears 32 x (4*4096^2 + 3*4096*11008) = 6,476,005,376; rest (embedding + head 2*32000*4096,
    # norms 65*4096) = 262,410,240. prepare_model_for_kbit_training casts the rest to fp32: + 262,410,240*2 =
    # 524,820,480 B of weights. Checkpointed layer inputs at seq 1024: 32 x 1024*4096*(4 - 2) = 268,435,456 B more.
    m = load_model("llama2-7b")
    kw = dict(method="qlora", batch=1, seq=1024, recompute="full", suggest=False)
    plain = finetune_memory(m, **kw)
    prep = finetune_memory(m, prepare_kbit=True, **kw)
    assert prep.per_gpu["weights"] - plain.per_gpu["weights"] == 524_820_480
    assert prep.activation_bytes - plain.activation_bytes == 268_435_456
    with pytest.raises(LLMCalcError, match="--prepare-kbit"):
        finetune_memory(m, method="lora", prepare_kbit=True, suggest=False)


def test_repeated_kv_keeps_k_and_v_at_every_query_head(llama32):
    # Llama 3.2 3B: 24 query heads, 8 KV heads, d 128. SDPA with GQA keeps Q, K, V: 3072*(24 + 2*8)*128*2 = 31,457,280 B;
    # after repeat_kv K and V have 24 heads each: 3072*3*24*128*2 = 56,623,104 B
    plain = _bufs(llama32, LayerSetup(full=False, adapted=QV, lora_rank=8))
    rep = _bufs(llama32, LayerSetup(full=False, adapted=QV, lora_rank=8, kv_repeated=True))
    assert plain["Q, K, V after RoPE"] == 31_457_280
    assert rep["Q, K, V after RoPE"] == 56_623_104
    # an MHA model (Llama 2 7B, 32 = 32 heads) has nothing to repeat: 1024*(3*4096)*2 = 25,165,824 B either way
    l2 = load_model("llama2-7b")
    assert _bufs(l2, LayerSetup(kv_repeated=True), 1024)["Q, K, V after RoPE"] == 25_165_824


def test_qlora_under_autocast_shares_the_input(llama32):
    # PEFT's bnb Linear4bit LoRA casts the adapter input only without autocast: q,v at 3,072 tokens, fp32 copies
    # 3072*6144*4 = 75,497,472 B more than autocast, where the adapters read the 4-bit layer's own bf16 input
    kw = dict(method="qlora", lora_rank=8, lora_targets="q,v", batch=1, seq=3072, suggest=False)
    auto = finetune_memory(llama32, adapter_inputs="autocast", **kw)
    shared = finetune_memory(llama32, adapter_inputs="shared", **kw)
    fp32 = finetune_memory(llama32, adapter_inputs="fp32", **kw)
    assert auto.per_gpu_bytes == shared.per_gpu_bytes
    # A x in fp32 too: 3072*2*8*(4 - 2) = 98,304 B; 28 blocks
    assert fp32.allocated_peak_bytes - shared.allocated_peak_bytes == 28 * (75_497_472 + 98_304)
