"""Typed inputs, kept apart as calculon does: *what model* (ModelSpec), *what hardware* (GPUSpec)
and *how it is run* (Parallelism). Pure data plus validation; formulas live in their own modules.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationInfo, field_validator, model_validator

from calc.specs.bounds import check_bounds
from calc.specs.mapping import spec_from_mapping, validation_error

__all__ = [
    "AttentionKind", "FFNKind", "GPUSpec", "MLASpec", "MixerSpec", "ModelSpec", "MoESpec", "Parallelism", "QuantSpec",
    "SharedBlockSpec", "spec_from_mapping", "validation_error",
]

DTypeName = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4"]
# Token mixer of a layer: softmax attention over all / a window / a chunk of the tokens, "linear" = the
# model's ``mixer`` (state-space or linear attention, no KV cache), "none" = no token mixer (an MLP-only block).
AttentionKind = Literal["full", "sliding", "chunked", "linear", "none"]
FFNKind = Literal["dense", "moe", "none"]
MixerKind = Literal["mamba", "mamba2", "gated_deltanet", "kda", "short_conv", "lightning"]
TensorDType = Literal["tf32", "bf16", "fp16", "fp8", "int8", "fp4"]  # fp4: NVFP4/MXFP4 tensor peak (Blackwell, CDNA4)


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_number(cls, value: object, info: ValidationInfo) -> object:
        """A YAML ``true`` is not a count: pydantic's lax mode would read it as 1 (a 1-layer model, a 1-SM GPU), where
        the HuggingFace importer refuses it (calc.sources.hf.config)."""
        field = cls.model_fields.get(info.field_name or "")
        if isinstance(value, bool) and field is not None and "bool" not in str(field.annotation):
            raise ValueError(f"must be a number, got {value!r}")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _bounded(cls, value: object, info: ValidationInfo) -> object:
        """Every number finite and plausible, every name short and printable (calc.specs.bounds)."""
        return check_bounds(value, info.field_name or "")


class MoESpec(_Spec):
    """Mixture-of-experts MLP (Mixtral, Qwen2-MoE, DeepSeek-V2/V3)."""

    num_experts: PositiveInt = Field(description="routed experts per MoE layer (E)")
    experts_per_token: PositiveInt = Field(description="routed experts active per token (top-k)")
    expert_intermediate_size: PositiveInt = Field(description="FFN width of one routed expert (I_e)")
    num_shared_experts: NonNegativeInt = Field(0, description="always-active shared experts")
    shared_intermediate_size: NonNegativeInt = Field(
        0, description="total FFN width of the shared expert block (0 when there is none)"
    )
    shared_expert_gate: bool = Field(False, description="Qwen2-MoE sigmoid gate on the shared expert (H x 1)")
    router_bias: bool = Field(False, description="DeepSeek-V3 e_score_correction_bias (E per layer)")
    num_dense_layers: NonNegativeInt = Field(
        0, description="layers that keep a dense MLP of intermediate_size instead of experts"
    )
    expert_bias: bool = Field(False, description="gpt-oss: every expert's projections carry biases")
    router_linear_bias: bool = Field(False, description="gpt-oss / phimoe-style router Linear with a bias (E)")
    zero_experts: NonNegativeInt = Field(0, description=(
        "LongCat-Flash zero-computation (identity) experts: router slots without parameters; experts_per_token "
        "then counts the FFN experts a token reaches on average"))

    @property
    def router_slots(self) -> int:
        """Experts the router scores: E routed FFN experts + Z identity experts (LongCat-Flash, arXiv 2509.01322
        section 2.1: the router, its logits and its correction bias span all E+Z slots; only E hold weights)."""
        return self.num_experts + self.zero_experts

    @property
    def active_width(self) -> int:
        """FFN width one token passes through in a MoE layer: k routed experts x I_e + the shared block's width."""
        return self.experts_per_token * self.expert_intermediate_size + self.shared_intermediate_size

    @property
    def routed_share(self) -> float:
        """The routed experts' share k I_e / (k I_e + I_shared) of ``active_width`` (1 without shared experts)."""
        return self.experts_per_token * self.expert_intermediate_size / self.active_width

    @model_validator(mode="after")
    def _check(self) -> MoESpec:
        if self.experts_per_token > self.num_experts:
            raise ValueError(
                f"experts_per_token ({self.experts_per_token}) exceeds num_experts ({self.num_experts})"
            )
        if self.num_shared_experts and not self.shared_intermediate_size:
            raise ValueError("num_shared_experts > 0 needs shared_intermediate_size")
        return self


class MLASpec(_Spec):
    """Multi-head latent attention (DeepSeek-V2/V3, arXiv 2405.04434 section 2.1)."""

    q_lora_rank: PositiveInt | None = Field(None, description="query latent rank; None = plain q_proj")
    kv_lora_rank: PositiveInt = Field(description="compressed KV latent width (cached)")
    qk_nope_head_dim: PositiveInt
    qk_rope_head_dim: PositiveInt = Field(description="decoupled RoPE key width (cached, shared by heads)")
    v_head_dim: PositiveInt
    index_n_heads: NonNegativeInt = Field(0, description="DeepSeek-V3.2 sparse attention: lightning indexer heads (0 = none)")
    index_head_dim: NonNegativeInt = Field(0, description="DeepSeek-V3.2: lightning indexer head width")
    index_topk: NonNegativeInt = Field(0, description="DeepSeek-V3.2: keys each query attends, picked by the indexer "
                                                      "(0 = every key)")


class MixerSpec(_Spec):
    """A token mixer without a KV cache: a state-space or linear-attention layer, with a state per
    request that does not grow with the tokens (calc.model.mixers holds its tensors, FLOPs and state).

    The recurrent state is ``num_heads x head_dim x state_size`` per layer; the causal convolution keeps
    its last ``conv_kernel - 1`` inputs. Widths by kind:
    mamba (Mamba-1, arXiv 2312.00752): num_heads = d_inner channels, head_dim 1, state_size N, dt_rank R.
    mamba2 (arXiv 2405.21060): num_heads heads of head_dim P, state_size N, n_groups G of B/C.
    gated_deltanet (Qwen3-Next, arXiv 2412.06464): num_heads value heads of head_dim d_v, n_groups key
    heads of state_size d_k. short_conv (LFM2): num_heads = H channels, head_dim 1, state_size 0.
    lightning (MiniMax-01, arXiv 2501.08313): num_heads heads of head_dim d, state_size d.
    kda (Kimi Delta Attention, Kimi Linear arXiv 2510.26692): num_heads heads of head_dim d, state_size d (the key
    width), n_groups = num_heads (q and k have as many heads as v).
    """

    kind: MixerKind
    num_heads: PositiveInt
    head_dim: PositiveInt
    state_size: NonNegativeInt
    n_groups: PositiveInt = Field(1, description="mamba2: groups of B/C; gated_deltanet: key heads")
    conv_kernel: NonNegativeInt = Field(4, description="causal conv1d width (0 = none)")
    dt_rank: NonNegativeInt = Field(0, description="mamba: rank of the dt projection")
    proj_bias: bool = Field(False, description="in_proj / out_proj carry biases")
    conv_bias: bool = True
    inner_norms: bool = Field(False, description="Jamba: RMSNorms on dt (R), B and C (N each)")
    gated_norm: bool = Field(True, description="mamba2 / GDN: gated RMSNorm before out_proj")
    chunk_size: PositiveInt = Field(64, description="tokens per chunk of the chunked scan (SSD chunk_size; fla 64)")
    parallel: bool = Field(False, description="Falcon-H1: the mixer runs beside attention in every layer")

    @property
    def d_inner(self) -> int:
        """Width of the mixer's value stream: num_heads * head_dim."""
        return self.num_heads * self.head_dim

    @property
    def conv_channels(self) -> int:
        """Channels the causal conv1d runs over: mamba / short_conv d_inner; mamba2 d_inner + 2*G*N (x, B, C);
        gated_deltanet and kda 2*n_k*d_k + n_v*d_v (q, k, v); lightning none."""
        if self.kind in ("mamba2", "gated_deltanet", "kda"):
            return self.d_inner + 2 * self.n_groups * self.state_size
        return 0 if self.kind == "lightning" else self.d_inner


class SharedBlockSpec(_Spec):
    """Zamba2's shared transformer blocks (arXiv 2411.15242; transformers modeling_zamba2, vLLM zamba2.py): the
    'full' layers each run one of ``num_blocks`` attention + gated-MLP blocks whose weights are shared across the
    positions (position j uses block j mod num_blocks), on the concatenation of the hidden state and the token
    embedding (``input_width`` = 2H), then a per-position Linear(H, H). Each position has its own low-rank
    adapters (``adapter_rank``): on the MLP's gate/up projection always, on q/k/v with ``attention_adapters``;
    and its own KV cache. calc.model.shared_block holds the tensors."""

    num_blocks: PositiveInt = Field(description="num_mem_blocks: distinct shared blocks")
    input_width: PositiveInt = Field(description="attention_hidden_size: width the shared attention reads (2H)")
    adapter_rank: NonNegativeInt = Field(description="rank of the per-position adapters")
    attention_adapters: bool = Field(False, description="use_shared_attention_adapter: q/k/v adapters per position")


class QuantSpec(_Spec):
    """How a checkpoint ships its weights (``quantization_config`` of config.json).

    Covers the Linear weights inside the blocks (attention, dense MLP, experts, shared experts);
    embeddings, output head, routers, norms and biases stay at the checkpoint dtype, as do the
    modules named in ``modules_to_not_convert``.
    """

    method: Literal["fp8", "mxfp4", "gptq", "awq", "bnb_nf4", "bnb_fp4", "bnb_int8", "fbgemm_fp8", "compressed_tensors",
                    "modelopt_fp8", "modelopt_nvfp4", "torchao"]
    scheme: str = Field("", max_length=64, description="the quantizer's name for the scheme (torchao: Int4WeightOnlyConfig)")
    bits: int = Field(8, ge=2, le=8)
    group_size: PositiveInt | None = Field(None, description="weights per scale along the input dim (GPTQ/AWQ 128, MXFP4 32, NF4 64)")
    block_size: tuple[PositiveInt, PositiveInt] | None = Field(None, description="fp8 weight_block_size [out, in] (DeepSeek-V3 128x128)")
    zero_points: bool = Field(False, description="GPTQ/AWQ store packed zero points (qzeros) beside the scales")
    double_quant: bool = Field(False, description="bitsandbytes bnb_4bit_use_double_quant")
    strategy: Literal["tensor", "channel", "group", "block", "tensor_group"] | None = Field(
        None, description="compressed-tensors: one weight scale per tensor, output row, group of the input, or block; "
                          "tensor_group (NVFP4): an fp8 scale per group of the input and an fp32 global scale")
    packed: bool = Field(False, description="compressed-tensors pack-quantized: int32 words + a weight_shape (2 x int64)")
    input_scale: bool = Field(False, description="a static activation scale stored per Linear")
    g_idx: bool = Field(False, description="compressed-tensors actorder group: an int32 weight_g_idx per input column")
    linear_bias: bool = Field(False, description="AutoGPTQ (<= 0.7.1) writes a zero fp16 bias of out_features "
                              "with every QuantLinear, whether or not the layer had one")
    scale_bytes: int = Field(2, ge=1, le=8, description="torchao: bytes of one scale (bf16 2, fp32 4)")
    zero_point_bytes: int = Field(0, ge=0, le=8, description="torchao: bytes of one zero point (none 0, int8 1, bf16 2, int64 8)")
    pad_to: tuple[PositiveInt, PositiveInt] | None = Field(
        None, description="torchao tinygemm tile packing: (out, in) padded up to multiples of these (8 or 16, 1024)")
    include_embeddings: bool = Field(False, description="torchao include_input_output_embeddings: the embedding and "
                                     "output head are quantized too")
    experts_only: bool = Field(False, description="only the routed experts are converted (an MXFP4 checkpoint: "
                               "transformers' Mxfp4HfQuantizer replaces the experts module, vLLM's Mxfp4Config leaves "
                               "every other Linear unquantized)")
    modules_to_not_convert: list[str] = Field(default_factory=list)
    converted_from: Literal["nvfp4", "mxfp4", "awq", "gptq"] | None = Field(
        None, description="set by calc.memory.weights.requantize: the --dtype weight format the model was priced as "
                          "(that format's checkpoint of it, not one the model ships)")

    def label(self) -> str:
        """The weights' dtype label of a result: the --dtype format it was converted to, else "as-shipped"."""
        return self.converted_from or "as-shipped"


class ModelSpec(_Spec):
    """A decoder-only transformer, with every field the parameter, FLOP and memory formulas need."""

    name: str = Field(min_length=1)
    description: str = ""
    source: str = Field("", description="where the numbers come from (published config URL)")
    hf_id: str | None = Field(None, pattern=r"^[\w.-]+/[\w.-]+$",
                              description="HuggingFace repo id the engines load (`vllm serve <hf_id>`)")
    trust_remote_code: bool = Field(False, description="the checkpoint runs its own code (config auto_map, a custom "
                                                       "tokenizer): engines start it with --trust-remote-code")
    aliases: list[str] = Field(default_factory=list)

    num_layers: PositiveInt = Field(description="transformer blocks (L)")
    hidden_size: PositiveInt = Field(description="model width (H)")
    num_heads: PositiveInt = Field(description="attention (query) heads (h)")
    num_kv_heads: PositiveInt | None = Field(None, description="KV heads (g); h for MHA, 1 for MQA")
    head_dim: PositiveInt | None = Field(None, description="per-head width (d); default H/h")
    intermediate_size: PositiveInt = Field(description="dense FFN width (I)")
    vocab_size: PositiveInt = Field(description="vocabulary (V)")

    tied_embeddings: bool = Field(description="output head shares the token-embedding matrix")
    position_embedding: Literal["rope", "alibi", "learned", "none"] = "rope"
    max_position_embeddings: PositiveInt = 2048
    position_offset: NonNegativeInt = Field(0, description="extra learned positions (OPT adds 2)")

    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    norm_bias: bool | None = Field(None, description="default: True for layernorm, False for rmsnorm")
    norms_per_layer: int = Field(2, ge=1, le=4)
    final_norm: bool = True
    embedding_norm: bool = Field(False, description="a norm right after the embedding (BLOOM)")

    qkv_bias: bool = False
    out_bias: bool = False
    mlp_bias: bool = False
    lm_head_bias: bool = False
    gated_mlp: bool = Field(description="SwiGLU/GeGLU: 3 matrices (gate, up, down) instead of 2")
    activation: str = "silu"
    parallel_block: bool = Field(False, description="y = x + Attn(LN(x)) + MLP(LN(x)) (GPT-J, NeoX, Falcon)")

    moe: MoESpec | None = None
    mla: MLASpec | None = None
    mixer: MixerSpec | None = Field(None, description="state-space / linear-attention mixer of the 'linear' layers")
    shared_block: SharedBlockSpec | None = Field(
        None, description="Zamba2: the 'full' layers run shared attention + MLP blocks (weights stored once)")
    attention_output_gate: bool = Field(False, description="Qwen3-Next: q_proj also emits a sigmoid gate per head (H*h*d)")
    ffn_types: list[FFNKind] | None = Field(
        None, description="FFN of each layer, num_layers long; None = dense, or MoE after moe.num_dense_layers")

    # Attention per layer (sliding-window / chunked / hybrid models).
    layer_types: list[AttentionKind] | None = Field(
        None, description="attention kind of each layer, num_layers long; None = every layer full"
    )
    sliding_window: PositiveInt | None = Field(None, description="tokens a 'sliding' layer attends to (and caches)")
    attention_chunk_size: PositiveInt | None = Field(None, description="tokens per chunk of a 'chunked' layer (Llama 4)")
    rope_scaling_factor: float = Field(
        1.0, ge=1.0, description="usable context / max_position_embeddings: the RoPE scaling factor where the "
        "config's max_position_embeddings is the original length (yarn in Qwen2.5/Qwen3), else 1",
    )

    # Extra per-layer parameters of current families.
    qk_norm: Literal["none", "head", "full"] = Field(
        "none", description="q/k norms: 'head' = one d-wide norm each (Qwen3, Gemma 3); 'full' = over h*d and g*d (OLMo 2, Cohere)"
    )
    attention_sinks: bool = Field(False, description="gpt-oss: one learned sink logit per head per layer (h)")
    quantization: QuantSpec | None = Field(None, description="as-shipped checkpoint quantization; None = all at checkpoint_dtype")
    checkpoint_dtype: Literal["fp32", "bf16", "fp16"] = Field("bf16", description="dtype of the unquantized tensors as shipped")
    vision_params: NonNegativeInt = Field(
        0, description="vision tower + projector of a multimodal wrapper (Gemma 3's SigLIP): in the total, never active for text"
    )
    mtp_layers: NonNegativeInt = Field(
        0, description="multi-token-prediction blocks shipped beside the main model (DeepSeek-V3, GLM-4.5); not in total_params"
    )
    mtp_own_embeddings: bool = Field(
        True, description="each MTP module stores its own embedding and output head (DeepSeek-V3, GLM-4.5); False: it "
                          "reads the main model's (Qwen3-Next, mtp_use_dedicated_embeddings false)"
    )

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.head_dim is None and self.mla is None and self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}; "
                "set head_dim explicitly"
            )
        if self.kv_heads > self.num_heads or self.num_heads % self.kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.kv_heads})"
            )
        if self.moe and self.moe.num_dense_layers > self.num_layers:
            raise ValueError(
                f"moe.num_dense_layers ({self.moe.num_dense_layers}) exceeds num_layers ({self.num_layers})"
            )
        if self.layer_types is not None:
            if len(self.layer_types) != self.num_layers:
                raise ValueError(f"layer_types has {len(self.layer_types)} entries for {self.num_layers} layers")
            if "sliding" in self.layer_types and not self.sliding_window:
                raise ValueError("layer_types has 'sliding' layers but sliding_window is not set")
            if "chunked" in self.layer_types and not self.attention_chunk_size:
                raise ValueError("layer_types has 'chunked' layers but attention_chunk_size is not set")
            if "linear" in self.layer_types and not self.mixer:
                raise ValueError("layer_types has 'linear' layers but no mixer is set")
        if self.shared_block and "full" not in (self.layer_types or []):
            raise ValueError("shared_block is set but no layer is 'full' (the positions that run it)")
        if self.mixer and self.mixer.parallel is False and "linear" not in (self.layer_types or []):
            raise ValueError("mixer is set but no layer is 'linear' (nor mixer.parallel)")
        if self.ffn_types is not None:
            if len(self.ffn_types) != self.num_layers:
                raise ValueError(f"ffn_types has {len(self.ffn_types)} entries for {self.num_layers} layers")
            if "moe" in self.ffn_types and not self.moe:
                raise ValueError("ffn_types has 'moe' layers but moe is not set")
        return self

    @property
    def context_window(self) -> int:
        """Usable context in tokens: max_position_embeddings times rope_scaling_factor (1 unless the
        config's max_position_embeddings is the pre-scaling length, as in Qwen2.5 with yarn)."""
        return int(self.max_position_embeddings * self.rope_scaling_factor)

    @property
    def kv_heads(self) -> int:
        """g: KV heads (defaults to h, i.e. multi-head attention)."""
        return self.num_kv_heads or self.num_heads

    @property
    def dim_per_head(self) -> int:
        """d: per-head width (H/h unless the config says otherwise, e.g. Gemma-7B 256)."""
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def has_norm_bias(self) -> bool:
        return self.norm == "layernorm" if self.norm_bias is None else self.norm_bias


class GPUSpec(_Spec):
    """One accelerator: the inputs of its tensor-core peak plus its datasheet figures."""

    name: str = Field(min_length=1)
    description: str = ""
    source: str = ""
    aliases: list[str] = Field(default_factory=list)
    vendor: str = "NVIDIA"
    arch: str

    sms: PositiveInt | None = Field(None, description="SMs (or CUs)")
    tensor_cores_per_sm: PositiveInt | None = None
    tensor_clock_mhz: float | None = Field(None, gt=0, description="clock the datasheet peak uses")
    boost_clock_mhz: float | None = Field(None, gt=0)
    flops_per_clock_per_tensor_core: dict[TensorDType, PositiveInt] = Field(
        default_factory=dict, description="dense FLOPs per clock per tensor core, by dtype"
    )
    datasheet_peak_tflops: dict[TensorDType, float] = Field(description="dense peaks, by dtype")
    peak_note: str = Field("", description="why a derived peak differs from the datasheet, or is missing")

    memory_gb: float = Field(gt=0, description="datasheet memory, GB (1e9)")
    memory_visible_mib: PositiveInt | None = Field(None, description="memory the device reports, MiB")
    memory_cuda_total_mib: PositiveInt | None = Field(None, description=(
        "device total as CUDA reports it, MiB: torch.cuda.mem_get_info()[1] (cudaMemGetInfo's total, the "
        "cudaDeviceProp.totalGlobalMem torch.cuda.get_device_properties prints), ECC on, default driver; below "
        "memory_visible_mib (nvidia-smi's total) by what the driver keeps for itself"))
    hbm_tb_s: float = Field(gt=0, description="memory bandwidth, TB/s (1e12)")
    interconnect_gb_s: float = Field(0, gt=0, description=(
        "GPU-GPU link, bidirectional GB/s, > 0 when given; left out = none stated (TP traffic priced at the "
        "network bandwidth). A 0 written in a file is refused: it would price TP over a link that is not there"))
    host_link_gb_s: float | None = Field(None, gt=0, description=(
        "GPU-host link, GB/s per direction, the link's rate (PCIe x16: Gen3 16, Gen4 32, Gen5 64; Grace's NVLink-C2C "
        "450): what activation offloading to host memory moves over; None: not stated (offloading then refused)"))
    tdp_w: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _check(self) -> GPUSpec:
        if any(v <= 0 for v in self.datasheet_peak_tflops.values()):
            raise ValueError("datasheet_peak_tflops values must be > 0")
        if self.flops_per_clock_per_tensor_core and not (
            self.sms and self.tensor_cores_per_sm and self.tensor_clock_mhz
        ):
            raise ValueError(
                "flops_per_clock_per_tensor_core needs sms, tensor_cores_per_sm and tensor_clock_mhz"
            )
        return self

    def derived_peaks(self) -> dict[str, float]:
        """Dense peak per dtype in TFLOPS from the spec's inputs (reference section 4, seed 001 section 1.3):
        FLOPs per clock per tensor core x tensor cores per SM x SMs x clock; empty where they are not published.

        >>> a800 = GPUSpec(name="x", arch="Ampere", sms=108, tensor_cores_per_sm=4, tensor_clock_mhz=1410,
        ...                flops_per_clock_per_tensor_core={"bf16": 512}, datasheet_peak_tflops={"bf16": 312},
        ...                memory_gb=80, hbm_tb_s=2.039)
        >>> round(a800.derived_peaks()["bf16"], 2)   # 512 x 4 x 108 x 1,410e6 = 311.87e12 (datasheet 312)
        311.87
        """
        if not self.flops_per_clock_per_tensor_core:
            return {}
        assert self.sms and self.tensor_cores_per_sm and self.tensor_clock_mhz  # enforced by _check
        per_clock = self.sms * self.tensor_cores_per_sm * self.tensor_clock_mhz * 1e6 / 1e12
        return {dtype: rate * per_clock for dtype, rate in self.flops_per_clock_per_tensor_core.items()}

    @property
    def memory_bytes(self) -> int:
        """Usable capacity: what the device reports where known, else the datasheet GB."""
        if self.memory_visible_mib:
            return self.memory_visible_mib * 2**20
        return int(self.memory_gb * 10**9)

    @property
    def cuda_total_bytes(self) -> int:
        """The device total the serving engines budget on: what torch.cuda.mem_get_info()[1] reports
        (memory_cuda_total_mib) where a reading is known, else memory_bytes. vLLM V1 requests
        gpu_memory_utilization x MemorySnapshot.total_memory (vllm/utils, torch.cuda.mem_get_info), V0 the total
        of torch.cuda.mem_get_info() (vllm/worker/worker.py); SGLang and TRT-LLM size from the free memory
        mem_get_info reports, which is at most this total."""
        if self.memory_cuda_total_mib:
            return self.memory_cuda_total_mib * 2**20
        return self.memory_bytes

    @model_validator(mode="after")
    def _visible_near_datasheet(self) -> GPUSpec:
        # nvidia-smi's total is the datasheet's GB read as GiB at most (2^30 / 1e9 = 1.074: an "80 GB" A100 shows
        # 81,920 MiB) and a few percent below it with ECC or a driver reserve (T4 15,360 MiB of 16 GB): outside
        # 0.9-1.08 of memory_gb the file describes two different cards
        if self.memory_visible_mib:
            ratio = self.memory_visible_mib * 2**20 / (self.memory_gb * 10**9)
            if not 0.9 <= ratio <= 1.08:
                raise ValueError(f"memory_visible_mib ({self.memory_visible_mib:,} MiB) is {ratio:.2f}x memory_gb "
                                 f"({self.memory_gb:g} GB); nvidia-smi's total sits within 0.9-1.08x of the datasheet's")
        return self

    @model_validator(mode="after")
    def _cuda_total_below_visible(self) -> GPUSpec:
        if self.memory_cuda_total_mib and self.memory_cuda_total_mib > self.memory_bytes // 2**20:
            raise ValueError(f"memory_cuda_total_mib ({self.memory_cuda_total_mib}) exceeds the device's memory "
                             f"({self.memory_bytes // 2**20} MiB): CUDA reports at most what nvidia-smi does")
        return self


class Parallelism(_Spec):
    """How the model is split: tensor, pipeline, data and context (sequence) parallel degrees."""

    tp: PositiveInt = 1
    pp: PositiveInt = 1
    dp: PositiveInt = 1
    cp: PositiveInt = 1
    sequence_parallel: bool = False

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp * self.dp * self.cp
