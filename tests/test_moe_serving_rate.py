"""The fitted MoE serving rate (calc.serving.moe.moe_serving_rate): a factor on the routed experts' rate, nothing else."""

import pytest

from calc.fitted import parameter
from calc.serving.assumptions import DEFAULT_ASSUMPTIONS
from calc.serving.moe import moe_serving_rate
from calc.serving.step import weight_gemm_time
from calc.sources.catalog import load_gpu, load_model


def _at(rate: float | None):
    return DEFAULT_ASSUMPTIONS.model_copy(update={"moe_serving_rate": rate})


def test_half_the_rate_doubles_the_experts_and_leaves_the_rest() -> None:
    # Qwen3-235B-A22B on 8 H100 (TP 8), 2,048 tokens: the routed experts' seconds are t / (table rate x factor) on
    # either side of their roofline, so a factor of 0.5 doubles them exactly, all but the kernels' launch (once per
    # GEMM, not rated); the dense GEMMs (attention, router, head) do not read it.
    from calc.hardware.efficiency import GEMM_LAUNCH_S
    from calc.serving.gemms import model_gemms

    m, h100 = load_model("qwen3-235b-a22b"), load_gpu("h100")
    launch = sum(g.layers for g in model_gemms(m)[0] if g.expert) * GEMM_LAUNCH_S
    experts = [weight_gemm_time(m, h100, 2048, 0, 8, None, a=_at(r), experts_only=True)[0] for r in (1.0, 0.5)]
    assert experts[1] - launch == pytest.approx(2 * (experts[0] - launch), rel=1e-12)
    whole = [weight_gemm_time(m, h100, 2048, 0, 8, None, a=_at(r))[0] for r in (1.0, 0.5)]
    assert whole[1] - whole[0] == pytest.approx(experts[0] - launch, rel=1e-9)


def test_a_dense_model_never_reads_it() -> None:
    m, h100 = load_model("llama3-70b"), load_gpu("h100")
    assert weight_gemm_time(m, h100, 2048, 0, 4, None, a=_at(0.5))[0] == weight_gemm_time(m, h100, 2048, 0, 4, None)[0]


def test_the_default_is_the_fitted_value_of_the_generation_and_dtype() -> None:
    fitted = parameter("moe_serving_rate")
    h100, b200 = load_gpu("h100"), load_gpu("b200")
    assert moe_serving_rate(h100, "fp8", DEFAULT_ASSUMPTIONS) == fitted["Hopper/fp8"]
    assert moe_serving_rate(h100, "bf16", DEFAULT_ASSUMPTIONS) == fitted["Hopper"]
    assert moe_serving_rate(b200, "nvfp4", DEFAULT_ASSUMPTIONS) == fitted["Blackwell/fp4"]
    assert moe_serving_rate(h100, "fp8", _at(0.7)) == 0.7


def test_explain_prints_it(cli) -> None:  # noqa: ANN001
    text = cli("latency", "qwen3-235b-a22b", "--gpu", "h100", "--num-gpus", "8", "--prompt", "1K", "--output", "256",
               "--explain").out
    assert "moe_serving_rate" in text


QWEN = ["qwen3-235b-a22b", "--gpu", "h100", "--num-gpus", "8", "--prompt", "1K", "--output", "256"]


def test_the_flag_overrides_the_fitted_rate_in_latency(cli) -> None:  # noqa: ANN001
    # --moe-serving-rate 0.5 against the fitted Hopper rate of this checkpoint's experts: the decode step's experts
    # take fitted / 0.5 times as long, nothing else moves, so TPOT changes and --explain names the given value
    fitted = cli("latency", *QWEN, "--json").json()["tpot_s"]
    given = cli("latency", *QWEN, "--moe-serving-rate", "0.3", "--json").json()["tpot_s"]
    assert given > fitted
    assert "the routed experts in a whole step at 0.3 x" in cli("latency", *QWEN, "--moe-serving-rate", "0.3",
                                                                 "--explain").out.replace("\n", " ")


@pytest.mark.parametrize("command", [["latency", "llama3-8b", "--gpu", "h100", "--prompt", "1K"],
                                     ["serve", "llama3-8b", "--gpu", "h100", "--prompt", "1K", "--output", "256"],
                                     ["report", "llama3-8b", "--gpu", "h100"],
                                     ["compare", "llama3-8b", "h100"]])
def test_refused_for_a_model_without_routed_experts(cli, command: list[str]) -> None:  # noqa: ANN001
    r = cli(*command, "--moe-serving-rate", "0.5")
    assert r.code == 2 and "--moe-serving-rate" in r.err and "routed experts" in r.err


@pytest.mark.parametrize("value", ["0", "-1", "5"])
def test_a_rate_outside_its_range_is_refused(cli, value: str) -> None:  # noqa: ANN001
    r = cli("latency", *QWEN, "--moe-serving-rate", value)
    assert r.code == 2 and "--moe-serving-rate" in r.err


@pytest.mark.parametrize("command", [["serve", "qwen3-235b-a22b", "--gpu", "h100", "--prompt", "1K", "--output", "256",
                                      "--rate", "2"],
                                     ["report", "qwen3-235b-a22b", "--gpu", "h100", "--num-gpus", "8"],
                                     ["compare", "qwen3-235b-a22b", "h100", "--num-gpus", "8"]])
def test_serve_report_and_compare_take_it(cli, command: list[str]) -> None:  # noqa: ANN001
    assert cli(*command, "--json").out != cli(*command, "--moe-serving-rate", "0.3", "--json").out
