"""`serve --emit vllm|sglang|trtllm`: the engine command line for the chosen layout, one plain line, with the
flags as each engine names them and every setting the plan depends on:
- vLLM (`vllm serve <hf_id>`; flags of vllm/engine/arg_utils.py EngineArgs.add_cli_args):
  --tensor-parallel-size, --pipeline-parallel-size, --data-parallel-size with --enable-expert-parallel for
  expert parallelism (attention data-parallel, experts spread over the DP x TP ranks), --max-model-len (the
  request's prompt + output unless given), --max-num-seqs (the plan's batch per engine), --max-num-batched-tokens,
  --kv-cache-dtype (auto = the model dtype; fp8 only when asked), --gpu-memory-utilization, --block-size.
- SGLang (`python -m sglang.launch_server`; python/sglang/srt/server_args.py): --model-path, --tp, --pp-size,
  --dp with --enable-dp-attention and --ep-size for EP, --mem-fraction-static, --context-length,
  --max-running-requests, --chunked-prefill-size, --kv-cache-dtype (auto | fp8_e4m3).
- TensorRT-LLM (`trtllm-serve <hf_id> --backend pytorch`; tensorrt_llm/commands/serve.py): --tp_size, --pp_size,
  --ep_size, --max_batch_size, --max_num_tokens, --max_seq_len, --kv_cache_free_gpu_memory_fraction.
A --max-model-len past the model's context window (calc.cli.common.engine_window) starts the line with the engine's
switch that admits it: vLLM VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 (vllm/envs.py: "allow max_model_len greater than derived
from model config"), SGLang SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1 (python/sglang/srt/configs/model_config.py,
before its "User-specified context_length ... is greater than the derived context_length" refusal); the RoPE scaling
that makes the model answer well that far (YaRN, from the model card) is the user's to add. TensorRT-LLM: refused
(no switch sourced here).
A disaggregated plan (serve --disaggregated, calc.serving.disagg) is two pools, so two commands, each under a comment
line naming its instance count: the prefill pool's (no --max-num-seqs / --max-running-requests: a prefill-only
instance is sized by its batched tokens) and the decode pool's (the plan's batch, the speculation). vLLM: both with
--kv-transfer-config '{"kv_connector":"NixlConnector","kv_role":"kv_both"}' (docs/features/nixl_connector_usage.md:
a proxy routes each request to a prefill then a decode instance); SGLang: --disaggregation-mode prefill | decode
(server_args.py; the transfer backend left at its default, mooncake). TensorRT-LLM launches a disaggregated
deployment from a `trtllm-serve disaggregated -c` file of context and generation servers, not a flag line: refused.
"""

from __future__ import annotations

import math
from typing import Any

from calc.errors import LLMCalcError
from calc.memory.kv import auto_kv_dtype, sparse_mla
from calc.serving.assumptions import VLLM_AGRS_DEFAULT_FROM, engine_dispatcher
from calc.serving.moe import attention_ranks
from calc.serving.trtllm_memory import trtllm_backend
from calc.specs import ModelSpec
from calc.specs.serving import EngineSettings
from calc.units import plural

LOCAL_MODEL = "MODEL_DIR"  # a model from a file that names no HuggingFace id: the user's checkpoint directory


def model_id(m: ModelSpec) -> str:
    """What the engine loads: the HuggingFace repo id the catalog records, else LOCAL_MODEL, a placeholder the line's
    comment explains (a config.json or YAML given by path names no repo, and its file name is not a checkpoint)."""
    return m.hf_id or LOCAL_MODEL


# How each engine spells a --dispatcher (calc.hardware.moe_ops.DISPATCHERS) that is not its default
# (calc.serving.assumptions.engine_dispatcher); notes/dispatcher-one-vocabulary.md has the sources.
# vLLM: the all2all backend (vllm/envs.py VLLM_ALL2ALL_BACKEND from v0.9.0; ParallelConfig.all2all_backend /
# --all2all-backend later, same values): "naive" (NaiveAll2AllManager: broadcast + all-reduce), from 0.11
# "allgather_reducescatter" (PR #23964, AgRsAll2AllManager), "deepep_high_throughput" (DeepEP normal kernels) and
# "deepep_low_latency" (DeepEP low-latency kernels). One backend serves every step, and llmcalc's deepep prices the
# decode steps (which set TPOT and the batch) with the low-latency kernels (calc.serving.moe.a2a_s): deepep ->
# deepep_low_latency. vLLM has no plain NCCL all-to-all backend (pplx is its own kernel): alltoall is refused.
# The flag is emitted from 0.11, the project's boundary for allgather_reducescatter (VLLM_AGRS_DEFAULT_FROM); before it
# the same value goes in the VLLM_ALL2ALL_BACKEND environment variable, where no allgather_reducescatter exists.
VLLM_ALL2ALL = {"naive": "naive", "allgather": "allgather_reducescatter", "deepep": "deepep_low_latency"}
# SGLang (python/sglang/srt/server_args.py): --moe-a2a-backend "none" (the default: DP attention gathers the tokens,
# priced as allgather) or "deepep"; no plain all-to-all or naive backend.
SGLANG_A2A = {"deepep": "deepep"}


def dispatcher_flag(emit: str, dispatcher: str, version: tuple[int, ...]) -> tuple[str, str]:
    """(environment prefix, flag) that make ``emit``'s engine at ``version`` run ``dispatcher``, a value that is not
    its default; LLMCalcError naming --dispatcher when the engine has no spelling for it at that version.

    >>> dispatcher_flag("vllm", "deepep", (0, 11)), dispatcher_flag("vllm", "deepep", (0, 10, 1))
    (('', '--all2all-backend deepep_low_latency'), ('VLLM_ALL2ALL_BACKEND=deepep_low_latency', ''))
    >>> dispatcher_flag("sglang", "deepep", (0, 5, 4))
    ('', '--moe-a2a-backend deepep')
    """
    if emit == "vllm":
        value = VLLM_ALL2ALL.get(dispatcher)
        agrs = version >= VLLM_AGRS_DEFAULT_FROM
        if value is not None and version >= (0, 9) and (agrs or dispatcher != "allgather"):
            return ("", f"--all2all-backend {value}") if agrs else (f"VLLM_ALL2ALL_BACKEND={value}", "")
    elif emit == "sglang" and dispatcher in SGLANG_A2A:
        return "", f"--moe-a2a-backend {SGLANG_A2A[dispatcher]}"
    raise LLMCalcError("--dispatcher", f"{dispatcher}: {emit} {'.'.join(map(str, version))} has no setting for it "
                                       "to emit; drop --emit, or give a dispatcher the engine runs")


# A --dtype the plan was priced at, on a checkpoint shipped in 16 bits, as each engine loads it: vLLM / SGLang quantize
# to FP8 online (--quantization fp8: per-tensor dynamic FP8, vllm/model_executor/layers/quantization/fp8.py
# Fp8LinearMethod for an unquantized checkpoint; SGLang the same flag) and cast with --dtype. Integer formats need
# a quantized checkpoint (the CLI says so); TensorRT-LLM's trtllm-serve takes quantization in its options file.
VLLM_DTYPE_FLAGS = {"fp8": "--quantization fp8", "fp16": "--dtype float16", "bf16": "--dtype bfloat16",
                    "fp32": "--dtype float32"}


def dtype_flag(m: ModelSpec, emit: str, dtype: str | None) -> str:
    """The flag that makes ``emit``'s engine run the weights at the plan's ``dtype`` ('' when the checkpoint already
    ships so, or no flag does it: the caller warns).

    >>> from calc.sources.catalog import load_model
    >>> dtype_flag(load_model("llama3-8b"), "vllm", "fp8"), dtype_flag(load_model("llama3-8b"), "vllm", "bf16")
    ('--quantization fp8', '')
    """
    # a quantized checkpoint is loaded as shipped (--dtype re-prices it: no flag makes it so)
    if dtype is None or emit == "trtllm" or m.quantization is not None or dtype == m.checkpoint_dtype:
        return ""
    return VLLM_DTYPE_FLAGS.get(dtype, "")


def speculation_flag(emit: str, speculation: Any) -> str:
    """vLLM's --speculative-config for the plan's speculation (vllm/config/speculative.py SpeculativeConfig: method
    "ngram" with num_speculative_tokens and prompt_lookup_max; a draft model by its id), quoted for the shell; ''
    without speculation or for another engine (the caller warns)."""
    if speculation is None or emit != "vllm":
        return ""
    import json

    config = ({"method": "ngram", "num_speculative_tokens": speculation.tokens, "prompt_lookup_max": 4}
              if speculation.draft is None
              else {"model": model_id(speculation.draft), "num_speculative_tokens": speculation.tokens})
    return f"--speculative-config '{json.dumps(config)}'"


def check_kv_flag(m: ModelSpec, emit: str, kv_dtype: str, dtype: str | None, auto: str | None = None) -> None:
    """Refuse a plan whose KV dtype the emitted line cannot start: vLLM's --kv-cache-dtype and SGLang's take ``auto``
    (the model's activation dtype) or an fp8 format (vllm/config/cache.py CacheDType; sglang server_args
    --kv-cache-dtype), so an int8 or fp32 KV cache (or bf16 under an fp16 model) would start as ``auto`` and hold
    another token count than the plan; trtllm-serve sets the KV dtype only in its --extra_llm_api_options file
    (kv_cache_config dtype), not on the line. ``auto``: what the plan's ``auto`` resolved to on its GPU (fp16 for a
    bf16 model on a GPU without bf16, where the engines cast the model to fp16), else the model's own.

    >>> from calc.sources.catalog import load_model
    >>> check_kv_flag(load_model("llama3-8b"), "vllm", "fp8", None)  # fp8 and the model dtype are fine
    """
    act = auto or auto_kv_dtype(dtype or m.checkpoint_dtype, m.checkpoint_dtype)  # what "auto" stores (the plan's default)
    if kv_dtype in (act, "auto"):  # "auto": a library caller's unresolved default
        return
    if emit == "trtllm":
        raise LLMCalcError("--kv-dtype", f"{kv_dtype}: trtllm-serve takes the KV dtype in its --extra_llm_api_options file "
                                         "(kv_cache_config: dtype), not on its command line; emit vllm or sglang, or "
                                         f"price the plan with --kv-dtype {act}")
    if kv_dtype != "fp8":
        raise LLMCalcError("--kv-dtype", f"{kv_dtype}: {emit} stores its KV cache in the model's {act} (--kv-cache-dtype "
                                         f"auto) or fp8, so the line would start another cache than the plan; use "
                                         f"--kv-dtype {act} or fp8, or drop --emit")


# vLLM V1 raised NotImplementedError for a draft-model speculator through 0.13 (vllm-project/vllm issue 31883, v0.13.0;
# draft models came back with PR 24322 after it): an emitted line with one would not start on those releases.
VLLM_V1_NO_DRAFT_UNTIL = (0, 13)
# 0.8 / 0.9 ran V1 by default but fell back to V0 for a draft model (EngineArgs._is_v1_supported_oracle) unless
# VLLM_USE_V1 was set, which the line does not; from 0.10 V1 was the only engine for it
VLLM_V1_ONLY_FROM = (0, 10)


def launch_command(m: ModelSpec, s: EngineSettings, best: Any, emit: str, kv_dtype: str, batched_tokens: int,
                   gpu_memory_bytes: int = 0, eager: bool = False, dispatcher: str | None = None,
                   dtype: str | None = None, speculation: Any = None, auto_kv: str | None = None,
                   gpus_per_node: int = 8) -> str:
    """The engine command line for the chosen layout (``best``: tp, pp, ep, batch), as one plain line. SGLang's
    --mem-fraction-static is the fraction the plan was sized with (EngineSettings.mem_fraction on the GPU's memory:
    by GPU memory from SGLang 0.5.4, by TP before). ``eager``: the plan was timed without CUDA graphs (--enforce-eager),
    so the line says so (vLLM --enforce-eager, SGLang --disable-cuda-graph; TensorRT-LLM's trtllm-serve takes it in an
    extra-options file, not a flag: refused). ``dispatcher``: the plan's (ServingAssumptions.dispatcher); under
    expert parallelism one that is not the engine's default at its version goes on the line (dispatcher_flag).
    A disaggregated ``best`` (prefill_gpus > 0): the two pools' commands, each under its comment (module docstring).
    ``auto_kv``: the KV dtype the engine's auto gives on the plan's GPU (check_kv_flag). A replica on more GPUs than
    a node has (``gpus_per_node``): each node's command (multi_node)."""
    if eager and emit == "trtllm":
        raise LLMCalcError("--enforce-eager", "trtllm-serve has no eager flag (CUDA graphs are set in its extra options "
                                              "file); emit vllm or sglang, or drop --enforce-eager")
    if emit == "trtllm" and s.engine == "trtllm" and trtllm_backend(s.version()) != "pytorch":
        raise LLMCalcError("--emit", f"TensorRT-LLM {'.'.join(map(str, s.version()))} runs the TensorRT-engine flow this "
                                     "plan was priced for (trtllm-build, then the engine served), not one command line "
                                     "(the --backend pytorch line is 1.0's and later); give --engine-version 1.0 or "
                                     "later, or emit vllm / sglang")
    if emit == "trtllm" and s.block_size is not None:  # as the KV dtype (check_kv_flag): not a command-line setting
        raise LLMCalcError("--block-size", "trtllm-serve takes the KV block size in its --extra_llm_api_options file "
                                           "(kv_cache_config: tokens_per_block), not on its command line; emit vllm, or "
                                           "drop --block-size")
    check_kv_flag(m, emit, kv_dtype, dtype, auto_kv)
    if emit == "vllm" and speculation is not None and speculation.draft is not None \
            and VLLM_V1_ONLY_FROM <= s.version() <= VLLM_V1_NO_DRAFT_UNTIL:
        raise LLMCalcError("--speculative", f"vLLM {'.'.join(map(str, s.version()))} (V1) does not run a separate draft "
                                            "model (NotImplementedError 'Speculative decoding with draft model is not "
                                            "supported yet': vllm-project/vllm issues 28384, 31883 on 0.13); emit sglang, "
                                            "or plan --speculative ngram")
    prefill_gpus = getattr(best, "prefill_gpus", 0)
    local = "" if m.hf_id else (f"# {LOCAL_MODEL}: the directory of {m.name}'s checkpoint (its config.json and weights; "
                                "the config given names no HuggingFace id)\n")
    if not prefill_gpus:
        return local + multi_node(_pool_line(m, s, best, emit, kv_dtype, batched_tokens, gpu_memory_bytes, eager,
                                             dispatcher, dtype, speculation, None), emit, best, gpus_per_node)
    if emit == "trtllm":
        raise LLMCalcError("--emit", "TensorRT-LLM launches a disaggregated plan from a `trtllm-serve disaggregated -c` "
                                     "config of context and generation servers, not a command line; emit vllm or sglang, "
                                     "or drop --disaggregated")
    instances = prefill_gpus // best.gpus_per_replica
    prefill = _pool_line(m, s, best, emit, kv_dtype, batched_tokens, gpu_memory_bytes, eager, dispatcher, dtype, None,
                         "prefill")
    decode = _pool_line(m, s, best, emit, kv_dtype, batched_tokens, gpu_memory_bytes, eager, dispatcher, dtype,
                        speculation, "decode")
    gpus = plural(best.gpus_per_replica, "GPU")
    return (f"{local}# prefill pool: {plural(instances, 'instance')} of {gpus}\n{prefill}\n"
            f"# decode pool: {plural(best.replicas, 'instance')} of {gpus}\n{decode}")


HEAD = "HEAD_IP"  # the first node's address, which the user fills in


def multi_node(line: str, emit: str, best: Any, gpus_per_node: int) -> str:
    """``line`` for a replica of more GPUs than a node has, as each engine starts one across N nodes:

    - vLLM, TP x PP: one command on the head node of a Ray cluster spanning the nodes, with
      --distributed-executor-backend ray (vLLM's multi-node serving docs: ``ray start --head`` on the head node,
      ``ray start --address HEAD:6379`` on the others);
    - vLLM, data-parallel attention + EP: one command a node, each with --data-parallel-size-local (its ranks) and
      the head's --data-parallel-address / --data-parallel-rpc-port, the others --headless from
      --data-parallel-start-rank r x local (vLLM's data-parallel deployment docs);
    - SGLang: the same command on every node with --nnodes N --node-rank r --dist-init-addr HEAD:5000 (its
      multi-node docs);
    - TensorRT-LLM: trtllm-serve under MPI / Slurm, one rank per GPU through trtllm-llmapi-launch.

    >>> from types import SimpleNamespace as L
    >>> print(multi_node("python -m sglang.launch_server --tp 16", "sglang", L(tp=16, pp=1, ep=1), 8))
    # 16 GPUs over 2 nodes of 8: run on each node r = 0..1 (HEAD_IP: node 0's address)
    python -m sglang.launch_server --tp 16 --nnodes 2 --node-rank 0 --dist-init-addr HEAD_IP:5000
    python -m sglang.launch_server --tp 16 --nnodes 2 --node-rank 1 --dist-init-addr HEAD_IP:5000
    """
    gpus = max(best.tp * best.pp, best.ep)
    if gpus <= gpus_per_node:
        return line
    nodes = math.ceil(gpus / gpus_per_node)
    head = f"# {gpus} GPUs over {nodes} nodes of {gpus_per_node}: "
    if emit == "sglang":
        return head + f"run on each node r = 0..{nodes - 1} ({HEAD}: node 0's address)\n" + "\n".join(
            f"{line} --nnodes {nodes} --node-rank {r} --dist-init-addr {HEAD}:5000" for r in range(nodes))
    if emit == "trtllm":
        return (head + "start it under MPI / Slurm, one rank per GPU, e.g.\n"
                f"srun -N {nodes} --ntasks-per-node {gpus_per_node} --mpi=pmix trtllm-llmapi-launch {line}")
    if best.ep > 1:  # vLLM data-parallel attention: DP ranks of TP GPUs, gpus_per_node / tp of them a node
        local = gpus_per_node // best.tp
        dp_flags = f"--data-parallel-size-local {local} --data-parallel-address {HEAD} --data-parallel-rpc-port 13345"
        return head + f"one command a node ({HEAD}: node 0's address)\n" + "\n".join(
            f"{line} {dp_flags}" + (f" --headless --data-parallel-start-rank {r * local}" if r else "")
            for r in range(nodes))
    return (head + f"a Ray cluster over them (ray start --head on node 0, ray start --address {HEAD}:6379 on the "
            f"others), then on node 0\n{line} --distributed-executor-backend ray")


# Each engine's switch for a max_model_len past the model's own window (module docstring).
LONG_CONTEXT_ENV = {"vllm": "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1", "sglang": "SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1"}


def long_context_env(m: ModelSpec, s: EngineSettings, emit: str) -> str:
    """The environment prefix that lets ``emit``'s engine start at ``s.max_model_len`` past the model's context
    window ("" within it); LLMCalcError naming --emit for TensorRT-LLM."""
    if s.max_model_len is None or s.max_model_len <= m.context_window:
        return ""
    if emit not in LONG_CONTEXT_ENV:
        raise LLMCalcError("--emit", f"--max-model-len {s.max_model_len:,} is past {m.name}'s context window of "
                                     f"{m.context_window:,}, and llmcalc knows no trtllm-serve switch that admits it; "
                                     "emit vllm or sglang, or give --max-model-len <= the window")
    return LONG_CONTEXT_ENV[emit]


# Each engine's flags for a disaggregated pool (module docstring).
VLLM_NIXL = """--kv-transfer-config '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'"""


def _pool_line(m: ModelSpec, s: EngineSettings, best: Any, emit: str, kv_dtype: str, batched_tokens: int,
               gpu_memory_bytes: int, eager: bool, dispatcher: str | None, dtype: str | None, speculation: Any,
               role: str | None) -> str:
    """One engine command: the whole deployment's (``role`` None) or a disaggregated pool's ("prefill" | "decode")."""
    line = _launch_line(m, s, best, emit, kv_dtype, batched_tokens, gpu_memory_bytes, role != "prefill")
    line = " ".join(part for part in (long_context_env(m, s, emit), line) if part)
    disagg = (VLLM_NIXL if emit == "vllm" else f"--disaggregation-mode {role}") if role else ""
    line = " ".join(part for part in (line, dtype_flag(m, emit, dtype), speculation_flag(emit, speculation), disagg) if part)
    if dispatcher is not None and best.ep > 1:
        if dispatcher != engine_dispatcher(s.engine, s.version()):
            env, flag = dispatcher_flag(emit, dispatcher, s.version())
            line = " ".join(part for part in (env, line, flag) if part)
    if m.trust_remote_code:  # the checkpoint's own code (Kimi K2's tokenizer): every engine refuses it without this
        line += " --trust_remote_code" if emit == "trtllm" else " --trust-remote-code"
    if not eager:
        return line
    return line + (" --enforce-eager" if emit == "vllm" else " --disable-cuda-graph")


def _vllm_kv_flag(m: ModelSpec, fp8_kv: bool) -> str:
    """vLLM's --kv-cache-dtype for the plan's cache: fp8, or ``auto`` (the model dtype), except under DeepSeek-V3.2's
    sparse attention, where vLLM starts ``auto`` as its fp8 record and a 16-bit cache needs ``bfloat16``
    (calc.serving.engine_memory.resolve_kv_dtype)."""
    if fp8_kv:
        return "fp8"
    return "bfloat16" if sparse_mla(m) else "auto"


# Each engine's cap on the requests it runs at once, which the --emit line sets from the plan's batch, and how the
# line's number relates to the batch under expert parallelism (``request_cap``)
REQUEST_CAP = {"vllm": ("--max-num-seqs", "per attention group under EP: batch / DP rounded up"),
               "sglang": ("--max-running-requests", "rounded up to a multiple of DP under EP"),
               "trtllm": ("--max_batch_size", "per rank under attention DP: batch / DP rounded up")}


def request_cap(engine: str, batch: int, tp: int, ep: int) -> tuple[str, int, str]:
    """(flag, value, scope) of the running-request cap an engine is launched with for a replica running ``batch``
    requests at TP ``tp`` x EP ``ep``: the one figure the --emit line writes and a page quotes. Under EP the
    attention runs data-parallel over DP = EP / TP groups (calc.serving.moe.attention_ranks), each taking
    ceil(batch / DP): vLLM's --max-num-seqs and TensorRT-LLM's --max_batch_size (attention DP) are per group,
    SGLang's --max-running-requests the total it splits over the DP ranks, a multiple of DP (ceil(batch / DP) x DP).

    >>> request_cap("vllm", 100, 1, 8), request_cap("sglang", 100, 1, 8), request_cap("trtllm", 100, 2, 1)
    (('--max-num-seqs', 13, 'per attention group'), ('--max-running-requests', 104, 'in all'), ('--max_batch_size', 100, ''))
    """
    flag = REQUEST_CAP.get(engine.split("-")[0], REQUEST_CAP["vllm"])[0]
    dp = attention_ranks(tp, ep)
    per_group = math.ceil(batch / dp)
    if ep <= 1:
        return flag, batch, ""
    if flag == REQUEST_CAP["sglang"][0]:
        return flag, per_group * dp, "in all"
    return flag, per_group, "per attention group"


def _launch_line(m: ModelSpec, s: EngineSettings, best: Any, emit: str, kv_dtype: str, batched_tokens: int,
                 gpu_memory_bytes: int, batch_flag: bool = True) -> str:
    dp = attention_ranks(best.tp, best.ep)  # EP = DP x TP (calc.serving.moe)
    cap = request_cap(emit, best.batch, best.tp, best.ep)[1]  # each data-parallel attention group runs its own share
    fp8_kv = kv_dtype == "fp8"
    name = model_id(m)
    if emit == "vllm":
        if best.ep > 1:
            parallel = f"--tensor-parallel-size {best.tp} --data-parallel-size {dp} --enable-expert-parallel"
        else:
            parallel = f"--tensor-parallel-size {best.tp} --pipeline-parallel-size {best.pp}"
        seqs_flag = f" --max-num-seqs {cap}" if batch_flag else ""
        # V0 chunks prefill only when told (or above a 32K context): the plan priced chunked steps (EngineSettings
        # .chunked: a step budget below the context is one V0 refuses otherwise), so the line says so
        chunk_flag = " --enable-chunked-prefill" if s.accounting() == "vllm-v0" and s.chunked(m.max_position_embeddings) else ""
        return (f"vllm serve {name} {parallel} --max-model-len {s.max_model_len}{seqs_flag} "
                f"--max-num-batched-tokens {batched_tokens}{chunk_flag} --kv-cache-dtype {_vllm_kv_flag(m, fp8_kv)} "
                f"--gpu-memory-utilization {s.gpu_memory_utilization:g} --block-size {s.page_tokens()}")
    if emit == "sglang":
        if best.ep > 1:
            parallel = f"--tp {best.ep} --dp {dp} --enable-dp-attention --ep-size {best.ep}"
        else:
            parallel = f"--tp {best.tp} --pp-size {best.pp}"
        # SGLang splits --max-running-requests over the DP attention ranks (each runs total // dp): a multiple of dp
        return (f"python -m sglang.launch_server --model-path {name} {parallel} "
                f"--mem-fraction-static {s.mem_fraction(best.tp, gpu_memory_bytes, best.pp):g} --context-length {s.max_model_len} "
                + (f"--max-running-requests {cap} " if batch_flag else "")
                + f"--chunked-prefill-size {batched_tokens} "
                f"--kv-cache-dtype {'fp8_e4m3' if fp8_kv else 'auto'}")
    if emit == "trtllm":
        # attention DP (EP layouts, attention TP 1: plan._candidates) is an LLM API option, not a trtllm-serve flag:
        # written to a YAML --extra_llm_api_options reads; --max_batch_size is then each rank's
        attention_dp = best.ep > 1
        return (("printf 'enable_attention_dp: true\\n' > attention_dp.yaml && " if attention_dp else "")
                + f"trtllm-serve {name} --backend pytorch --tp_size {best.tp * dp} --pp_size {best.pp} "
                f"--ep_size {best.ep} --max_batch_size {cap} --max_num_tokens {batched_tokens} "
                f"--max_seq_len {s.max_model_len} --kv_cache_free_gpu_memory_fraction {s.free_gpu_memory_fraction:g}"
                + (" --extra_llm_api_options attention_dp.yaml" if attention_dp else ""))
    raise LLMCalcError("--emit", f"unknown engine {emit!r}; use vllm, sglang or trtllm")


def engine_layout(engine: str, tp: int, pp: int = 1, dp: int = 1, ep: int = 1, enable_expert_parallel: bool = False,
                  enable_dp_attention: bool = False) -> tuple[int, int, int]:
    """The (tp, pp, ep) layout `serve` ranks (calc.serving.moe: t attention-TP ranks, EP = d x t) for an engine's
    own parallelism flags: the inverse of _launch_line. ``tp`` / ``pp`` / ``dp`` / ``ep`` are the flags' values:
    - vLLM (vllm/model_executor/layers/fused_moe/config.py FusedMoEParallelConfig.make): --tensor-parallel-size t
      --data-parallel-size d --enable-expert-parallel puts the experts whole on EP = d x t ranks, attention TP t on
      each of the d data-parallel ranks -> (t, pp, d x t); d = 1 is attention TP t with EP = t over the same GPUs.
      Without --enable-expert-parallel the experts are TP-sharded (over d x t ranks when d > 1, flattened across DP).
    - SGLang (python/sglang/srt/server_args.py): --tp n [--dp d --enable-dp-attention] [--ep-size e]: attention TP
      n / d with DP attention (n without), the MoE layers moe_tp = n / e; e = n spreads the experts whole
      -> (n / d, pp, n); e = 1 with d = 1 is plain TP n -> (n, pp, 1).
    - TensorRT-LLM (the trtllm-bench rows): --tp_size n --ep_size n with attention DP -> (1, pp, n).
    A layout the step model cannot time (experts TP-sharded under data-parallel attention, EP and TP mixed inside the
    MoE layers, data-parallel replicas of a dense model, EP with PP) raises LLMCalcError naming the flag.

    >>> engine_layout("vllm", 8, enable_expert_parallel=True), engine_layout("vllm", 2, dp=4, enable_expert_parallel=True)
    ((8, 1, 8), (2, 1, 8))
    >>> engine_layout("sglang", 8, dp=8, ep=8, enable_dp_attention=True), engine_layout("sglang", 8, enable_dp_attention=True)
    ((1, 1, 8), (8, 1, 1))
    """
    if engine in ("vllm", "vllm-v0"):
        if dp > 1 and not enable_expert_parallel:
            raise LLMCalcError("--data-parallel-size", f"DP {dp} without --enable-expert-parallel: TP-sharded experts "
                                                       "under data-parallel attention (or DP replicas) are not modelled")
        attention_tp, experts = tp, (tp * dp if enable_expert_parallel else 1)
    elif engine == "sglang":
        if dp > 1 and not enable_dp_attention:
            raise LLMCalcError("--dp", f"DP {dp} without --enable-dp-attention runs {dp} replicas behind a router: "
                                       "predict one replica")
        if tp % dp:
            raise LLMCalcError("--dp", f"--tp {tp} is not a multiple of --dp {dp}")
        attention_tp = tp // dp if enable_dp_attention else tp
        if ep not in (1, tp):
            raise LLMCalcError("--ep-size", f"EP {ep} inside TP {tp} (experts also TP-split, moe_tp = tp / ep) is not modelled")
        if ep == 1 and attention_tp < tp:
            raise LLMCalcError("--ep-size", "TP-sharded experts under data-parallel attention (--dp > 1 without "
                                            "--ep-size = --tp) are not modelled")
        experts = ep
    elif engine == "trtllm":
        if ep > 1 and ep != tp:
            raise LLMCalcError("--ep_size", f"EP {ep} inside TP {tp} (experts also TP-split, moe_tp = tp / ep) is not modelled")
        attention_tp, experts = (1, ep) if ep > 1 else (tp, 1)
    else:
        raise LLMCalcError("--engine", f"unknown engine {engine!r}; use vllm, vllm-v0, sglang or trtllm")
    if experts > 1 and pp > 1:
        raise LLMCalcError("--pipeline-parallel-size", "expert parallelism with pipeline stages is not modelled")
    return attention_tp, pp, experts
