"""`--attention fa2|fa3|cudnn|triton` (train-step, train-plan): a named fused kernel priced at its benchmark rate
instead of the stack's kernel, and refused on a GPU it is not built for (calc.hardware.attention.KERNEL_ARCHS)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from calc.hardware.attention import kernel_unavailable
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import Efficiencies, ModelCost


def _attention_forward(kernel: str | None) -> float:
    eff = replace(Efficiencies(), attention_kernel=kernel)
    cost = ModelCost(load_model("llama3-8b"), load_gpu("h100-sxm"), load_system("dgx-h100"), 16384, eff=eff)
    return cost.layer(0, 1, 1, 1, 1, False).attn_fwd


def test_the_forward_time_follows_the_papers_rates() -> None:
    """FlashAttention-3 paper (arXiv 2407.08608) Fig. 5(e), H100 SXM5 bf16, causal, head dim 128, 16k: FA2 335,
    cuDNN 539, FA3 616 TFLOP/s. The same FLOPs take time inversely to the rate."""
    fa2, cudnn, fa3 = (_attention_forward(k) for k in ("fa2", "cudnn", "fa3"))
    assert fa2 / fa3 == pytest.approx(616 / 335, rel=1e-9)
    assert fa2 / cudnn == pytest.approx(539 / 335, rel=1e-9)
    assert _attention_forward(None) == cudnn  # megatron's kernel on Hopper is cuDNN's


def test_where_each_kernel_runs() -> None:
    assert kernel_unavailable("fa3", "Hopper") is None
    assert kernel_unavailable("fa3", "Ampere") and kernel_unavailable("fa3", "Blackwell")
    assert kernel_unavailable("cudnn", "CDNA3") and kernel_unavailable("fa2", "Volta")
    assert kernel_unavailable("fa2", "CDNA3") is None and kernel_unavailable("triton", "Turing") is None


ARGS = ["train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "1", "--global-batch", "64",
        "--seq", "16384", "--recompute", "full"]


def test_cli_prices_explains_and_refuses(cli) -> None:
    times = {a: cli(*ARGS, "--attention", a, "--json").json()["step_time_s"] for a in ("flash", "cudnn", "fa2", "fa3")}
    assert times["flash"] == times["cudnn"] and times["fa3"] < times["cudnn"] < times["fa2"]
    assert "attention kernel fa3 at the" in cli(*ARGS, "--attention", "fa3", "--explain").out
    bad = cli(*[("a100" if a == "h100" else a) for a in ARGS], "--attention", "fa3")
    assert bad.code == 2 and "--attention" in bad.err and "Hopper" in bad.err and "Traceback" not in bad.err
    plan = cli("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "64", "--seq", "4096",
               "--attention", "fa2", "--json")
    assert plan.code == 0, plan.err
