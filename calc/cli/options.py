"""The option vocabulary of the whole CLI, each concept declared once.

Every command takes its options from here, so a flag means the same thing, with the same name,
default and parsing, everywhere (the README's option table is this module). Numeric options
accept human numbers (`4K`, `1.5M`, `15T`, `2e12`) through `calc.units.parse_human_number`.
Old spellings keep working as hidden aliases (`alias` resolves a primary/alias pair and refuses
both at once).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, TypeVar

import typer

from calc.errors import LLMCalcError

DEFAULT_DTYPE = "bf16"
# Workload defaults, one value in every command that takes the option (tests/test_vocabulary.py checks --help):
DEFAULT_BATCH = 1  # --batch: one sequence (request)
DEFAULT_PROMPT = 1024  # --prompt: input tokens per request (latency, serve, report, compare)
DEFAULT_OUTPUT = 256  # --output: generated tokens per request (a chat answer, as serving benchmarks use)
DEFAULT_SEQ = 4096  # --seq: the training sequence length of current pre-training runs (Llama 2 and after)

T = TypeVar("T")


def note_suffix(flag: str, text: str, value: float) -> None:
    """Where a number was typed with a suffix (`16K`, `15T`), note what it was read as (once per option), so
    that `--num-gpus 16K` (16,000 GPUs, not 16) never passes without a word; printed under the answer only."""
    from calc.sanity import note
    from calc.units import count

    if text.rstrip().upper().endswith(tuple("KMBGTP")):
        note(flag, f"{flag} {text.strip()} read as {count(value)}")


def human_int(flag: str, minimum: int = 1, maximum: int = 10**15) -> Callable[[str], int]:
    """A Typer parser for an integer option that accepts `4K`, `1.5M`, `2e6` and names ``flag`` on error."""

    def parse(text: str) -> int:
        from calc.units import parse_human_number, strip_thousands

        text = str(text).strip()
        if text.lstrip("+-").replace("_", "").replace(",", "").isdigit():
            value = float(int(strip_thousands(text, flag)))
        elif text.startswith("-"):
            raise LLMCalcError(flag, f"must be >= {minimum}, got {text}")
        else:
            value = parse_human_number(text, flag)
        if value != int(value):
            raise LLMCalcError(flag, f"must be a whole number, got {text}")
        if value < minimum:
            raise LLMCalcError(flag, f"must be >= {minimum}, got {text}")
        if value > maximum:
            raise LLMCalcError(flag, f"must be <= {maximum:,}, got {text}")
        note_suffix(flag, text, value)
        return int(value)

    return parse


def human_float(flag: str, allow_zero: bool = False, maximum: float = 1e30, minimum: float | None = None) -> Callable[[str], float]:
    """A Typer parser for a positive real option (`6.4M`, `0.9`, `2e12`), finite, naming ``flag``; ``minimum``: the
    least it may be (a count of tokens is at least 1)."""

    def parse(text: str) -> float:
        from calc.units import parse_human_number

        text = str(text).strip()
        if allow_zero and text in ("0", "0.0"):
            return 0.0
        if text.startswith("-"):
            raise LLMCalcError(flag, f"must be {'>= 0' if allow_zero else '> 0'}, got {text}")
        value = parse_human_number(text, flag)
        if value > maximum:
            raise LLMCalcError(flag, f"must be <= {maximum:g}, got {text}")
        if minimum is not None and value < minimum:
            raise LLMCalcError(flag, f"must be >= {minimum:g}, got {text}")
        note_suffix(flag, text, value)
        return value

    return parse


KV_STORAGE = ("fp32", "bf16", "fp16", "fp8", "int8")  # the dtypes a KV cache is stored in (--kv-dtype)


def dtype_name(flag: str) -> Callable[[str], str]:
    """A Typer parser for a dtype option: one of calc.units.DTYPE_BYTES (case-insensitive); an empty or
    unknown name is refused naming ``flag`` and listing the valid ones, never read as the default."""

    def parse(text: str) -> str:
        from calc.units import DTYPE_BYTES, dtype_bytes

        if flag == "--dtype" and text.lower() in WEIGHT_FORMAT_NAMES:
            return text.lower()
        named = ([d for d in DTYPE_BYTES if d != "fp4"] + [*WEIGHT_FORMAT_NAMES] if flag == "--dtype"
                 else [d for d in DTYPE_BYTES if d in KV_STORAGE])
        if flag == "--kv-dtype" and text.lower() in DTYPE_BYTES and text.lower() not in KV_STORAGE:
            # tf32 is a tensor-core math mode, not a storage format; no engine stores int4 / fp4 KV (vLLM's
            # --kv-cache-dtype: auto, bf16, fp16, fp8 variants; SGLang the same; TRT-LLM fp8 / int8)
            raise LLMCalcError(flag, f"KV caches are not stored in {text.lower()}; use one of {', '.join(named)}")
        if text.lower() == "fp4":  # an operand width inside the fp4 GEMMs, not a format with its scales
            raise LLMCalcError(flag, "fp4 names no scale layout; give nvfp4 (e4m3 scale per 16) or mxfp4 (e8m0 per 32)")
        if text.lower() not in DTYPE_BYTES:
            raise LLMCalcError(flag, f"unknown dtype {text!r}; use one of {', '.join(named)}")
        dtype_bytes(text, flag)
        return text.lower()

    return parse


def note_fp32(dtype: str | None) -> None:
    """A command that times --dtype fp32 says it prices the matmuls at the TF32 peak (FP32_NOTE); one that only counts
    bytes (memory, concurrency) does not."""
    if dtype == "fp32":
        from calc.sanity import note

        note("--dtype", FP32_NOTE)


# fp32 storage computes at the TF32 tensor-core peak (calc.units.COMPUTE_DTYPE), and says so wherever it is timed.
FP32_NOTE = ("--dtype fp32 prices its matmuls at the GPU's TF32 tensor-core peak, as NGC containers, Megatron and "
             "HF --tf32 run them; stock PyTorch leaves TF32 off (torch.backends.cuda.matmul.allow_tf32 = False) and "
             "runs fp32 GEMMs at the FP32 CUDA-core rate, about 8x slower on A100 / H100 (19.5 / 67 TFLOPS)")


def alias(primary: T | None, old: T | None, flag: str, old_flag: str, default: T | None = None) -> T | None:
    """The value of an option that also has an old (hidden) spelling; both at once is refused."""
    if primary is not None and old is not None:
        raise LLMCalcError(old_flag, f"is the old spelling of {flag}; give only one of them")
    if primary is not None:
        return primary
    return old if old is not None else default


def option_given(ctx: typer.Context | None, name: str) -> bool:
    """Whether the user typed option ``name`` rather than leaving its default (the context's parameter
    source); True without a context, where a caller chose the value."""
    if ctx is None:
        return True
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def refuse(flag: str, given: Any, why: str, default: Any = None) -> None:
    """Refuse an option that would not change this answer (never ignore it silently)."""
    if given is not None and given is not False and given != default:
        raise LLMCalcError(flag, why)


def refuse_all(why: str, **given: Any) -> None:
    """``refuse`` for several options at once, ``given`` as flag name without dashes (``expert_imbalance`` for
    ``--expert-imbalance``) -> value, all for the same reason."""
    for name, value in given.items():
        refuse("--" + name.replace("_", "-"), value, why)


def refuse_switch(flag: str, value: bool | None, why: str) -> None:
    """refuse for a ``--X/--no-X`` switch that defaults to None (the stack's choice): given either way it is refused,
    named as given (``refuse`` reads False as "not given", which would let --no-X pass silently)."""
    if value is not None:
        raise LLMCalcError(flag if value else flag.replace("--", "--no-", 1), why)


class Mode(StrEnum):
    infer = "infer"
    train = "train"
    finetune = "finetune"  # memory / report: full, LoRA, QLoRA, DoRA fine-tuning (calc.memory.finetune)


class Recompute(StrEnum):
    """calc.memory.activations.RECOMPUTE_LEVELS: one meaning in every command."""

    none = "none"
    selective = "selective"
    full = "full"
    sac = "sac"
    deepseek = "deepseek"
    dots = "dots"


# --- what model, what hardware -------------------------------------------------------------
ModelArg = Annotated[str, typer.Argument(
    help="catalog name or alias (see `llmcalc models`), our YAML, or a HF config.json", metavar="MODEL")]
ModelArgOptional = Annotated[str | None, typer.Argument(
    help="catalog name or alias (see `llmcalc models`), our YAML, or a HF config.json", metavar="MODEL")]
OldModelOpt = Annotated[str | None, typer.Option("--model", hidden=True, help="old spelling of MODEL")]
GpuOpt = Annotated[str, typer.Option("--gpu", help="GPU name (see `llmcalc gpus`) or a GPU YAML")]
GpuOptional = Annotated[str | None, typer.Option("--gpu", help="GPU name (see `llmcalc gpus`) or a GPU YAML")]
CalibrationOpt = Annotated[str | None, typer.Option("--calibration", help="calibration YAML from `llmcalc bench --save`")]

# --- how it is placed on GPUs --------------------------------------------------------------
NumGpusOpt = Annotated[int | None, typer.Option(
    "--num-gpus", parser=human_int("--num-gpus"), help=(
        "GPUs in all (default: the product of --tp --pp --dp --cp where the command has them, else 1; serve "
        "without it searches the GPU count; train-plan and train-time need it)"))]
TpOpt = Annotated[int | None, typer.Option("--tp", parser=human_int("--tp", maximum=4096), help="tensor-parallel degree")]
PpOpt = Annotated[int | None, typer.Option("--pp", parser=human_int("--pp", maximum=4096), help="pipeline-parallel degree")]
DpOpt = Annotated[int | None, typer.Option("--dp", parser=human_int("--dp", maximum=10**6), help="data-parallel degree")]
CpOpt = Annotated[int | None, typer.Option("--cp", parser=human_int("--cp", maximum=4096), help="context-parallel degree")]
EpOpt = Annotated[int | None, typer.Option("--ep", parser=human_int("--ep", maximum=4096), help="expert-parallel degree (MoE)")]
EtpOpt = Annotated[int | None, typer.Option("--etp", parser=human_int("--etp", maximum=4096), help=(
    "expert tensor-parallel degree (MoE; default: TP, as Megatron-Core). The experts' grid ETP x EP folds over "
    "TP x CP x DP, so --etp 1 lets EP span the TP ranks (Megatron's MoE parallel folding)"))]
SpOpt = Annotated[bool, typer.Option("--sp", help="Megatron sequence parallelism (with TP)")]
ZeroOpt = Annotated[int, typer.Option("--zero", parser=human_int("--zero", minimum=0, maximum=3), help="ZeRO stage 0-3")]
RecomputeOpt = Annotated[Recompute, typer.Option("--recompute", help=(
    "activation recomputation, the same in every mode: none; full (keep each layer's input, recompute the layer); "
    "selective: Megatron's (recompute the attention core: nothing more under flash attention); sac: torchtitan's "
    "op-level selective AC (keep every second matmul output, and the attention outputs under flash attention); "
    "deepseek: DeepSeek-V3's (recompute the norms and MLA up-projections; Megatron --recompute-modules layernorm "
    "mla_up_proj); dots: JAX's dots_with_no_batch_dims_saveable (keep each layer's input and every weight-matmul "
    "output)"))]

# --- workload: one name per sequence concept -----------------------------------------------
BatchOpt = Annotated[int, typer.Option("--batch", "-b", parser=human_int("--batch"), help="sequences (requests) per batch")]
MicroBatchOpt = Annotated[int, typer.Option("--micro-batch", parser=human_int("--micro-batch"), help="sequences per micro-batch")]
# memory's batch: requests in --mode infer, the micro-batch in --mode train / finetune, so it also answers to train-step's
# --micro-batch (one quantity, the name the training commands give it)
MemoryBatchOpt = Annotated[int, typer.Option("--batch", "-b", "--micro-batch", parser=human_int("--batch"),
                                             help="sequences (requests) per batch; the micro-batch in --mode train / "
                                                  "finetune (--micro-batch, as train-step names it)")]
GlobalBatchOpt = Annotated[int | None, typer.Option(
    "--global-batch", parser=human_int("--global-batch"),
    help="sequences per optimizer step (default in train-step, train-plan, train-time, report: B0 = 4,194,304 tokens / "
         "--seq, rounded up to a multiple of the GPUs up to 8 x B0 GPUs, one sequence per 8 GPUs past that, as Llama 3 "
         "405B ran 2,048 x 8K on 16K GPUs: so the batch drops 8x there; give it to compare GPU counts at one batch; "
         "memory: none given, no gradient accumulation)")]
DocTokensOpt = Annotated[int | None, typer.Option(
    "--doc-tokens", parser=human_int("--doc-tokens"),
    help="mean tokens per document packed into each sequence (SFT / PEFT on short examples, NeMo / Megatron-Bridge "
         "packed sequences, varlen flash attention): attention runs within each document, s/d documents of d(d+1)/2 "
         "pairs instead of s(s+1)/2 (default: one document per sequence)")]
GlobalBatchTokensOpt = Annotated[float | None, typer.Option(
    "--global-batch-tokens", parser=human_float("--global-batch-tokens"),
    help="tokens per optimizer step, a multiple of --seq: the global batch in tokens (= --global-batch x --seq; give one "
         "of the two), e.g. 16,777,216 (2,048 x 8K: Llama 3's '16M'; a decimal 16M is not a multiple of 8,192)")]


MAX_GLOBAL_BATCH = 10**15  # human_int's default maximum, --global-batch's bound


def global_batch_sequences(global_batch: int | None, global_batch_tokens: float | None, seq: int) -> int | None:
    """The global batch in sequences from either form: --global-batch (sequences) or --global-batch-tokens T, read as
    T / --seq sequences; refused when both are given or when T is not a whole number of sequences (naming the two
    nearest token counts that are)."""
    if global_batch_tokens is None:
        return global_batch
    if global_batch is not None:
        raise LLMCalcError("--global-batch-tokens", "is the global batch in tokens; give it or --global-batch (sequences), "
                           "not both")
    sequences = global_batch_tokens / seq
    if sequences > MAX_GLOBAL_BATCH:  # the bound --global-batch takes (human_int's), in either form
        raise LLMCalcError("--global-batch-tokens", f"{global_batch_tokens:g} tokens is {sequences:.3g} sequences of "
                                                    f"{seq:,}, past {MAX_GLOBAL_BATCH:,} (--global-batch's bound)")
    if sequences != int(sequences) or sequences < 1:
        low, high = int(sequences) * seq, (int(sequences) + 1) * seq
        nearest = f"{low:,} or {high:,}" if low else f"{high:,}"
        given = f"{global_batch_tokens:,.0f}" if global_batch_tokens == int(global_batch_tokens) else f"{global_batch_tokens:g}"
        raise LLMCalcError("--global-batch-tokens", f"{given} tokens is {global_batch_tokens:,.0f} / {seq:,} = "
                           f"{int(sequences):,} + {global_batch_tokens - int(sequences) * seq:,.0f} / {seq:,} sequences of "
                           f"{seq:,} tokens, not a whole number; use {nearest} (or --global-batch N)")
    return int(sequences)
PromptOpt = Annotated[int, typer.Option("--prompt", parser=human_int("--prompt"), help="input (prompt) tokens per request")]
OutputOpt = Annotated[int, typer.Option("--output", parser=human_int("--output", minimum=0), help="generated tokens per request")]
SeqOpt = Annotated[int, typer.Option("--seq", "-s", parser=human_int("--seq"), help=(
    "tokens per sequence: the training / forward sequence length; memory --mode infer: tokens held per request, "
    "input + output"))]
MaxModelLenOpt = Annotated[int | None, typer.Option(
    "--max-model-len", parser=human_int("--max-model-len"), help="engine context limit: tokens per request (input + output)")]
TokensOpt = Annotated[float | None, typer.Option("--tokens", parser=human_float("--tokens", minimum=1),
                                                  help="training tokens D, e.g. 15T")]
DaysOpt = Annotated[float | None, typer.Option(
    "--days", parser=human_float("--days"), help=(
        "finish within D days: answers a whole-node GPU count (no --num-gpus), over node counts with no prime factor "
        "above 7 (..., 24, 25, 27, 28, 30, ...: counts a layout splits; a count like 41 nodes is skipped), found by "
        "bisection: the smallest where days fall as GPUs grow; the best plan's MFU varies with the count, so a few "
        "nodes fewer can sometimes finish too (check with --num-gpus)"))]
BudgetOpt = Annotated[float | None, typer.Option(
    "--budget", parser=human_float("--budget"),
    help="spend at most USD (needs --price): the fastest whole-node GPU count within it (node counts with no prime "
         "factor above 7, as --days); with --days the cheapest on time")]

# --- numbers and formats -------------------------------------------------------------------
# 4-bit weight formats --dtype takes for serving (calc.memory.weights.WEIGHT_FORMATS).
WEIGHT_FORMAT_NAMES = ("nvfp4", "mxfp4", "awq", "gptq")
DtypeOpt = Annotated[str, typer.Option("--dtype", parser=dtype_name("--dtype"), show_default=False,
                                       help="weights / compute dtype (default: bf16; latency, concurrency, serve, compare, "
                                            "report and memory --mode infer: the checkpoint as shipped, bf16 for an "
                                            "unquantized one): fp32 (matmuls at the TF32 tensor peak), bf16, fp16, "
                                            "fp8, int8, int4 (serving: W4A16, "
                                            "16-bit activations); for serving also nvfp4 / mxfp4 / awq / gptq "
                                            "(the model as its 4-bit checkpoint, "
                                            "scales included: fp4 GEMMs on Blackwell for nvfp4 / mxfp4, W4A16 for "
                                            "awq / gptq group 128)")]
KvDtypeOpt = Annotated[str | None, typer.Option("--kv-dtype", parser=dtype_name("--kv-dtype"),
                                                help="KV-cache dtype (default: the engines' auto, the activation dtype: bf16 / fp16 "
                                                     "also for fp8, int8 or int4 weights; fp8 KV only when given, except "
                                                     "vLLM's fp8 record for DeepSeek-V3.2)")]


class Attention(StrEnum):  # flash / unfused, or a named fused kernel (calc.hardware.attention.KERNELS)
    flash = "flash"
    unfused = "unfused"
    fa2 = "fa2"
    fa3 = "fa3"
    cudnn = "cudnn"
    triton = "triton"


ATTENTION_HELP = (
    "attention kernel: flash (fused, causal half: the stack's kernel, cuDNN for megatron on Hopper and Blackwell, "
    "FlashAttention-2 for the others), a named fused kernel (fa2, fa3: Hopper only, cudnn: NVIDIA, triton: llm-foundry's "
    "FlashAttention-1-era Triton kernel), each at its benchmark rate (calc.hardware.attention), or unfused (full s x s "
    "scores, Megatron 2021-22)")
AttentionOpt = Annotated[Attention, typer.Option("--attention", help=ATTENTION_HELP)]
# memory: the kernel's rate does not enter, only whether an s x s score matrix is kept (unfused) or not (fused)
MemoryAttentionOpt = Annotated[Attention | None, typer.Option("--attention", help=(
    "attention kernel, as train-step takes it: flash (the default) or unfused (keeps the s x s scores); a named fused "
    "kernel (fa2, fa3, cudnn, triton) keeps what flash keeps and is refused here (its rate is train-step's)"))]
# memory's old switch for the same choice (--no-flash = --attention unfused), kept as a hidden alias
OldFlashOpt = Annotated[bool | None, typer.Option("--flash/--no-flash", hidden=True, help="old spelling of --attention")]


def attention_choice(attention: Attention | None, old_flash: bool | None) -> Attention:
    """--attention, or the old --flash / --no-flash of `memory` (flash / unfused); both at once is refused."""
    old = None if old_flash is None else Attention.flash if old_flash else Attention.unfused
    return alias(attention, old, "--attention", "--flash" if old_flash else "--no-flash", Attention.flash)


class AttentionPairs(StrEnum):
    full = "full"
    causal = "causal"


AttentionPairsOpt = Annotated[AttentionPairs, typer.Option(
    "--attention-pairs",
    help="the (query, key) pairs a FLOP count counts: full (the S x S' score matrix, as PaLM appendix B, Megatron-LM "
         "and torchtitan count model FLOPs and MFU; the default) or causal (S(S+1)/2, what a causal kernel computes); "
         "a convention of the count, not the workload (latency's --causal/--non-causal sets the workload)")]
# --causal was this count's switch in flops / mfu / train-time; it now means only the workload (latency, default on)
OldCausalCountOpt = Annotated[bool | None, typer.Option("--causal/--non-causal", hidden=True)]


def counted_causal(pairs: AttentionPairs, old_causal: bool | None) -> bool:
    """True when the FLOP count takes the causal pairs; the old ``--causal`` of the counting commands is refused
    with the new spelling, so ``--causal`` keeps one meaning and one default (latency's workload, on)."""
    if old_causal is not None:
        flag, pairs_word = ("--causal", "causal") if old_causal else ("--non-causal", "full")
        raise LLMCalcError(flag, f"here the FLOP count's convention is --attention-pairs {pairs_word} (default full, "
                                 "Megatron's MFU count); --causal/--non-causal is latency's workload switch")
    return pairs is AttentionPairs.causal


CausalPrefillOpt = Annotated[bool, typer.Option(
    "--causal/--non-causal", help="prefill attention causal, each token seeing the keys before it, as engines run it "
    "(default); --non-causal: every token sees the whole prompt")]
ReserveOpt = Annotated[float | None, typer.Option(
    "--reserve-gib", parser=human_float("--reserve-gib", allow_zero=True, maximum=1e4),
    help="per-GPU memory outside PyTorch's allocator (CUDA context), GiB (default: memory --mode infer 1 incl. "
         "allocator slack; serving: the release's own, 0.5 where it counts the CUDA context (SGLang, TensorRT-LLM, "
         "vLLM V1 before 0.9.1, V0 0.6.4), else 0.1 above vLLM's baseline snapshot; training 0.5, plus the stack's "
         "allocator fragmentation: 5% on hf, 0 on megatron, --fragmentation)")]
ExpertImbalanceOpt = Annotated[float | None, typer.Option(
    "--expert-imbalance", parser=human_float("--expert-imbalance"),
    help="MoE with expert parallelism: max / mean tokens the busiest EP rank receives, >= 1 (default 1.3, SGLang's "
         "large-scale EP balancedness without EPLB; aiconfigurator's power-law routing, alpha 1.2, reads ~1.5-2.1 at EP 4-8)")]
CommBufferOpt = Annotated[float | None, typer.Option(
    "--comm-buffer-gib", parser=human_float("--comm-buffer-gib", allow_zero=True, maximum=1e3),
    help="per-GPU NCCL / custom all-reduce memory when the model is split, GiB (default: from NCCL's buffer sizes by "
         "node type, NCCL release and engine: calc.serving.comm_memory)")]
StepOverheadOpt = Annotated[float | None, typer.Option(
    "--step-overhead-ms", parser=human_float("--step-overhead-ms", allow_zero=True, maximum=1e3),
    help="engine CPU time per scheduler step, ms (default: the engine's fitted value: vllm, vllm-v0, sglang, trtllm)")]
StepOverheadPerSeqOpt = Annotated[float | None, typer.Option(
    "--step-overhead-per-seq-us", parser=human_float("--step-overhead-per-seq-us", allow_zero=True, maximum=1e4),
    help="engine CPU time per sequence in a scheduler step, us, on top of --step-overhead-ms (default: the engine's "
         "fitted value)")]
EnforceEagerOpt = Annotated[bool, typer.Option(
    "--enforce-eager", help="steps run without CUDA / HIP graphs (vLLM --enforce-eager): every kernel launched by the host")]
SchedulerStepsOpt = Annotated[int | None, typer.Option(
    "--num-scheduler-steps", parser=human_int("--num-scheduler-steps", maximum=1024),
    help="vLLM V0 multi-step scheduling (--engine vllm-v0 or a release before 0.8): the scheduler runs once per this "
         "many decode steps, so a decode step carries 1/N of the step overhead (calc.serving.step.step_overhead)")]
class Fp8Scales(StrEnum):
    block = "block"
    tensor = "tensor"


Fp8MoeScalesOpt = Annotated[Fp8Scales | None, typer.Option(
    "--fp8-moe-scales",
    help="MoE with fp8 experts: block (128 x 128 block scales, as DeepSeek-V3 / Qwen3-FP8 checkpoints ship; "
         "the default, which --dtype fp8 on a 16-bit MoE reads as that FP8 checkpoint, whose TP slices must hold whole "
         "blocks) or tensor (one scale per "
         "tensor: TensorRT-LLM / ModelOpt FP8, CUTLASS's fp8 grouped GEMM, and vLLM / SGLang quantizing a 16-bit "
         "checkpoint online; faster above 128 tokens per expert)")]
MoeServingRateOpt = Annotated[float | None, typer.Option(
    "--moe-serving-rate", parser=human_float("--moe-serving-rate", maximum=4.0),
    help="MoE: the routed experts' grouped-GEMM rate in a whole serving step against the per-op kernel tables, > 0 "
         "(default: the value fitted on the measurement corpus for the GPU generation and expert dtype, "
         "calc/data/fitted_defaults.json moe_serving_rate; --explain prints them)")]
class Dispatcher(StrEnum):  # calc.hardware.moe_ops.DISPATCHERS: one vocabulary for training and serving
    alltoall = "alltoall"
    deepep = "deepep"
    allgather = "allgather"
    naive = "naive"


DispatcherOpt = Annotated[Dispatcher | None, typer.Option(
    "--dispatcher",
    help="the expert-parallel token exchange (Megatron --moe-token-dispatcher-type, vLLM --all2all-backend, SGLang "
         "--moe-a2a-backend): alltoall (NCCL all-to-all, every routed copy sent), deepep (DeepEP: once per destination "
         "node over the NIC, low-latency kernels at decode sizes), allgather (all-gather of tokens + reduce-scatter of "
         "outputs over the EP group) or naive (vLLM's broadcasts + all-reduce); default: train-step alltoall, serving "
         "the engine's (allgather; vLLM before 0.11 naive)")]


class AttentionWindows(StrEnum):  # ServingAssumptions.attention_windows (calc.serving.windows)
    applied = "applied"
    full = "full"


AttentionWindowsOpt = Annotated[AttentionWindows | None, typer.Option(
    "--attention-windows",
    help="sliding-window layers as the engine runs them: applied (over their window: vLLM, SGLang, TensorRT-LLM's "
         "PyTorch backend) or full (attending and caching the whole context: TensorRT-LLM's engine flow before 1.0 "
         "without max_attention_window_size, or a release that does not pass the window to its kernel); default: the "
         "engine's by release; refused for a model without sliding-window layers")]


class PermuteScope(StrEnum):  # ServingAssumptions.moe_permute_scope (calc.serving.step.MOE_PERMUTE_SCOPES)
    local = "local"
    zero_fill = "zero-fill"
    deepgemm = "deepgemm"
    gathered = "gathered"


PermuteScopeOpt = Annotated[PermuteScope | None, typer.Option(
    "--moe-permute-scope",
    help="under an all-gather exchange, which routed copies a rank's permute / unpermute touches: local (its experts' "
         "only: TensorRT-LLM CUTLASS MoE, vLLM DeepGEMM), zero-fill (a zero-fill + top-k sum over every gathered copy: "
         "vLLM / SGLang Triton), deepgemm (vLLM: local on DeepGEMM for block-fp8 on Hopper / Blackwell, else "
         "zero-fill) or gathered (every gathered copy, an upper bound); default: the engine's")]


class OldMoeCollective(StrEnum):
    alltoall = "alltoall"
    allgather = "allgather"


# --moe-collective, serving's old spelling: its "alltoall" was the DeepEP-style dispatch, now --dispatcher deepep.
OLD_MOE_COLLECTIVE = {"alltoall": Dispatcher.deepep, "allgather": Dispatcher.allgather}
OldMoeCollectiveOpt = Annotated[OldMoeCollective | None, typer.Option("--moe-collective", hidden=True)]


def dispatcher_option(dispatcher: Dispatcher | None, old: OldMoeCollective | None) -> Dispatcher | None:
    """--dispatcher, or its old serving spelling --moe-collective (alltoall -> deepep, allgather -> allgather)."""
    return alias(dispatcher, OLD_MOE_COLLECTIVE[old.value] if old is not None else None, "--dispatcher", "--moe-collective")


PlateauOpt = Annotated[float | None, typer.Option(
    "--gemm-plateau", parser=human_float("--gemm-plateau", maximum=1.0),
    help="large-GEMM fraction of peak (default per GPU generation, calc/data/fitted_defaults.json; train-step "
         "--measured-step-time fits one; a --calibration with GEMM points replaces it)")]
HbmEfficiencyOpt = Annotated[float | None, typer.Option(
    "--hbm-efficiency", parser=human_float("--hbm-efficiency", maximum=1.0),
    help="serving: achievable fraction of HBM bandwidth for weight and KV streaming (default 0.9 on NVIDIA, 0.8 on "
         "AMD: calc.hardware.efficiency.memory_efficiency; a --calibration with memory points replaces it)")]


@dataclass(frozen=True)
class ServingKnobs:
    """The serving model's named assumptions latency, serve, report and compare take (one option group,
    calc.cli.groups.takes), turned into ServingAssumptions by calc.cli.serving.serving_assumptions; concurrency, which
    prices memory only, takes --reserve-gib, --comm-buffer-gib and --fp8-moe-scales (whether the checkpoint loads)
    alone. ``moe_collective``: --dispatcher's old serving spelling (hidden); read the exchange as ``exchange``."""

    reserve_gib: ReserveOpt = None
    comm_buffer_gib: CommBufferOpt = None
    fp8_moe_scales: Fp8MoeScalesOpt = None
    moe_serving_rate: MoeServingRateOpt = None
    expert_imbalance: ExpertImbalanceOpt = None
    dispatcher: DispatcherOpt = None
    moe_permute_scope: PermuteScopeOpt = None
    moe_collective: OldMoeCollectiveOpt = None
    step_overhead_ms: StepOverheadOpt = None
    step_overhead_per_seq_us: StepOverheadPerSeqOpt = None
    enforce_eager: EnforceEagerOpt = False
    gemm_plateau: PlateauOpt = None
    hbm_efficiency: HbmEfficiencyOpt = None

    @property
    def exchange(self) -> Dispatcher | None:
        """--dispatcher, or --moe-collective's value in its terms (dispatcher_option); None: the engine's."""
        return dispatcher_option(self.dispatcher, self.moe_collective)

    def given(self, *names: str) -> dict[str, Any]:
        """Option name (no dashes) -> value of ``names`` (every option by default) for refuse_all: None where not
        given (--enforce-eager off included), the exchange as --dispatcher."""
        values = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "moe_collective"}
        values.update(dispatcher=self.exchange, enforce_eager=self.enforce_eager or None)
        return {n: values[n] for n in names} if names else values

    def scales(self) -> str:
        """--fp8-moe-scales' value, else ServingAssumptions' default: how --dtype fp8 loads a 16-bit MoE (as its block
        checkpoint or online per tensor: calc.serving.shards.shard_problem), read before the assumptions are built."""
        from calc.serving.assumptions import DEFAULT_ASSUMPTIONS

        return DEFAULT_ASSUMPTIONS.fp8_moe_scales if self.fp8_moe_scales is None else str(self.fp8_moe_scales)

    def moe_only(self) -> dict[str, Any]:
        """The options that apply to routed experts only (refused for a dense model)."""
        return self.given("expert_imbalance", "fp8_moe_scales", "dispatcher", "moe_permute_scope", "moe_serving_rate")

    def expert_parallel(self) -> dict[str, Any]:
        """The options that apply to an expert-parallel layout only."""
        return self.given("expert_imbalance", "dispatcher", "moe_permute_scope")

    def flags(self) -> dict[str, Any]:
        """Each option's flag and value (None: not given), for a command that refuses them in a mode without serving."""
        return {"--" + n.replace("_", "-"): v for n, v in self.given().items()}


DEFAULT_SERVING_KNOBS = ServingKnobs()  # every assumption at its default


MfuOpt = Annotated[float | None, typer.Option("--mfu", parser=human_float("--mfu"), help="assumed MFU, a fraction (overrides)")]
PriceOpt = Annotated[list[str] | None, typer.Option(
    "--price", help="price per GPU-hour: a number, or GPU=PRICE (repeatable), e.g. --price h100=2.5")]
OldPriceOpt = Annotated[float | None, typer.Option(
    "--price-per-gpu-hour", parser=human_float("--price-per-gpu-hour", allow_zero=True), hidden=True)]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")]
ExplainOpt = Annotated[bool, typer.Option("--explain", help="show every formula with the numbers substituted")]
PlotOpt = Annotated[str | None, typer.Option("--plot", help="write a chart to FILE.png or FILE.svg")]

# Optional forms, for commands (report) whose defaults depend on --mode and that refuse an option
# that does not apply to the chosen mode.
PromptOptional = Annotated[int | None, typer.Option(
    "--prompt", parser=human_int("--prompt"), help=f"input tokens per request (infer; default {DEFAULT_PROMPT})")]
OutputOptional = Annotated[int | None, typer.Option(
    "--output", parser=human_int("--output", minimum=0), help=f"generated tokens per request (infer; default {DEFAULT_OUTPUT})")]
SeqOptional = Annotated[int | None, typer.Option(
    "--seq", "-s", parser=human_int("--seq"), help=f"training sequence length (train, finetune; default {DEFAULT_SEQ})")]
ZeroOptional = Annotated[int | None, typer.Option(
    "--zero", parser=human_int("--zero", minimum=0, maximum=3), help="ZeRO stage 0-3 (train; default: search 0-3, ZeRO-1 with --mfu)")]

# --- training performance (train-step, train-plan, train-time) -------------------------------
VppOpt = Annotated[int, typer.Option("--vpp", parser=human_int("--vpp", maximum=128),
                                     help="interleaved pipeline: model chunks per GPU (virtual stages)")]
PpMicrobatchGroupOpt = Annotated[int | None, typer.Option(
    "--pp-microbatch-group", parser=human_int("--pp-microbatch-group", maximum=100000),
    help="interleaved pipeline: N micro-batches run back to back per model chunk (Megatron-Core "
    "microbatch_group_size_per_vp_stage; Llama 3's tunable N), PP <= N <= the micro-batches; default PP. "
    "A larger N keeps (VPP - 1) more chunk-micro-batches in flight per step of N")]
RecomputeModulesOpt = Annotated[str | None, typer.Option(
    "--recompute-modules", help="with --recompute selective: Megatron-Core's --recompute-modules, comma-separated "
    "(layernorm, mla_up_proj, moe_act, moe, mlp, shared_experts, core_attn): their outputs are dropped and rebuilt in backward")]
CpuOffloadOpt = Annotated[int, typer.Option(
    "--cpu-offload-layers", parser=human_int("--cpu-offload-layers", minimum=0, maximum=100000),
    help="Megatron-Core --cpu-offloading-num-layers: the activations of that many layers kept in host memory "
    "(PP 1, no recomputation, as Megatron requires)")]
OffloadModulesOpt = Annotated[str | None, typer.Option(
    "--offload-modules", help="Megatron-Core fine-grained activation offloading, comma-separated (attn_norm, qkv_linear, "
    "core_attn, attn_proj, mlp_norm, expert_fc1, moe_act): each module's input is kept in host memory until its backward")]
PpEmbeddingOpt = Annotated[bool, typer.Option(
    "--pp-embedding", help="count the embedding as a layer of the first pipeline stage (Megatron-Core "
    "--account-for-embedding-in-pipeline-split: L + 1 (+ 1 with --pp-loss) layers split evenly over PP x VPP)")]
PpLossOpt = Annotated[bool, typer.Option(
    "--pp-loss", help="count the loss as a layer of the last pipeline stage (Megatron-Core "
    "--account-for-loss-in-pipeline-split)")]
SystemOpt = Annotated[str | None, typer.Option(
    "--system", help="node type: GPUs per node, NVLink and NIC bandwidth (see system_specs/; default: the one built from --gpu)")]

class Stack(StrEnum):  # calc.training.stack.STACKS
    megatron = "megatron"
    fsdp = "fsdp"
    llm_foundry = "llm-foundry"
    deepspeed = "deepspeed"
    hf = "hf"


# Training-state bytes per parameter (calc.memory.training.RECIPES): the one --recipe of memory --mode train,
# train-step, train-plan, train-time and report --mode train.
TRAINING_RECIPES = ("bf16-adam", "bf16-adam-fp32-grads", "bf16-adam-bf16-states", "fp32-adam", "sgd-momentum")
DEFAULT_RECIPE = "bf16-adam"  # the engine's default (calc.training.cost.Efficiencies.recipe, calc.memory.training)
RecipeOpt = Annotated[str | None, typer.Option(
    "--recipe", help="training states: " + ", ".join(TRAINING_RECIPES) + " (bf16-adam-bf16-states: NeMo's SFT / PEFT "
                     "optimizer, Adam m and v in bf16, no fp32 master); default bf16-adam, fp32-adam under --dtype "
                     "fp32 / tf32 (no bf16 copy of the weights; activations then 4 B an element)")]


def training_recipe(recipe: str | None, dtype: str) -> str:
    """--recipe as given, else the run's: fp32-adam when it computes in fp32 / TF32 (fp32 weights, gradients and Adam
    states, 4 + 4 + 8 B), else DEFAULT_RECIPE. A bf16-weight recipe under --dtype fp32 / tf32 is refused: bf16 weights
    run bf16 GEMMs, not the TF32 ones the run is timed at."""
    from calc.units import fp32_run

    fp32 = fp32_run(dtype)
    if recipe is None:
        return "fp32-adam" if fp32 else DEFAULT_RECIPE
    if fp32 and recipe.startswith("bf16"):
        raise LLMCalcError("--recipe", f"{recipe} keeps bf16 weights, whose GEMMs run in bf16, while --dtype {dtype} "
                                       "trains in fp32: give --recipe fp32-adam or sgd-momentum, or drop --dtype")
    return recipe


StackOpt = Annotated[Stack | None, typer.Option(
    "--stack", help="training framework: megatron (default for train; TE/cuDNN attention), fsdp (torchtitan, PyTorch FSDP + "
    "SDPA), llm-foundry, deepspeed, hf (HF Trainer / PEFT, eager PyTorch; default for memory --mode finetune): sets the "
    "attention kernel, the fp8 recipe, the fitted stack efficiency and the memory settings (loss, fusions, allocator, "
    "gradient buffer; calc.training.stack.MEMORY)")]

# --- serving engine (issue 14): vLLM / SGLang settings, traffic and targets ----------------------


class Engine(StrEnum):
    vllm = "vllm"
    vllm_v0 = "vllm-v0"
    sglang = "sglang"
    trtllm = "trtllm"


class EmitEngine(StrEnum):
    vllm = "vllm"
    sglang = "sglang"
    trtllm = "trtllm"


EngineOpt = Annotated[Engine, typer.Option(
    "--engine", help="whose memory accounting and step overhead: vllm (V1), vllm-v0 (releases before 0.8), sglang or "
                     "trtllm (PyTorch backend from 1.0, TensorRT engines before: --engine-version where a command "
                     "takes it)")]
EngineVersionOpt = Annotated[str | None, typer.Option(
    "--engine-version", help="engine release whose defaults apply, e.g. 0.8 or 0.29 (vLLM to 0.29; default: vLLM 0.11, the newest "
                              "in the measurement corpus; SGLang 0.5.4, TensorRT-LLM 1.0)")]
GpuMemUtilOpt = Annotated[float | None, typer.Option(
    "--gpu-memory-utilization", parser=human_float("--gpu-memory-utilization", maximum=1.0),
    help="vLLM: fraction of device memory the engine may use (default 0.9)")]
MaxBatchedTokensOpt = Annotated[int | None, typer.Option(
    "--max-num-batched-tokens", parser=human_int("--max-num-batched-tokens"),
    help="vLLM / TRT-LLM (max_num_tokens): tokens per scheduler step (default by engine, version and GPU)")]
MaxNumSeqsOpt = Annotated[int | None, typer.Option(
    "--max-num-seqs", parser=human_int("--max-num-seqs"),
    help="requests running at once (default by engine, version and GPU: vLLM 256 or 1024; serve, without it, launches "
         "each layout with --max-num-seqs at its batch, in the launch line, which sizes the profile run for that batch)")]
BlockSizeOpt = Annotated[int | None, typer.Option(
    "--block-size", parser=human_int("--block-size", maximum=4096), help="vLLM: KV tokens per block (default 16)")]
MemFractionOpt = Annotated[float | None, typer.Option(
    "--mem-fraction-static", parser=human_float("--mem-fraction-static", maximum=1.0),
    help=("SGLang: fraction for weights + KV pool (default: the release's own; from 0.5.4 by GPU memory and TP, "
          "e.g. 0.907 on one H200, 0.847 on an RTX 4090; before 0.5.4 by TP, 0.88..0.79)"))]
ChunkedPrefillOpt = Annotated[int | None, typer.Option(
    "--chunked-prefill-size", parser=human_int("--chunked-prefill-size"), help="SGLang: prefill tokens per step")]


@dataclass(frozen=True)
class EngineLaunch:
    """The engine launch settings every serving command takes (latency, concurrency, serve, report, compare): one
    option group (calc.cli.groups.takes), turned into EngineSettings by calc.cli.serving.engine_settings."""

    gpu_memory_utilization: GpuMemUtilOpt = None
    max_num_batched_tokens: MaxBatchedTokensOpt = None
    max_num_seqs: MaxNumSeqsOpt = None
    block_size: BlockSizeOpt = None
    mem_fraction_static: MemFractionOpt = None
    chunked_prefill_size: ChunkedPrefillOpt = None

    def flags(self) -> dict[str, Any]:
        """Each option's flag and value (None: not given), for a command that refuses them in a mode without an engine."""
        return {"--" + f.replace("_", "-"): getattr(self, f) for f in self.__dataclass_fields__}


DEFAULT_LAUNCH = EngineLaunch()  # every option left to the engine's default
SharedPrefixOpt = Annotated[int, typer.Option(
    "--shared-prefix", parser=human_int("--shared-prefix", minimum=0),
    help="prefix-cached tokens every request shares (stored once)")]
TtftMsOpt = Annotated[float | None, typer.Option("--ttft-ms", parser=human_float("--ttft-ms"), help="TTFT target, ms")]
TpotMsOpt = Annotated[float | None, typer.Option("--tpot-ms", parser=human_float("--tpot-ms"), help="TPOT target, ms")]
RateOpt = Annotated[float | None, typer.Option("--rate", parser=human_float("--rate"), help="arrival rate, requests/s")]
MaxUtilizationOpt = Annotated[float | None, typer.Option(
    "--max-utilization", parser=human_float("--max-utilization", maximum=1.0),
    help="with --rate: the busiest share of a replica's request slots kept occupied (default 0.9 without --ttft-ms; "
         "with --ttft-ms the target bounds the queue)")]
class Router(StrEnum):
    least_loaded = "least-loaded"
    random = "random"


RouterOpt = Annotated[Router | None, typer.Option(
    "--router", help="with --rate: how requests reach the replicas; least-loaded (default: a load-aware router, the "
                     "replicas wait as one queue) or random (a router blind to load: a queue per replica, the "
                     "pessimistic bound)")]
UsersOpt = Annotated[int | None, typer.Option("--users", parser=human_int("--users"), help="concurrent users (closed loop)")]
EmitOpt = Annotated[EmitEngine | None, typer.Option("--emit", help="print the launch command for the best layout")]


@dataclass(frozen=True)
class Traffic:
    """The latency targets and the traffic serve, report and compare size a deployment for (one option group,
    calc.cli.groups.takes)."""

    ttft_ms: TtftMsOpt = None
    tpot_ms: TpotMsOpt = None
    rate: RateOpt = None
    users: UsersOpt = None
    max_utilization: MaxUtilizationOpt = None
    router: RouterOpt = None

    def unpack(self) -> tuple[float | None, float | None, float | None, int | None, float | None, Router | None]:
        """(ttft_ms, tpot_ms, rate, users, max_utilization, router)."""
        return self.ttft_ms, self.tpot_ms, self.rate, self.users, self.max_utilization, self.router


DEFAULT_TRAFFIC = Traffic()  # no target, no traffic


class SpecMethod(StrEnum):
    ngram = "ngram"
    draft = "draft"


SpecMethodOpt = Annotated[SpecMethod | None, typer.Option(
    "--speculative", help="speculative decoding: ngram (prompt lookup) or draft (with --draft MODEL)")]
DraftOpt = Annotated[str | None, typer.Option("--draft", help="draft model for --speculative draft")]
SpecTokensOpt = Annotated[int | None, typer.Option(
    "--spec-tokens", parser=human_int("--spec-tokens", maximum=64), help="proposals per step k (default 4)")]
AcceptanceOpt = Annotated[float | None, typer.Option(
    "--acceptance", parser=human_float("--acceptance", maximum=0.999), help="per-token acceptance rate (default 0.7)")]
DisaggOpt = Annotated[bool, typer.Option(
    "--disaggregated", help="also rank prefill/decode pools (KV sent over the network between them)")]


def given_dtype(ctx: typer.Context | None, dtype: str) -> str | None:
    """--dtype as typed, else None: the weights as the checkpoint ships them (its quantization_config)."""
    return dtype if option_given(ctx, "dtype") else None


def given_weights(ctx: typer.Context | None, m: Any, dtype: str) -> tuple[Any, str | None]:
    """(model, dtype) as the serving engines price them: given_dtype, with a 4-bit weight format (--dtype nvfp4 /
    mxfp4 / awq / gptq) applied to the model as its quantized checkpoint (calc.memory.weights.requantize)."""
    from calc.memory.weights import requantize

    return requantize(m, given_dtype(ctx, dtype))


FINETUNE_4BIT = "fine-tuning takes --method qlora for a 4-bit base"  # why memory / report --mode finetune refuse one


def refuse_weight_format(dtype: str, why: str) -> None:
    """--dtype nvfp4 / mxfp4 / awq / gptq where only a byte width means something (training, FLOPs)."""
    if dtype in WEIGHT_FORMAT_NAMES:
        raise LLMCalcError("--dtype", f"{dtype} is a 4-bit serving weight format (latency, concurrency, serve, report, "
                                      f"compare, memory --mode infer); {why}")
