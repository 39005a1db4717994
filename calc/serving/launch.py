"""`serve --emit vllm|sglang`: the engine command line for the chosen layout, with the flags as each
engine names them (vLLM `vllm serve` engine args; SGLang `sglang.launch_server` server args)."""

from __future__ import annotations

import math
from typing import Any

from calc.errors import LLMCalcError
from calc.specs.serving import EngineSettings


def launch_command(model: str, s: EngineSettings, best: Any, tokens: int, emit: str) -> str:
    """The engine command line for the chosen layout (flags as vLLM / SGLang name them)."""
    if emit == "vllm":
        parallel = (f"--data-parallel-size {best.ep} --enable-expert-parallel" if best.ep > 1 else
                    f"--tensor-parallel-size {best.tp} --pipeline-parallel-size {best.pp}")
        return (f"vllm serve {model} {parallel} "
                f"--gpu-memory-utilization {s.gpu_memory_utilization:g} --max-model-len {s.max_model_len} "
                f"--max-num-seqs {math.ceil(best.batch / best.ep)} --block-size {s.block_size}"
                + (f" --max-num-batched-tokens {s.max_num_batched_tokens}" if s.max_num_batched_tokens else ""))
    if emit == "sglang":
        parallel = (f"--tp {best.ep} --dp {best.ep} --enable-dp-attention --ep-size {best.ep}" if best.ep > 1 else
                    f"--tp {best.tp} --pp-size {best.pp}")
        return (f"python -m sglang.launch_server --model-path {model} {parallel} "
                f"--mem-fraction-static {s.mem_fraction(best.tp):g} --context-length {s.max_model_len} "
                f"--max-running-requests {best.batch}"
                + (f" --chunked-prefill-size {s.chunked_prefill_size}" if s.chunked_prefill_size else ""))
    raise LLMCalcError("--emit", f"unknown engine {emit!r}; use vllm or sglang")
