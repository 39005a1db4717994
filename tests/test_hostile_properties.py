"""Property tests (issue 12): every command driven with random option values, valid and hostile
alike. Whatever the values, the answer is exit 0, or exit 2 with one `llmcalc: error:` line; never a
traceback, never the last-resort 'internal error'."""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

NUMBERS = st.one_of(
    st.integers(-3, 9000).map(str),
    st.sampled_from(["0", "-1", "1.5", "4K", "2T", "1e400", "-1e400", "nan", "inf", "-inf", "1e-300", "abc", "",
                     " ", "15X", "0x10", "1,000", "1_000", "9" * 40, "1e15", "2.5M", "NaN"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
SMALL = st.one_of(st.integers(-2, 64).map(str), st.sampled_from(["0", "-1", "nan", "1.5", "1e400", "abc", "4K"]))
DTYPES = st.sampled_from(["bf16", "fp16", "fp32", "tf32", "fp8", "int8", "int4", "fp6", "", "BF16", "nan"])
GPUS = st.sampled_from(["h100", "a100", "h100-pcie", "mi300x", "rtx4090", "l4", "b200", "nope", "", "/dev/zero"])
MODELS = st.sampled_from(["llama2-7b", "gpt2", "mixtral-8x7b", "deepseek-v3", "llama3.1-405b", "phi-2",
                          "meta-llama/Llama-2-7b-hf", "nope", "", "/dev/null", "[/]"])
TEXT = st.text(max_size=12)

# Per command: its positional arguments and the options it may get, each with a value strategy
# (None for a flag without a value). Options are drawn at random, including ones a command refuses.
COMMANDS: dict[str, tuple[list[st.SearchStrategy], dict[str, st.SearchStrategy | None]]] = {
    "params": ([MODELS], {"--json": None, "--explain": None}),
    "flops": ([MODELS], {"--batch": NUMBERS, "--seq": NUMBERS, "--context": NUMBERS, "--output": NUMBERS,
                         "--attention-pairs": st.sampled_from(["full", "causal", "x"]),
                         "--causal": None, "--intensity": None, "--fused": None, "--dtype": DTYPES, "--json": None}),
    "memory": ([MODELS], {"--mode": st.sampled_from(["infer", "train", "x"]), "--dtype": DTYPES, "--kv-dtype": DTYPES,
                          "--batch": NUMBERS, "--seq": NUMBERS, "--gpu": GPUS, "--num-gpus": SMALL, "--tp": SMALL,
                          "--pp": SMALL, "--dp": SMALL, "--cp": SMALL, "--sp": None, "--zero": SMALL,
                          "--recompute": st.sampled_from(["none", "selective", "full", "x"]),
                          "--group-size": NUMBERS, "--reserve-gib": NUMBERS, "--json": None, "--explain": None}),
    "memory --mode finetune": ([MODELS], {"--gpu": GPUS, "--num-gpus": SMALL, "--batch": NUMBERS, "--seq": NUMBERS,
                                          "--method": st.sampled_from(["full", "lora", "qlora", "dora", "x"]),
                                          "--lora-rank": NUMBERS, "--lora-alpha": NUMBERS, "--lora-dropout": NUMBERS,
                                          "--lora-targets": st.sampled_from(["q,v", "all", "experts", "", "zz"]),
                                          "--optimizer": st.sampled_from(["adamw", "adamw8bit", "sgd", "x"]),
                                          "--precision": st.sampled_from(["mixed", "bf16", "x"]),
                                          "--quant": st.sampled_from(["nf4", "int8", "x"]), "--grad-accum": NUMBERS,
                                          "--offload": st.sampled_from(["optimizer", "params", "none", "x"]),
                                          "--fragmentation": NUMBERS, "--zero": SMALL, "--json": None}),
    "mfu": ([MODELS], {"--gpu": GPUS, "--num-gpus": SMALL, "--seq": NUMBERS, "--tokens": NUMBERS,
                       "--gpu-hours": NUMBERS, "--tokens-per-s": NUMBERS, "--step-time": NUMBERS,
                       "--global-batch": NUMBERS, "--dtype": DTYPES, "--attention-pairs": st.sampled_from(["full", "causal"]),
                       "--causal": None, "--json": None}),
    "train-time": ([MODELS], {"--gpu": GPUS, "--num-gpus": SMALL, "--tokens": NUMBERS, "--seq": NUMBERS,
                              "--mfu": NUMBERS, "--price": NUMBERS, "--dtype": DTYPES, "--json": None}),
    "latency": ([MODELS], {"--gpu": GPUS, "--prompt": NUMBERS, "--output": NUMBERS, "--batch": NUMBERS,
                           "--num-gpus": SMALL, "--tp": SMALL, "--pp": SMALL, "--dtype": DTYPES, "--kv-dtype": DTYPES,
                           "--ttft-ms": NUMBERS, "--reserve-gib": NUMBERS, "--json": None, "--explain": None}),
    "concurrency": ([MODELS], {"--gpu": GPUS, "--max-model-len": NUMBERS, "--num-gpus": SMALL, "--dtype": DTYPES,
                               "--kv-dtype": DTYPES, "--reserve-gib": NUMBERS, "--json": None}),
    "report": ([MODELS], {"--gpu": GPUS, "--num-gpus": SMALL, "--mode": st.sampled_from(["infer", "train"]),
                          "--dtype": DTYPES, "--prompt": NUMBERS, "--output": NUMBERS, "--batch": NUMBERS,
                          "--seq": NUMBERS, "--tokens": NUMBERS, "--mfu": NUMBERS, "--price": NUMBERS,
                          "--zero": SMALL, "--format": st.sampled_from(["table", "markdown", "x"]), "--json": None}),
    "compare": ([MODELS, GPUS, GPUS], {"--num-gpus": SMALL, "--dtype": DTYPES, "--prompt": NUMBERS,
                                        "--output": NUMBERS, "--price": TEXT, "--json": None}),
    "serve": ([MODELS], {"--gpu": GPUS, "--prompt": NUMBERS, "--output": NUMBERS, "--num-gpus": SMALL,
                         "--ttft-ms": NUMBERS, "--tpot-ms": NUMBERS, "--rate": NUMBERS, "--users": NUMBERS,
                         "--dtype": DTYPES, "--kv-dtype": DTYPES, "--engine": st.sampled_from(["vllm", "sglang", "x"]),
                         "--gpu-memory-utilization": NUMBERS, "--max-model-len": NUMBERS,
                         "--max-num-batched-tokens": NUMBERS, "--max-num-seqs": NUMBERS, "--block-size": NUMBERS,
                         "--reserve-gib": NUMBERS, "--json": None}),
    "train-step": ([MODELS], {"--gpu": GPUS, "--global-batch": NUMBERS, "--num-gpus": SMALL, "--tp": SMALL,
                              "--pp": SMALL, "--dp": SMALL, "--cp": SMALL, "--ep": SMALL, "--vpp": SMALL, "--sp": None,
                              "--micro-batch": SMALL, "--zero": SMALL, "--seq": NUMBERS,
                              "--recompute": st.sampled_from(["none", "selective", "full", "x"]),
                              "--collective-eff": NUMBERS, "--overlap-eff": NUMBERS, "--capacity-factor": NUMBERS,
                              "--reserve-gib": NUMBERS, "--dtype": DTYPES, "--json": None}),
    "train-plan": ([MODELS], {"--gpu": GPUS, "--num-gpus": SMALL, "--global-batch": NUMBERS, "--tp": SMALL,
                              "--pp": SMALL, "--zero": SMALL, "--micro-batch": SMALL, "--top": SMALL, "--seq": NUMBERS,
                              "--dtype": DTYPES, "--json": None}),
    "calibrate": ([], {"--from-runs": st.sampled_from(["/dev/zero", "", "nope.csv", "/tmp"]), "--json": None}),
    "show": ([st.one_of(MODELS, GPUS)], {"--json": None}),
    "models": ([], {"--json": None}),
    "gpus": ([], {"--json": None}),
}
# bench and validate need torch and run kernels; their options are checked in test_hostile without running them.


@st.composite
def command_lines(draw: st.DrawFn) -> list[str]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    positionals, options = COMMANDS[name]
    argv = [*name.split(), *(draw(p) for p in positionals)]
    for flag in draw(st.lists(st.sampled_from(sorted(options)), max_size=5, unique=True)):
        strategy = options[flag]
        argv += [flag] if strategy is None else [flag, draw(strategy)]
    return argv


@settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=command_lines())
def test_no_traceback_ever(argv: list[str]) -> None:
    r = run_cli(*argv)
    assert "Traceback" not in r.err + r.out, (argv, r.err)
    assert "internal error" not in r.err, (argv, r.err)
    assert r.code != 1, ("internal error (a bug), not a refusal", argv, r.err)
    assert r.code in (0, 2), (argv, r.code, r.err)
    lines = r.err.strip().splitlines()
    if r.code == 2:
        assert len(lines) == 1 and lines[0].startswith("llmcalc: error: "), (argv, r.err)
    else:
        assert all(line.startswith(("llmcalc: warning: ", "llmcalc: note: ")) for line in lines), (argv, r.err)


# ---------------------------------------------------------------------------------------------
# Random damage to real config.json files (tests/fixtures/hf): any value of any key replaced by
# any JSON-like value. The import either succeeds or raises LLMCalcError naming MODEL; the engine
# then counts and sizes what was imported without crashing.

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "hf").glob("*.json"))
JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True, allow_infinity=True),
              st.text(max_size=8), st.sampled_from(["llama", "qwen2_moe", "deepseek_v3", "yarn", "gptq", "fp8",
                                                     "sliding_attention", "full_attention", "bfloat16"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)


@st.composite
def damaged_configs(draw: st.DrawFn) -> dict:
    data = json.loads(draw(st.sampled_from(FIXTURES)).read_text())
    for key in draw(st.lists(st.sampled_from(sorted(data)), min_size=1, max_size=3, unique=True)):
        data[key] = draw(JSONISH)
    for nested in ("rope_scaling", "quantization_config", "text_config", "vision_config"):
        if isinstance(data.get(nested), dict) and data[nested] and draw(st.booleans()):
            data[nested] = {**data[nested], draw(st.sampled_from(sorted(data[nested]))): draw(JSONISH)}
    return data


@settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=damaged_configs())
def test_damaged_hf_configs_fail_cleanly(data: dict) -> None:
    from calc.errors import LLMCalcError
    from calc.memory import inference_memory
    from calc.model.params import count_params
    from calc.sources.hf import model_from_hf_config

    try:
        spec = model_from_hf_config(data)
    except LLMCalcError as exc:
        assert exc.field == "MODEL" and "\n" not in str(exc)
        return
    try:
        assert count_params(spec).total_params > 0
        inference_memory(spec, batch=1, seq=min(512, spec.context_window), dtype="bf16")
    except LLMCalcError:
        pass  # a valid spec the engine declines (e.g. a layout rule) is still a clean refusal


CATALOG = Path(__file__).resolve().parents[1]
MODEL_YAMLS = sorted((CATALOG / "model_configs").glob("*.yaml"))
GPU_YAMLS = sorted((CATALOG / "hardware_specs").glob("*.yaml"))


@st.composite
def damaged_specs(draw: st.DrawFn, files: list[Path]) -> dict:
    import yaml

    data = yaml.safe_load(draw(st.sampled_from(files)).read_text())
    for key in draw(st.lists(st.sampled_from(sorted(data)), min_size=1, max_size=3, unique=True)):
        data[key] = draw(JSONISH)
    return data


@settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=damaged_specs(MODEL_YAMLS))
def test_damaged_model_yaml_fails_cleanly(data: dict) -> None:
    from calc.errors import LLMCalcError
    from calc.memory import inference_memory
    from calc.model.params import count_params
    from calc.sources.catalog import load_gpu
    from calc.specs import ModelSpec, spec_from_mapping

    try:
        spec = spec_from_mapping(ModelSpec, data, "m.yaml", "MODEL")
    except LLMCalcError as exc:
        assert exc.field == "MODEL" and "\n" not in str(exc)
        return
    from calc.memory import training_memory
    from calc.model.flops import forward_flops
    from calc.serving.latency import latency

    seq = min(512, spec.context_window)
    for run in (lambda: count_params(spec), lambda: forward_flops(spec, 2, seq),
                lambda: inference_memory(spec, gpu=load_gpu("h100"), batch=1, seq=seq, dtype="bf16"),
                lambda: training_memory(spec, gpu=load_gpu("h100"), micro_batch=1, seq=seq),
                lambda: latency(spec, load_gpu("h100"), prompt=seq, output=16, dtype="bf16")):
        try:
            run()
        except LLMCalcError:
            pass  # a clean refusal (a layout rule, a dtype the GPU lacks)


@settings(max_examples=int(os.environ.get("HOSTILE_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=damaged_specs(GPU_YAMLS))
def test_damaged_gpu_yaml_fails_cleanly(data: dict) -> None:
    from calc.errors import LLMCalcError
    from calc.hardware.peaks import summarize_gpu
    from calc.serving.latency import latency
    from calc.sources.catalog import load_model
    from calc.specs import GPUSpec, spec_from_mapping

    try:
        gpu = spec_from_mapping(GPUSpec, data, "g.yaml", "--gpu")
    except LLMCalcError as exc:
        assert exc.field == "--gpu" and "\n" not in str(exc)
        return
    try:
        summarize_gpu(gpu)
        latency(load_model("llama2-7b"), gpu, prompt=512, output=64, dtype="bf16")
    except LLMCalcError:
        pass
