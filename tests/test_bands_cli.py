"""Bands on every predicted figure the CLI prints, and the three-valued fit verdict (issue 23, items 4 and 5)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

import calc
from calc.hardware.calibration import Calibration, OpPoint, Roofline, save_calibration

GIB = 2**30
COMMANDS = {  # command line -> {path to a result inside the JSON: keys that must carry a band}
    ("train-step", "llama3-8b", "--gpu", "h100", "--global-batch", "32", "--num-gpus", "8", "--zero", "3"):
        {"": ("step_time_s", "mfu")},
    ("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1T"):
        {"": ("days", "gpu_hours", "mfu", "step_time_s")},  # its plan's MFU and step time, as train-step bands them
    ("latency", "llama3-8b", "--gpu", "h100", "--prompt", "1024"): {"": ("ttft_s", "tpot_s", "e2e_s")},
    ("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--rate", "5"):
        {"": ("gpus_needed",), "layouts.0": ("ttft_ms", "tpot_ms", "tokens_per_s_per_gpu")},
    ("concurrency", "llama3-8b", "--gpu", "h100"): {"": ("kv_cache_tokens", "max_concurrency")},
    ("memory", "llama3-8b", "--gpu", "h100"): {"": ("per_gpu_bytes",)},
    ("memory", "llama3-8b", "--gpu", "h100", "--mode", "finetune"): {"": ("per_gpu_bytes", "reserved_peak_bytes")},
    ("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "32", "--top", "2"):
        {"plans.0": ("step_time_s", "mfu")},
    ("report", "llama3-8b", "--gpu", "h100"): {"memory": ("per_gpu_bytes",), "latency": ("ttft_s", "tpot_s", "e2e_s")},
}


# The shipped band table (benchmarks/fit_corpus.py's output), read directly: the expected bands below follow from
# its quantiles by calc/bands.py's documented rule, not from the code under test.
SHIPPED = json.loads((Path(calc.__file__).parent / "data" / "fitted_defaults.json").read_text())["bands"]
# JSON key -> (corpus kind, +1 time-like / -1 rate) as calc/report/confidence.py FIGURES documents them. GPUs needed
# scale as 1 / throughput: n t / t_hi .. n t / t_lo = [n exp(-q90), n exp(-q10)] of the throughput quantiles, i.e.
# the throughput kind read time-like. per_gpu_bytes takes the peak-memory kind of its mode (_PEAK below).
KEY_KIND = {
    "step_time_s": ("training_step_time", 1), "mfu": ("training_mfu", -1), "days": ("training_gpu_hours", 1),
    "gpu_hours": ("training_gpu_hours", 1), "ttft_s": ("serving_ttft", 1), "tpot_s": ("serving_tpot", 1),
    "e2e_s": ("serving_e2e", 1), "ttft_ms": ("serving_ttft", 1), "tpot_ms": ("serving_tpot", 1),
    "tokens_per_s_per_gpu": ("serving_throughput", -1), "gpus_needed": ("serving_throughput", 1),
    "kv_cache_tokens": ("kv_capacity", 1), "max_concurrency": ("kv_capacity", 1),
    "reserved_peak_bytes": ("finetune_peak_memory", 1),
}
_PEAK = {"memory": "inference_peak_memory", "report": "inference_peak_memory"}


# calc/bands.py's documented pools: the training kinds are one predicted step time; TPOT, e2e and serving throughput
# the decode step; TTFT prefill (falling back to the serving family); other kinds pools of their own.
POOL = {"training_step_time": "training", "training_mfu": "training", "training_gpu_hours": "training",
        "serving_tpot": "serving_decode", "serving_e2e": "serving_decode", "serving_throughput": "serving_decode",
        "serving_ttft": "serving_prefill"}


# Every banded result names its engine (vllm by default) or training stack (megatron by default: no --stack given).
_ENGINE = {"serve": "vllm", "concurrency": "vllm", "latency": "vllm", "report": "vllm", "train-step": "megatron",
           "train-plan": "megatron", "train-time": "megatron"}


def expected_band(command: tuple[str, ...], key: str, value: float) -> tuple[float, float, int]:
    """(low, high, rows) by calc/bands.py's docstring: the finest group pool|Hopper|16-bit|dense (llama3-8b in bf16 on
    an H100) if the shipped file has it with >= min_rows rows and, where the result names its engine, rows of that
    engine; else the pool's quantiles, else (serving) the family's, else the wide default (a factor of 2); time-like
    figures p lie in [p exp(-q90), p exp(-q10)], rates in [p exp(q10), p exp(q90)]; a band from rows wider than
    max_half_width either way (on its log width) keeps its ends with rows 0 (no band)."""
    if key == "per_gpu_bytes":
        kind, sign = ("finetune_peak_memory" if "finetune" in command else _PEAK[command[0]]), 1
    else:
        kind, sign = KEY_KIND[key]
    pool = POOL.get(kind, kind)
    group = SHIPPED["groups"].get(f"{pool}|Hopper|16-bit|dense")
    engine = _ENGINE.get(command[0])
    if group and group["rows"] >= SHIPPED["min_rows"] and (engine is None or engine in group["stacks"]):
        q = group
    else:
        q = SHIPPED["pools"].get(pool) or SHIPPED["families"].get("serving" if pool.startswith("serving") else "") \
            or {**SHIPPED["wide_default"], "rows": 0}
    lo, hi = (-q["q90"], -q["q10"]) if sign > 0 else (q["q10"], q["q90"])
    low, high = value * math.exp(lo), value * math.exp(hi)
    if key in WHOLE:  # a count reads in whole units, rounded outward (at least 1 GPU)
        low, high = max(math.floor(low), WHOLE[key]), math.ceil(high)
    # no band when the band of the same log width centred on p has half-width sinh((q90 - q10) / 2) over the cap
    return low, high, 0 if math.sinh((q["q90"] - q["q10"]) / 2) > SHIPPED["max_half_width"] else q["rows"]


WHOLE = {"gpus_needed": 1, "max_concurrency": 0}  # count figures -> the least the band's low end may be


def _at(data, path: str):
    for part in filter(None, path.split(".")):
        data = data[int(part)] if part.isdigit() else data[part]
    return data


@pytest.mark.parametrize("args", list(COMMANDS), ids=lambda a: " ".join(a[:1] + a[-2:]))
def test_json_has_a_band_around_each_listed_figure(cli, args) -> None:
    r = cli(*args, "--json")
    assert r.code == 0, r.err
    data = r.json()
    for path, keys in COMMANDS[args].items():
        part = _at(data, path)
        for key in keys:
            b = part["bands"][key]
            # a biased group's band need not hold the prediction (e.g. TTFT predicted under every measurement:
            # q90 < 0 puts the band above p), so only its order, sign and the band rule are required
            assert 0 < b["low"] < b["high"], (key, b, part[key])
            low, high, rows = expected_band(args, key, part[key])
            assert (b["low"], b["high"], b["rows"]) == (pytest.approx(low), pytest.approx(high), rows), (key, b)
            assert b["level"] == SHIPPED["level"] == 0.8 and b["group"]
    if args[0] != "train-time":
        assert data["fit"] in ("fits", "tight", "does not fit")


def test_train_time_bands_its_plan_like_train_step_and_not_an_assumed_mfu(cli) -> None:
    # The plan train-time picks, run through train-step, is the same step: the same MFU and step time, so the same
    # bands (one group, training|Hopper|16-bit|dense, for both). An MFU given by --mfu is an input: no band of its own.
    tt = cli("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T", "--json").json()
    layout = dict(re.findall(r"(TP|PP|DP|mb)(\d+)", tt["plan"]))
    zero = re.search(r"ZeRO(\d)", tt["plan"])
    args = ["train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--tp", layout["TP"], "--pp", layout["PP"],
            "--micro-batch", layout["mb"], "--zero", zero.group(1) if zero else "0", "--seq", str(tt["seq"]),
            "--global-batch", str(tt["global_batch"]), *(["--sp"] if " SP" in tt["plan"] else []), "--json"]
    assert "rc:none" in tt["plan"] and "VP" not in tt["plan"] and "CP" not in tt["plan"], tt["plan"]  # args above
    ts = cli(*args).json()
    assert ts["step_time_s"] == pytest.approx(tt["step_time_s"]) and ts["mfu"] == pytest.approx(tt["mfu"])
    for key in ("mfu", "step_time_s"):
        assert (tt["bands"][key]["low"], tt["bands"][key]["high"]) == \
            (pytest.approx(ts["bands"][key]["low"]), pytest.approx(ts["bands"][key]["high"]))
        assert tt["bands"][key]["group"] == ts["bands"][key]["group"]
    assumed = cli("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T", "--mfu", "0.4",
                  "--json").json()
    assert assumed["mfu"] == 0.4 and "mfu" not in assumed["bands"] and assumed["bands"]["days"]["rows"] == 0


def test_table_shows_the_how_sure_block(cli) -> None:
    r = cli("train-step", "llama3-8b", "--gpu", "h100", "--global-batch", "32", "--num-gpus", "8", "--zero", "3", "--explain")
    assert r.code == 0
    assert "How sure (80% bands" in r.out and "step time" in r.out and "80%," in r.out
    assert "band of step_time_s: 80% band" in r.out  # --explain names the group and its rows


def _bands_data(groups: dict) -> dict:
    return {"level": 0.8, "min_rows": 8, "wide_default": {"q10": -math.log(2), "q90": math.log(2)}, "pools": {},
            "families": {}, "groups": groups}


@pytest.fixture
def bands_data(monkeypatch):
    """Replace the fitted band table (calc/data/fitted_defaults.json "bands") with a constructed one."""
    def use(groups: dict) -> None:
        from calc import bands
        from calc.report import confidence

        monkeypatch.setattr(bands, "fitted", lambda: {"bands": _bands_data(groups)})
        monkeypatch.setattr(confidence, "fitted", lambda: {"bands": _bands_data(groups)})
    return use


def test_a_group_without_data_prints_no_band(cli, bands_data) -> None:
    bands_data({})
    r = cli("latency", "llama3-8b", "--gpu", "h100", "--prompt", "1024")
    assert r.code == 0
    assert "TTFT" in r.out and "no band: no comparable measurement (stated default ×/÷2: " in r.out
    data = cli("latency", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--json").json()
    b = data["bands"]["ttft_s"]  # the wide default: a factor of 2 either way, no rows
    assert (b["low"], b["high"], b["rows"]) == (pytest.approx(data["ttft_s"] / 2), pytest.approx(data["ttft_s"] * 2), 0)
    assert b["group"] == "no comparable measurement"


@pytest.mark.parametrize(("need_gib", "fit"), [(72, "fits"), (75, "tight"), (81, "does not fit")])
def test_tight_when_the_card_lies_inside_the_memory_band(bands_data, need_gib: float, fit: str) -> None:
    # peak-memory residual quantiles q10 = -0.1, q90 = 0.05: the measured peak reaches need x exp(0.1) (calc.bands).
    # On an 80 GiB card: 72 x e^0.1 = 79.57 fits; 75 fits but 75 x e^0.1 = 82.89 does not: tight; 81 > 80.
    bands_data({"inference_peak_memory|Hopper|16-bit|dense": {"q10": -0.1, "q90": 0.05, "rows": 20}})
    from calc.memory import inference_memory
    from calc.report.confidence import annotate
    from calc.sources.catalog import load_gpu, load_model

    r = inference_memory(load_model("llama3-8b"), gpu=load_gpu("h100"), batch=1, seq=1024)
    r = r.model_copy(update={"per_gpu_bytes": need_gib * GIB, "gpu_memory_bytes": 80 * GIB})
    payload = r.model_dump(mode="json")
    found = annotate(r, payload)
    assert payload["fit"] == fit
    assert payload["bands"]["per_gpu_bytes"]["high"] == pytest.approx(need_gib * GIB * math.exp(0.1))
    assert list(payload)[list(payload).index("fits") + 1] == "fit"  # beside the boolean
    if fit == "tight":
        assert len(found.tight) == 1 and "would make room" in found.tight[0] and "82.89 GiB" in found.tight[0]
    else:
        assert not found.tight


def test_the_wide_default_never_makes_a_fit_tight(bands_data) -> None:
    # No measured group for the peak: its band is the stated factor-2 default (rows 0, "no comparable measurement").
    # 75 GiB on an 80 GiB card would be tight against 2 x 75 = 150 GiB, but a default is not a memory band: "fits".
    bands_data({})
    from calc.memory import inference_memory
    from calc.report.confidence import annotate
    from calc.sources.catalog import load_gpu, load_model

    r = inference_memory(load_model("llama3-8b"), gpu=load_gpu("h100"), batch=1, seq=1024)
    r = r.model_copy(update={"per_gpu_bytes": 75 * GIB, "gpu_memory_bytes": 80 * GIB})
    payload = r.model_dump(mode="json")
    found = annotate(r, payload)
    assert payload["bands"]["per_gpu_bytes"]["rows"] == 0
    assert payload["fit"] == "fits" and not found.tight


def test_a_calibrated_figure_says_so_and_takes_the_calibration_band(cli, tmp_path: Path) -> None:
    # GEMM efficiencies 0.5 at 1e9..1e14 FLOPs but 0.6 at 1e11. Leave-one-out: an inner point is predicted as the
    # mean of its neighbours (halfway in log size), an end point as its neighbour: residuals log(e / predicted) =
    # 0, log(0.5/0.55), log(0.6/0.5), log(0.5/0.55), 0, 0. Sorted, inclusive quantiles at 5 x 0.1 and 5 x 0.9:
    # q10 = log(1/1.1), q90 = log(1.2) / 2. TTFT (time-like) lies in [p exp(-q90), p exp(-q10)] = [p / sqrt(1.2), 1.1 p].
    effs = (0.5, 0.5, 0.6, 0.5, 0.5, 0.5)
    cal = Calibration(gpu="h100-sxm", device_name="NVIDIA H100 80GB HBM3", is_gpu=True, dtype="bf16", date="2026-11-23",
                      roofline=Roofline(peak_tflops=989.4, peak_gb_s=3350, source="datasheet"),
                      ops={"gemm": [OpPoint(size=10.0 ** (9 + i), measured_s=1e-3, efficiency=e) for i, e in enumerate(effs)]})
    path = tmp_path / "h100.yaml"
    save_calibration(cal, str(path))
    data = cli("latency", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--calibration", str(path), "--json").json()
    b = data["bands"]["ttft_s"]
    assert b["group"].startswith("calibrated: band from the calibration's 6 leave-one-out residuals")
    assert (b["low"], b["high"], b["rows"]) == (pytest.approx(data["ttft_s"] / math.sqrt(1.2)),
                                                pytest.approx(data["ttft_s"] * 1.1), 6)
    table = cli("latency", "llama3-8b", "--gpu", "h100", "--prompt", "1024", "--calibration", str(path))
    assert "calibrated: band from the calibration's" in table.out


def test_report_pages_and_train_plan_explain_carry_the_bands(cli) -> None:
    # issue 20: the table had the "How sure" block, the Markdown / HTML pages and train-plan --explain did not
    table = cli("report", "llama3-8b", "--gpu", "h100")
    shown = [line.strip() for line in table.out.splitlines() if line.strip().startswith(("memory per GPU", "KV cache"))]
    assert shown, table.out
    md = cli("report", "llama3-8b", "--gpu", "h100", "--format", "markdown").out
    assert "## How sure" in md and all(f"- {line}" in md for line in shown)  # the same lines as the table's block
    html = cli("report", "llama3-8b", "--gpu", "h100", "--format", "html").out
    assert "<h2>How sure</h2>" in html and all(f"<li>{line}" in html for line in shown)
    plan = cli("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "64", "--top", "2", "--explain")
    assert plan.code == 0 and "band of plans[0].step_time_s: 80% band" in " ".join(plan.out.split())


def _labels(key: str) -> set[str]:
    """The "How sure" labels a JSON key prints under (calc.report.confidence.FIGURES), any result class."""
    from calc.report.confidence import FIGURES

    out = set()
    for table in FIGURES.values():
        fig = table.get(key)
        if fig is not None:
            out |= {fig.label} if not callable(fig) else {"memory per GPU"}
    return out


@pytest.mark.parametrize("args", list(COMMANDS), ids=lambda a: " ".join(a[:1] + a[-2:]))
def test_table_prints_each_figure_with_its_band_or_the_no_band_phrase(cli, args) -> None:
    """Issue 23: no figure is printed without its band or an explicit "no band: no comparable measurement"."""
    r = cli(*args)
    assert r.code == 0, r.err
    block = r.out.split("How sure (80% bands from the measurement corpus):")[1].splitlines()
    lines = [line.strip() for line in block if line.startswith("  ")]
    for line in lines:
        assert re.search(r"\(.+, 80%, \d+ rows: .+\)$", line) or ": no band: no comparable measurement (" in line, line
    for keys in COMMANDS[args].values():
        for key in keys:
            assert any(label in line for line in lines for label in _labels(key)), (key, lines)


def test_a_band_too_wide_prints_as_no_band_with_its_ends() -> None:
    from calc.bands import Band
    from calc.report.confidence import Figure, band_line

    why = "no comparable measurement (the nearest rows, 40 of training, scatter beyond ±100%)"
    line = band_line(Figure("training_step_time", "step time", "s"), 2.0, Band(1.0, 7.5, 0.8, 0, why))
    assert line.startswith("step time ") and "stated default" not in line
    assert ": no band: no comparable measurement (the nearest rows, 40 of training, scatter beyond ±100%: 1" in line
    assert line.endswith("7.5 s, 80%)")


def test_a_result_naming_its_stack_or_engine_picks_the_band_by_it() -> None:
    """Context keys a result's stack as benchmarks/fit_corpus.row_stack keys a corpus row: a training framework by
    the named stack it runs as (torchtitan -> fsdp), an engine by its family (vLLM V0 is vllm)."""
    from pydantic import create_model

    from calc.report.confidence import Context

    Trained, Served = create_model("Trained", stack=(str, ...)), create_model("Served", engine=(str, ...))
    assert Context().inside(Trained(stack="torchtitan")).stack == "fsdp"
    assert Context().inside(Trained(stack="MaxText")).stack == "maxtext"  # not a named stack: its own name
    assert Context().inside(Served(engine="vllm-v0")).stack == "vllm"
    assert Context(stack="sglang").inside(create_model("Part")()).stack == "sglang"  # from the enclosing result


def test_qlora_memory_band_is_read_for_its_nf4_base(cli) -> None:
    """A QLoRA job's peak is banded in the dtype class its corpus rows carry (dtype nf4: the frozen base's format,
    benchmarks/validate_corpus.py groups them "Ampere nf4 dense"), not the 16-bit class of a LoRA job on bf16
    weights: the group the band names says so."""
    groups = {}
    for method in ("qlora", "lora"):
        r = cli("memory", "llama2-7b", "--mode", "finetune", "--method", method, "--gpu", "a100", "--json")
        assert r.code == 0, r.err
        groups[method] = r.json()["bands"]["per_gpu_bytes"]["group"]
    assert "|nf4|" in groups["qlora"] and "|16-bit|" in groups["lora"], groups


def test_cost_figures_carry_their_bands(cli) -> None:
    # train-time's cost is GPU-hours x the price: its band is the GPU-hours band x the price. compare's cost per
    # million tokens is price x GPUs / throughput: at the throughput band [t_lo, t_hi] it lies in [c t / t_hi, c t / t_lo]
    tt = cli("train-time", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T", "--price", "2", "--json").json()
    assert tt["cost"] == pytest.approx(2 * tt["gpu_hours"])
    assert (tt["bands"]["cost"]["low"], tt["bands"]["cost"]["high"]) == \
        (pytest.approx(2 * tt["bands"]["gpu_hours"]["low"]), pytest.approx(2 * tt["bands"]["gpu_hours"]["high"]))
    rows = cli("compare", "llama3-70b", "h100", "--num-gpus", "8", "--price", "h100=2", "--json").json()
    row = rows[0]
    c, t, tb = row["cost_per_million_tokens"], row["tokens_per_s"], row["bands"]["tokens_per_s"]
    b = row["bands"]["cost_per_million_tokens"]
    assert (b["low"], b["high"]) == (pytest.approx(c * t / tb["high"]), pytest.approx(c * t / tb["low"]))
    assert b["low"] < c < b["high"]


@pytest.mark.parametrize("mode", [("--mode", "infer"), ("--mode", "train", "--num-gpus", "8"),
                                  ("--mode", "finetune", "--method", "lora")], ids=["infer", "train", "finetune"])
def test_every_report_mode_has_the_same_top_level_keys(cli, mode) -> None:
    """report's JSON names its outcome at the top in every mode (fits, the three-valued fit, verdict, assumptions),
    the fine-tuning page too (its fit is its memory section's)."""
    d = cli("report", "llama3-8b", "--gpu", "a100-80g", *mode, "--json").json()
    assert {"mode", "model", "gpu", "num_gpus", "params", "fits", "fit", "verdict", "assumptions"} <= set(d)
    assert d["fits"] is True and d["fit"] in ("fits", "tight") and d["assumptions"]
    if mode[1] == "finetune":
        assert d["fit"] == d["finetune"]["fit"]
