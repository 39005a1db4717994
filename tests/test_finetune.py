"""Fine-tuning memory: numbers worked out by hand in the comments (issue 16 acceptance)."""

from __future__ import annotations

import pytest

from calc.errors import LLMCalcError
from calc.memory.activations import LayerSetup, layer_buffers, lm_head_buffers, stage_activations
from calc.memory.finetune import finetune_memory, nf4_bytes
from calc.memory.optimizers import optimizer_state_bytes
from calc.model.lora import lora_params, parse_targets
from calc.sources.catalog import load_model
from calc.specs import Parallelism


@pytest.fixture(scope="module")
def llama2():
    return load_model("llama2-7b")


@pytest.fixture(scope="module")
def llama3():
    return load_model("llama3-8b")


def test_lora_rank8_qv_llama2_7b(llama2):
    # 32 layers x 2 matrices (q, v) x r*(d_in + d_out) = 32 * 2 * 8 * (4096 + 4096) = 4,194,304 (LoRA paper / PEFT print)
    assert lora_params(llama2, 8, "q,v").trainable_params == 4_194_304


def test_lora_rank16_all_linear_llama2_7b(llama2):
    # per layer: q,k,v,o 4 * 16*(4096+4096) = 524,288; gate, up 2 * 16*(4096+11008) = 483,328; down 16*(11008+4096)
    # = 241,664 -> 1,249,280; x 32 layers = 39,976,960 (PEFT's "trainable params: 39,976,960" for this setting)
    r = lora_params(llama2, 16, "all-linear")
    assert r.trainable_params == 39_976_960
    assert r.by_group["q"] == 32 * 16 * 8192 and r.by_group["down"] == 32 * 241_664


def test_dora_adds_one_magnitude_per_output_column(llama2):
    # DoRA on q,v: LoRA 4,194,304 + 32 layers x 2 matrices x d_out 4096 = 4,456,448
    assert lora_params(llama2, 8, "q,v", dora=True).trainable_params == 4_194_304 + 32 * 2 * 4096


def test_lora_targets_are_checked(llama2):
    with pytest.raises(LLMCalcError, match="--lora-targets"):
        parse_targets("q,foo")
    with pytest.raises(LLMCalcError, match="experts"):
        lora_params(llama2, 8, "experts")


def test_nf4_double_quant_bytes():
    # llama3-8b block linears: 32 x (q 4096^2 + k,v 2*4096*1024 + o 4096^2 + 3*4096*14336) = 6,979,321,856 weights
    # 4 bits: 3,489,660,928 B; 109,051,904 blocks of 64 -> 1 B each; 425,984 groups of 256 blocks -> fp32 each 1,703,936 B
    assert nf4_bytes(6_979_321_856) == 3_489_660_928 + 109_051_904 + 1_703_936
    # without double quantisation the absmax stays fp32: 4 B per 64 weights
    assert nf4_bytes(6_979_321_856, double_quant=False) == 3_489_660_928 + 4 * 109_051_904


def test_qlora_weight_bytes_llama3_8b(llama3):
    # NF4 linears 3,600,416,768 + bf16 rest (2 x 525,336,576 embedding/head + 266,240 norms) 1,050,939,392*2
    # + bf16 adapters r8 on q,v: 32*(8*(4096+4096) + 8*(4096+1024)) = 3,407,872 params * 2
    r = finetune_memory(llama3, method="qlora", lora_targets="q,v", batch=1, seq=16)
    assert r.trainable_params == 3_407_872
    assert r.per_gpu["weights"] == 3_600_416_768 + 2_101_878_784 + 6_815_744


def test_one_swiglu_gqa_layer_with_flash_attention(llama3):
    # llama3-8b, b=1, s=2048 tokens, bf16, full fine-tune, fused elementwise:
    #   2 norm inputs 2 * 2048*(4096*2 + 4)              = 33,570,816
    #   q/k/v input, gate/up input 2 * 2048*4096*2         = 33,554,432
    #   Q, K, V after RoPE 2048*(32+8+8)*128*2             = 25,165,824
    #   attention output 2048*4096*2                        = 16,777,216
    #   log-sum-exp 2048*32*4                               =    262,144
    #   gate, up outputs 2048*2*14336*2                     = 117,440,512
    #   down input 2048*14336*2                             =  58,720,256
    #   total                                                 285,491,200
    bufs = layer_buffers(llama3, 1, 2048, LayerSetup(full=True, fused=True))
    assert sum(b.bytes for b in bufs) == 285_491_200
    named = {b.name: b.bytes for b in bufs}
    assert named["Q, K, V after RoPE"] == 25_165_824 and named["log-sum-exp (fp32)"] == 262_144


def test_frozen_base_keeps_only_adapted_inputs(llama3):
    # LoRA on q,v only: no down-projection input (frozen, no adapter) but gate/up outputs stay (SwiGLU backward);
    # adapter intermediates: 2 adapters x r=8 x 2048 tokens x 2 B = 65,536
    bufs = {b.name: b.bytes for b in layer_buffers(llama3, 1, 2048, LayerSetup(full=False, adapted=frozenset({"q_proj", "v_proj"}),
                                                                             lora_rank=8, fused=True))}
    assert "down input (act(gate)*up)" not in bufs and "gate/up input (norm output)" not in bufs
    assert bufs["MLP up outputs (gate, up)"] == 117_440_512
    assert bufs["LoRA A x (adapter intermediates)"] == 65_536


def test_eager_attention_keeps_the_score_matrix(llama3):
    # b=1, h=32, s=1024: softmax values 32*1024*1024*2 B = 67,108,864
    bufs = {b.name: b.bytes for b in layer_buffers(llama3, 1, 1024, LayerSetup(attention="eager"))}
    assert bufs["softmax(QK^T) scores"] == 67_108_864


def test_logits_memory_at_vocab_128256(llama3):
    # one 8K sequence: B*S*V = 8192*128256 = 1,050,673,152 logits; fp32 alone is 4,202,692,608 B (3.9 GiB).
    # plain loss holds 12 B per logit in its backward (fp32 log-softmax + two fp32 gradients)
    n = 8192 * 128_256
    assert lm_head_buffers(llama3, 1, 8192, "fp32", 8, 2, False)[-1].bytes == 12 * n
    assert lm_head_buffers(llama3, 1, 8192, "chunked", 8, 2, False)[-1].bytes == 2 * n + 12 * n // 8
    assert lm_head_buffers(llama3, 1, 8192, "fused", 8, 2, False)[-1].bytes == 12 * n // 8


def test_optimizer_states():
    # AdamW mixed: m, v fp32 = 8 B; pure bf16: 4 B; SGD / Lion one moment; 8-bit: 2 x (1 + 4/2048)
    assert optimizer_state_bytes("adamw", "bf16", 1000, []) == 4000
    assert optimizer_state_bytes("lion", "mixed", 1000, []) == 4000
    assert optimizer_state_bytes("sgd", "mixed", 1000, []) == 4000
    assert optimizer_state_bytes("paged-adamw8bit", "mixed", 4096, []) == 2 * (4096 + 8)
    # Adafactor: a 1000 x 500 matrix keeps 1000 + 500 fp32 values, a 100-vector keeps 100
    assert optimizer_state_bytes("adafactor", "mixed", 500_100, [(1, 1000, 500)]) == 4 * (1500 + 100)


def test_full_finetune_states_mixed_adamw(llama3):
    # 16 B/param split: bf16 weights 2 + grads 2 + fp32 master 4 + Adam 8; peak takes the larger of
    # forward end (activations) and backward end (gradients), gradients are not live during forward
    r = finetune_memory(llama3, method="full", batch=1, seq=128)
    n = 8_030_261_248
    assert r.per_gpu["weights"] == 2 * n and r.per_gpu["fp32 master"] == 4 * n and r.per_gpu["optimizer states"] == 8 * n
    assert r.trainable_params == n


def test_zero3_shards_everything_and_adds_fsdp_layers(llama3):
    from calc.specs import Parallelism

    r = finetune_memory(llama3, method="full", plan=Parallelism(dp=8), zero=3, batch=1, seq=128)
    n = 8_030_261_248
    assert r.per_gpu["weights"] == -(-2 * n // 8) and r.per_gpu["optimizer states"] == 8 * n // 8
    # in flight: two unsharded blocks (218,112,000 params incl. norms) in bf16 + one block's fp32 gradients
    # = 1,744,896,000 B, or the root unit (embedding + head + final norm = 1,050,677,248 params) in bf16 with
    # its fp32 gradients = 6 B/param = 6,304,063,488 B: the larger is the root
    assert r.per_gpu["FSDP unsharded layers"] == 6 * 1_050_677_248
    # embedding and head sharded as their own units (torchtune custom_sharded_layers): 6 * 525,336,576
    r = finetune_memory(llama3, method="full", plan=Parallelism(dp=8), zero=3, batch=1, seq=128, shard_embeddings_separately=True)
    assert r.per_gpu["FSDP unsharded layers"] == 6 * 525_336_576


def test_paged_optimizer_is_outside_the_allocator(llama3):
    r = finetune_memory(llama3, method="full", optimizer="paged-adamw8bit", precision="bf16", batch=1, seq=128)
    assert "optimizer states" not in r.per_gpu and r.paged_optimizer_bytes == round(2 * 8_030_261_248 * (1 + 4 / 2048))


def test_bad_inputs_are_one_line_errors(llama3):
    for kwargs, flag in (({"method": "adapter"}, "--method"), ({"optimizer": "adam9"}, "--optimizer"),
                         ({"lora_rank": 0}, "--lora-rank"), ({"recompute": "some"}, "--recompute"),
                         ({"optimizer_in_backward": True, "grad_accum": 4}, "--optimizer-in-backward")):
        with pytest.raises(LLMCalcError, match=flag):
            finetune_memory(llama3, **kwargs)


def test_pretraining_memory_uses_per_tensor_activations(llama3):
    from calc.memory import training_memory

    # 32 layers x 285,491,200 B (the layer worked out above) = 9,135,718,400
    # + final norm input 2048*(4096*2 + 4) = 16,785,408 + lm_head input 2048*4096*2 = 16,777,216
    # + max(loss buffers, backward workspace 2 x 117,440,512): Megatron's vocab-parallel CE (the training default)
    # 6 B x 2048 x 128,256 = 1,576,009,728 -> 10,745,290,752; torch CE on fp32 logits 12 B -> 3,152,019,456
    # -> 12,321,300,480; flash-attn's fused CE 4 B -> 1,050,673,152 -> 10,219,954,176
    r = training_memory(llama3, micro_batch=1, seq=2048, fused=True)
    assert r.per_gpu["activations"] == 10_745_290_752
    assert training_memory(llama3, micro_batch=1, seq=2048, fused=True, loss="fp32").per_gpu["activations"] == 12_321_300_480
    assert training_memory(llama3, micro_batch=1, seq=2048, fused=True, loss="flash-ce").per_gpu["activations"] == \
        10_219_954_176
    # the textbook figure stays beside it: Korthikanti with FlashAttention 34*s*b*h per layer + embedding s*b*h
    # + output 4*s*b*h*(1 + V/h) = 32*34*2048*4096 + 2048*4096 + 4*2048*(4096 + 128256)
    assert r.textbook_activation_bytes == 32 * 34 * 2048 * 4096 + 2048 * 4096 + 4 * 2048 * (4096 + 128_256)
    assert training_memory(llama3, micro_batch=1, seq=2048, activations_model="textbook").per_gpu["activations"] == \
        r.textbook_activation_bytes


def test_pipeline_stages_first_holds_p_microbatches_last_holds_the_head(llama3):
    from calc.specs import Parallelism

    # PP 4 with full recomputation: first stage 8 layers x 4 micro-batches of layer inputs (b*s*H*2 = 16,777,216 B each)
    # = 536,870,912 B; last stage 8 x 1 = 134,217,728 B plus the 12 B/logit loss (3,152,019,456 B): the last is larger
    # the last stage's activations: 8 layer inputs + final norm and head inputs + the loss (larger than the workspace)
    r = finetune_memory(llama3, method="full", plan=Parallelism(pp=4), recompute="full", batch=1, seq=2048)
    assert r.per_gpu["activations"] == 8 * 16_777_216 + 16_785_408 + 16_777_216 + 12 * 2048 * 128_256
    # a tiny vocabulary makes the first stage the larger: 32 layer inputs, no head, + the backward workspace
    # (one layer recomputed + dY, dX of its largest tensor). Each rank is priced with its own states beside its own
    # activations; gradients accumulated over 2 micro-batches persist beside them (with one, the peak of every rank is
    # its backward's end, states + gradients, and the last rank's 4,096 more parameters of final norm would bind)
    tiny = llama3.model_copy(update={"vocab_size": 256})
    r = finetune_memory(tiny, method="full", plan=Parallelism(pp=4), recompute="full", batch=1, seq=2048, grad_accum=2)
    setup = LayerSetup(full=True, fused=False)
    workspace = stage_activations(tiny, 1, 2048, setup, "full", 1, 1).backward_workspace
    assert r.per_gpu["activations"] == 32 * 16_777_216 + workspace


def test_lora_dropout_dora_and_moe_buffers(llama2):
    # LoRA on q,v of llama2-7b, 1024 tokens: dropout keeps a bf16 copy + 1-byte mask of each adapter input:
    # 1024 * (4096 + 4096) * 3 = 25,165,824; DoRA keeps each base output and each adapter output (bf16 adapters) for
    # the magnitude: 1024 * 8192 * (2 + 2) = 33,554,432
    s = LayerSetup(full=False, adapted=frozenset({"q_proj", "v_proj"}), lora_rank=8, lora_dropout=0.05, dora=True)
    bufs = {b.name: b.bytes for b in layer_buffers(llama2, 1, 1024, s)}
    assert bufs["LoRA dropout copies + masks"] == 25_165_824
    assert bufs["DoRA base + adapter outputs (for the magnitude)"] == 33_554_432
    # Mixtral (top-2 of 8 experts), full fine-tune: one extra copy of each token's hidden state (1024*4096*2)
    # and fp32 router probabilities 1024*8*4
    mix = {b.name: b.bytes for b in layer_buffers(load_model("mixtral-8x7b"), 1, 1024, LayerSetup())}
    assert mix["MoE routed token copies (expert inputs)"] == 8_388_608
    assert mix["router probabilities (fp32)"] == 32_768


def test_every_catalog_model_finetunes():
    import pathlib

    import calc

    root = pathlib.Path(calc.__file__).parent.parent / "model_configs"
    for path in sorted(root.glob("*.yaml")):
        m = load_model(path.stem)
        lora = finetune_memory(m, method="lora", lora_targets="all-linear", batch=1, seq=256)
        qlora = finetune_memory(m, method="qlora", lora_targets="all-linear", batch=1, seq=256)
        full = finetune_memory(m, method="full", batch=1, seq=256)
        assert 0 < lora.trainable_params < lora.total_params, m.name
        # NF4 base < bf16 base; adapters + frozen base < full fine-tune states
        assert qlora.per_gpu["weights"] < lora.per_gpu["weights"] < full.per_gpu_bytes, m.name


def test_offload_and_gradient_accumulation(llama3):
    from calc.specs import Parallelism

    n = 8_030_261_248
    # ZeRO-3 over 4 with the optimizer offloaded: fp32 master 4N/4 + Adam 8N/4 = 3N bytes leave the GPU
    r = finetune_memory(llama3, method="full", plan=Parallelism(dp=4), zero=3, offload_optimizer=True, batch=1, seq=128)
    assert "optimizer states" not in r.per_gpu and "fp32 master" not in r.per_gpu
    assert r.cpu_offload_bytes == 4 * n // 4 + 8 * n // 4
    # parameters offloaded too: weights and gradients also live on the CPU, the GPU keeps the FSDP units in flight
    r = finetune_memory(llama3, method="full", plan=Parallelism(dp=4), zero=3, offload_params=True, batch=1, seq=128)
    assert r.per_gpu["weights"] == 0 and r.per_gpu["gradients"] == 0 and r.per_gpu["FSDP unsharded layers"] > 0
    # gradient accumulation keeps bf16 gradients (2N) alive through every micro-batch's forward
    r = finetune_memory(llama3, method="full", grad_accum=4, batch=1, seq=128)
    assert r.per_gpu["gradients"] == 2 * n


def test_mla_latents_are_kept():
    # DeepSeek-V3: q latent 1536 + kv latent 512; full fine-tune keeps each latent's norm input and its normed
    # up-projection input: 1024 tokens * (1536 + 512) * 2 tensors * 2 B = 8,388,608
    bufs = {b.name: b.bytes for b in layer_buffers(load_model("deepseek-v3"), 1, 1024, LayerSetup())}
    assert bufs["MLA latents (norm inputs + up-projection inputs)"] == 8_388_608


def test_parallel_block_shares_one_norm_output_and_plain_mlp_keeps_no_extra_activation():
    # GPT-J (parallel block, one LayerNorm, GELU MLP): one norm input, one shared q/k/v + MLP input, and the GELU
    # output is the down-projection input (kept once, eager or fused)
    bufs = {b.name for b in layer_buffers(load_model("gpt-j-6b"), 1, 256, LayerSetup(fused=False))}
    assert "attn norm input" in bufs and "mlp norm input" not in bufs
    assert "q/k/v input (norm output)" in bufs and "gate/up input (norm output)" not in bufs
    assert "down input (act(up))" in bufs and not any(n.startswith("activation output") for n in bufs)
    # Gemma 2 sandwich norms: four norm inputs per layer
    gemma = [b.name for b in layer_buffers(load_model("gemma2-9b"), 1, 256, LayerSetup())]
    assert sum(n.endswith("norm input") or n.startswith("post-norm") for n in gemma) == 4


def test_qlora_keeps_every_quantized_linear_input():
    """bitsandbytes MatMul4Bit saves its input A whenever it needs a gradient (an adapter upstream), so a QLoRA block
    keeps, beyond LoRA on q,v: the gate/up input (H), the down input (I) and the contiguous copy of O that o_proj
    reads (H). Llama 2 7B (H 4096, I 11008), 1 x 1000 tokens, bf16: 1000*(4096 + 4096 + 11008)*2 = 38,400,000 B."""
    m = load_model("llama2-7b")
    adapted = frozenset({"q_proj", "v_proj"})
    lora = sum(b.bytes for b in layer_buffers(m, 1, 1000, LayerSetup(full=False, adapted=adapted, lora_rank=8, fused=False)))
    qlora = sum(b.bytes for b in layer_buffers(m, 1, 1000, LayerSetup(full=False, adapted=adapted, lora_rank=8, fused=False,
                                                                      quantized=True)))
    assert qlora - lora == 38_400_000


def test_qlora_peak_above_lora_minus_weight_savings():
    """The QLoRA peak is the LoRA peak less the NF4 weight savings plus the extra saved inputs: on Llama 2 7B the
    block linears (32 x 202,375,168 = 6,476,005,376 params) save 2 - (1/2 + 1/64 + 4/16384) B each."""
    m = load_model("llama2-7b")
    kw = dict(lora_targets="q,v", batch=1, seq=1000, precision="bf16")
    lora, qlora = finetune_memory(m, method="lora", **kw), finetune_memory(m, method="qlora", **kw)
    linears = 32 * 202_375_168
    nf4 = linears // 2 + linears // 64 + 4 * -(-linears // 64 // 256)
    saved_inputs = 32 * 38_400_000
    dequant = 11008 * 4096 * 2  # one dequantised matrix in bf16 while its matmul runs
    expected = lora.allocated_peak_bytes - (2 * linears - nf4) + saved_inputs + dequant
    assert abs(qlora.allocated_peak_bytes - expected) <= 0.002 * expected


def test_lightning_fsdp_gathered_load_peak() -> None:
    """litgpt's multi-GPU LoRA (Lightning FSDP, bf16-true) loads the checkpoint by gathering every weight first
    (lightning/fabric/strategies/fsdp.py _load_raw_module_state). llama2-7b: 6,738,415,616 parameters (Meta's count)
    + LoRA r=8 on q, v: 2 x 32 layers x 8 x (4096 + 4096) = 4,194,304; all in bf16: 13,485,219,840 B whole on each GPU
    + its own shard of 2 GPUs 6,742,609,920 = 20,227,829,760 B allocated, above the step's own peak; x 1.05
    (allocator) + 0.5 GiB context = 21,239,221,248 + 536,870,912 = 21,776,092,160 B (litgpt's resource table measured
    22.18 GB with max_memory_allocated)."""
    from calc.memory.finetune import GATHERED_LOAD, finetune_memory

    m = load_model("llama2-7b")
    job = dict(plan=Parallelism(dp=2), method="lora", precision="bf16", zero=3, recompute="full", seq=1304, batch=1)
    r = finetune_memory(m, **job, gathered_load=True)
    assert r.per_gpu["weights"] == 6_742_609_920
    assert r.per_gpu_bytes == 21_776_092_160
    assert sum(v for k, v in r.per_gpu.items() if k not in ("allocator fragmentation", "CUDA context")) == 20_227_829_760
    plain = finetune_memory(m, **job)
    assert GATHERED_LOAD not in plain.per_gpu and plain.per_gpu_bytes < r.per_gpu_bytes
    # one GPU: nothing is sharded, nothing gathered
    assert GATHERED_LOAD not in finetune_memory(m, method="lora", precision="bf16", seq=1304, gathered_load=True).per_gpu
