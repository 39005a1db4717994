"""Serving-specific overheads: every one a named input with a default, printed by --explain.

One set of defaults serves every row of benchmarks/validate_serving.py; none is tuned to a row.
- cuda_context_gib: memory outside PyTorch's allocator on each GPU (CUDA context, cuBLAS/cuDNN
  workspaces). vLLM counts it as "non-torch" memory in its profile (worker.py / gpu_worker.py);
  typical 0.3-0.6 GiB on NVIDIA parts.
- comm_buffer_gib: NCCL communicator buffers and vLLM's custom all-reduce buffers on each GPU when
  the model is split (TP or PP > 1).
- step_overhead_s: per scheduler step, the CPU work vLLM/SGLang do between forward passes
  (scheduling, input preparation, sampling, detokenisation), not hidden by CUDA graphs. Its default
  is read from calc/data/fitted_defaults.json (benchmarks/fit_corpus.py).
- internode_gb_s / gpus_per_node: the node used for a GPU that ships in no system_specs/ node.
GEMM efficiency, HBM efficiency and collective latency/efficiency are NOT here: they come from
calc.hardware.efficiency and the node's SystemSpec (calc.hardware.collectives), shared with training.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from calc.fitted import parameter


class ServingAssumptions(BaseModel):
    cuda_context_gib: float = Field(0.5, ge=0)
    comm_buffer_gib: float = Field(0.25, ge=0)
    step_overhead_s: float = Field(parameter("step_overhead_s")["vllm"], ge=0)  # fitted_defaults.json
    internode_gb_s: float = Field(50.0, gt=0, description="per-GPU network bandwidth across nodes, GB/s (400 Gb/s NIC)")
    gpus_per_node: int = Field(8, ge=1)

    def lines(self) -> list[str]:
        return [
            f"non-torch memory per GPU (CUDA context, workspaces) = {self.cuda_context_gib:g} GiB",
            f"NCCL / custom all-reduce buffers per GPU when split = {self.comm_buffer_gib:g} GiB",
            f"per-step scheduling/launch overhead = {self.step_overhead_s * 1e3:g} ms",
            "GEMM time per shape, HBM and collective efficiency: calc.hardware.efficiency defaults "
            "(tile quantisation, per-architecture plateau, launch cost); links and latencies from the node spec",
            f"{self.gpus_per_node} GPUs per node: TP stays inside a node; PP and replicas cross nodes",
        ]


DEFAULT_ASSUMPTIONS = ServingAssumptions()
