"""The types of the activation model (calc.memory.activations): one saved tensor of a layer (``Buffer``) and what
decides which tensors a block keeps (``LayerSetup``), apart so that the hybrid layers' module
(calc.memory.hybrid_layers) builds on them below calc.memory.activations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Attention = Literal["flash", "eager"]


@dataclass(frozen=True)
class Buffer:
    """One saved tensor (or group of them) of one layer: bytes for the whole micro-batch, its formula, its source."""

    name: str
    bytes: int
    formula: str
    source: str
    one_layer: int = 0  # where ``bytes`` is a hybrid's mean over its layers (calc.memory.hybrid_layers): one layer's


@dataclass(frozen=True)
class LayerSetup:
    """What decides which tensors autograd keeps in one block.

    ``trainable``: matrix names whose weight gets a gradient (every one for a full fine-tune) and
    ``adapted``: matrices with a LoRA adapter (their input is kept for the adapter's A). A frozen matrix
    with neither keeps no input: PyTorch saves mm's input only when the weight needs a gradient
    (torch/csrc/autograd/FunctionsManual, mm_mat2_backward; tools/autograd/derivatives.yaml).
    ``quantized``: the frozen linears are bitsandbytes 4-/8-bit layers (QLoRA). Their autograd function
    keeps its input whenever that input needs a gradient, which it does as soon as any adapter sits upstream
    (bitsandbytes autograd/_functions.py MatMul4Bit.forward: ``if any(ctx.needs_input_grad[:2]): ctx.tensors =
    (A, B)``; MatMul8bitLt likewise keeps A), so every quantized linear's input is saved, trained or not.
    ``litgpt``: the block as litgpt writes it (lit_gpt/model.py, lora.py, rmsnorm.py at commit 8641822, the code of
    its published resource tables; ``litgpt_buffers``).
    ``adapter_copy_bytes``: 0 when the adapters are in the block's dtype and read its input as it is (litgpt,
    torchtune): one saved input serves the frozen matrices' adapters. PEFT casts the input of each adapted layer to
    the adapter's dtype (peft 0.20 tuners/lora/layer.py Linear.forward: ``x = self._cast_input_dtype(x,
    lora_A.weight.dtype)``; tuners_utils.py ``_cast_input_dtype``: ``x.to(dtype=dtype)`` when the dtypes differ), and
    keeps its adapters in fp32 on a bf16 base (``autocast_adapter_dtype=True``, the default): every adapted matrix then
    keeps its own copy of its input, 4 B an element without autocast, 2 B under bf16 autocast (lora_A's linear casts
    the fp32 copy back and keeps that); the block's bf16 input is no longer kept for them.
    ``recompute_modules``: Megatron-Core's ``--recompute-modules`` under selective recomputation (``module_buffers``).
    ``gemm_input_bytes``: bytes per element of a saved GEMM input when the linears keep it quantized (Transformer
    Engine under fp8: calc.training.fp8_recipe.saved_gemm_input_bytes); 0: the activation dtype's ``act_bytes``.
    ``offload_modules``: Megatron-Core's fine-grained activation offloading (``offloaded_buffers``).
    """

    full: bool = True
    adapted: frozenset[str] = frozenset()
    lora_rank: int = 0
    lora_dropout: float = 0.0
    dora: bool = False
    attention: Attention = "flash"
    fused: bool = True
    dropout: float = 0.0
    act_bytes: int = 2
    tp: int = 1
    sp: bool = False
    quantized: bool = False
    litgpt: bool = False
    adapter_copy_bytes: int = 0
    residual_bytes: int = 0  # bytes of the residual stream when not act_bytes (fp32 after PEFT's kbit preparation)
    kv_repeated: bool = False  # K and V copied out to every query head before attention (``layer_buffers``)
    recompute_modules: frozenset[str] = frozenset()
    gemm_input_bytes: float = 0.0
    offload_modules: frozenset[str] = frozenset()

    def keeps_input(self, *names: str) -> bool:
        return self.full or self.quantized or any(n in self.adapted for n in names)

    def keeps_block_input(self, *names: str) -> bool:
        """The block's own input to these matrices is saved: a trained or 4-bit matrix keeps it, an adapter only when
        it reads that input uncast (``adapter_copy_bytes`` 0; PEFT's casts keep copies instead, ``layer_buffers``)."""
        return self.full or self.quantized or (not self.adapter_copy_bytes and any(n in self.adapted for n in names))
