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
"""

from __future__ import annotations

import math
from typing import Any

from calc.errors import LLMCalcError
from calc.serving.moe import attention_ranks
from calc.specs import ModelSpec
from calc.specs.serving import EngineSettings


def model_id(m: ModelSpec) -> str:
    """What the engine loads: the HuggingFace repo id the catalog records, else the model's name (a local path)."""
    return m.hf_id or m.name


def launch_command(m: ModelSpec, s: EngineSettings, best: Any, emit: str, kv_dtype: str, batched_tokens: int,
                   gpu_memory_bytes: int = 0, eager: bool = False) -> str:
    """The engine command line for the chosen layout (``best``: tp, pp, ep, batch), as one plain line. SGLang's
    --mem-fraction-static is the fraction the plan was sized with (EngineSettings.mem_fraction on the GPU's memory:
    by GPU memory from SGLang 0.5.4, by TP before). ``eager``: the plan was timed without CUDA graphs (--enforce-eager),
    so the line says so (vLLM --enforce-eager, SGLang --disable-cuda-graph; TensorRT-LLM's trtllm-serve takes it in an
    extra-options file, not a flag: refused)."""
    line = _launch_line(m, s, best, emit, kv_dtype, batched_tokens, gpu_memory_bytes)
    if not eager:
        return line
    if emit == "trtllm":
        raise LLMCalcError("--enforce-eager", "trtllm-serve has no eager flag (CUDA graphs are set in its extra options "
                                              "file); emit vllm or sglang, or drop --enforce-eager")
    return line + (" --enforce-eager" if emit == "vllm" else " --disable-cuda-graph")


def _launch_line(m: ModelSpec, s: EngineSettings, best: Any, emit: str, kv_dtype: str, batched_tokens: int,
                 gpu_memory_bytes: int) -> str:
    dp = attention_ranks(best.tp, best.ep)  # EP = DP x TP (calc.serving.moe)
    seqs = math.ceil(best.batch / dp)  # each data-parallel attention group runs its own share
    fp8_kv = kv_dtype == "fp8"
    name = model_id(m)
    if emit == "vllm":
        if best.ep > 1:
            parallel = f"--tensor-parallel-size {best.tp} --data-parallel-size {dp} --enable-expert-parallel"
        else:
            parallel = f"--tensor-parallel-size {best.tp} --pipeline-parallel-size {best.pp}"
        return (f"vllm serve {name} {parallel} --max-model-len {s.max_model_len} --max-num-seqs {seqs} "
                f"--max-num-batched-tokens {batched_tokens} --kv-cache-dtype {'fp8' if fp8_kv else 'auto'} "
                f"--gpu-memory-utilization {s.gpu_memory_utilization:g} --block-size {s.page_tokens()}")
    if emit == "sglang":
        if best.ep > 1:
            parallel = f"--tp {best.ep} --dp {dp} --enable-dp-attention --ep-size {best.ep}"
        else:
            parallel = f"--tp {best.tp} --pp-size {best.pp}"
        return (f"python -m sglang.launch_server --model-path {name} {parallel} "
                f"--mem-fraction-static {s.mem_fraction(best.tp, gpu_memory_bytes, best.pp):g} --context-length {s.max_model_len} "
                f"--max-running-requests {best.batch} --chunked-prefill-size {batched_tokens} "
                f"--kv-cache-dtype {'fp8_e4m3' if fp8_kv else 'auto'}")
    if emit == "trtllm":
        return (f"trtllm-serve {name} --backend pytorch --tp_size {best.tp * dp} --pp_size {best.pp} "
                f"--ep_size {best.ep} --max_batch_size {best.batch} --max_num_tokens {batched_tokens} "
                f"--max_seq_len {s.max_model_len} --kv_cache_free_gpu_memory_fraction {s.free_gpu_memory_fraction:g}")
    raise LLMCalcError("--emit", f"unknown engine {emit!r}; use vllm, sglang or trtllm")
