"""`serve --emit`: a launch line that launches (issue 24), and the KV dtype each engine defaults to."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import pytest
import yaml

from calc.serving.engine_memory import engine_memory
from calc.sources.catalog import load_gpu, load_model

# Flags `vllm serve` accepts, as vllm/engine/arg_utils.py EngineArgs.add_cli_args names them (ParallelConfig,
# ModelConfig, SchedulerConfig, CacheConfig groups); --kv-cache-dtype choices from vllm/config/cache.py CacheDType.
VLLM_VALUE_FLAGS = ("--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size", "--max-model-len",
                    "--max-num-seqs", "--max-num-batched-tokens", "--gpu-memory-utilization", "--block-size",
                    "--dtype", "--quantization", "--swap-space", "--speculative-config")
VLLM_BOOL_FLAGS = ("--enable-expert-parallel", "--enable-chunked-prefill", "--enable-prefix-caching", "--enforce-eager")
VLLM_KV_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2")


def vllm_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vllm serve", exit_on_error=False)
    p.add_argument("model")
    for flag in VLLM_VALUE_FLAGS:
        p.add_argument(flag)
    for flag in VLLM_BOOL_FLAGS:
        p.add_argument(flag, action="store_true")
    p.add_argument("--kv-cache-dtype", choices=VLLM_KV_DTYPES)
    return p


def emitted(cli, *args: str) -> str:  # noqa: ANN001
    r = cli("serve", *args)
    assert r.code == 0, r.err
    lines = [x for x in r.out.splitlines() if x.startswith(("vllm serve", "python -m sglang", "trtllm-serve"))]
    assert len(lines) == 1
    return lines[0]


def test_vllm_line_parses_with_vllms_own_flags(cli) -> None:
    line = emitted(cli, "llama3-70b", "--gpu", "h200", "--prompt", "4000", "--output", "1000", "--ttft-ms", "2000",
                   "--tpot-ms", "50", "--rate", "10", "--emit", "vllm")
    words = shlex.split(line)
    assert words[:2] == ["vllm", "serve"]
    ns = vllm_parser().parse_args(words[2:])  # an unknown flag raises
    assert ns.model == "meta-llama/Meta-Llama-3-70B"
    assert int(ns.max_model_len) == 4000 + 1000  # the request, not the model's 8,192 window
    assert int(ns.max_num_seqs) >= 1 and ns.kv_cache_dtype == "auto"
    assert int(ns.max_num_batched_tokens) == 8192  # vLLM V1 on an H200 (>= 70 GiB, not an A100)
    assert float(ns.gpu_memory_utilization) == 0.9
    # the user's --max-model-len wins
    line = emitted(cli, "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--output", "200", "--max-model-len", "4096",
                   "--kv-dtype", "fp8", "--emit", "vllm")
    ns = vllm_parser().parse_args(shlex.split(line)[2:])
    assert int(ns.max_model_len) == 4096 and ns.kv_cache_dtype == "fp8"


def test_sglang_and_trtllm_lines(cli) -> None:
    sgl = emitted(cli, "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--output", "200", "--emit", "sglang")
    assert sgl.startswith("python -m sglang.launch_server --model-path meta-llama/Meta-Llama-3-8B --tp ")
    assert "--context-length 1200" in sgl and "--mem-fraction-static" in sgl and "--kv-cache-dtype auto" in sgl
    # the fraction the plan was sized with (SGLang >= 0.5.4 by GPU memory), not the old by-TP table: on an H100
    # (81,559 MiB as the device reports it: chunk 8192, CUDA-graph bs 256 below TP 4) reserved =
    # 512 + 1.5 x 8192 + 2 x 256 + 1024 x TP x PP / 8 MiB, above the 10,240 floor; fraction = 1 - reserved / 81,559
    words = sgl.split()
    tp, pp = int(words[words.index("--tp") + 1]), int(words[words.index("--pp-size") + 1])
    reserved = 512 + 12288 + 512 + 1024 * tp * pp / 8
    assert float(words[words.index("--mem-fraction-static") + 1]) == round((81559 - reserved) / 81559, 3)
    trt = emitted(cli, "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--output", "200", "--emit", "trtllm")
    assert trt.startswith("trtllm-serve meta-llama/Meta-Llama-3-8B --backend pytorch --tp_size ")
    assert "--max_seq_len 1200" in trt and "--max_num_tokens 8192" in trt


def test_every_catalog_model_carries_its_hf_id() -> None:
    # the repo id is the one the config was read from (source: https://huggingface.co/<org>/<name>/blob/main/config.json)
    for path in sorted(Path(__file__).parents[1].joinpath("model_configs").glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        assert data.get("hf_id"), path.name
        assert data["source"].startswith(f"https://huggingface.co/{data['hf_id']}/"), path.name


@pytest.mark.parametrize("dtype", ["fp8", "int8", "int4"])
def test_quantized_weights_keep_a_16_bit_kv_cache(dtype: str) -> None:
    # vLLM --kv-cache-dtype auto = the model dtype: --quantization fp8 (or int8/int4 weights) keeps bf16 KV.
    # Llama-3-8B: 32 layers x 2 x 8 KV heads x 128 x 2 B = 131,072 B per token; fp8 only when asked: 65,536.
    m, g = load_model("llama3-8b"), load_gpu("h100")
    auto = engine_memory(m, g, dtype=dtype, tokens_per_request=4096)
    assert auto.kv_dtype == "bf16" and auto.kv_bytes_per_token == 131_072
    fp8 = engine_memory(m, g, dtype=dtype, kv_dtype="fp8", tokens_per_request=4096)
    assert fp8.kv_dtype == "fp8" and fp8.kv_bytes_per_token == 65_536


# vLLM's all2all backends (vllm/envs.py VLLM_ALL2ALL_BACKEND choices; --all2all-backend): the values a line may carry
VLLM_ALL2ALL_BACKENDS = ("naive", "pplx", "allgather_reducescatter", "deepep_high_throughput", "deepep_low_latency")
MOE_JOB = ("deepseek-v3", "--gpu", "h200", "--num-gpus", "16", "--prompt", "1000", "--output", "1000")


def launch(cli, *args: str):  # noqa: ANN001, ANN201
    r = cli("serve", *MOE_JOB, *args, "--json")
    return r.code, (r.json()["launch"] if r.code == 0 else r.err)


@pytest.mark.parametrize(("dispatcher", "backend"), [("deepep", "deepep_low_latency"), ("naive", "naive"),
                                                     ("allgather", None)])
def test_vllm_line_carries_a_non_default_dispatcher(cli, dispatcher: str, backend: str | None) -> None:
    """vLLM 0.11 (the current release here) runs allgather_reducescatter by default: any other --dispatcher goes on
    the line as --all2all-backend, in vLLM's own value names (deepep: the low-latency kernels serve prices decode
    with); the default adds nothing."""
    code, line = launch(cli, "--emit", "vllm", "--dispatcher", dispatcher)
    assert code == 0 and "--enable-expert-parallel" in line, line
    p = vllm_parser()
    p.add_argument("--all2all-backend", choices=VLLM_ALL2ALL_BACKENDS)
    assert p.parse_args(shlex.split(line)[2:]).all2all_backend == backend


def test_dispatcher_by_engine_and_version(cli) -> None:
    """Before 0.11 the backend is vLLM's VLLM_ALL2ALL_BACKEND variable (default naive) and has no
    allgather_reducescatter; SGLang runs DeepEP with --moe-a2a-backend deepep, its default "none" is allgather;
    a dispatcher an engine has no setting for is refused in one line naming --dispatcher."""
    code, line = launch(cli, "--emit", "vllm", "--engine-version", "0.10.1", "--dispatcher", "deepep")
    assert code == 0 and line.startswith("VLLM_ALL2ALL_BACKEND=deepep_low_latency vllm serve "), line
    assert "--all2all-backend" not in line
    assert launch(cli, "--emit", "sglang", "--dispatcher", "deepep")[1].endswith(" --moe-a2a-backend deepep")
    assert "--moe-a2a-backend" not in launch(cli, "--emit", "sglang", "--dispatcher", "allgather")[1]
    for args in (("vllm", "--engine-version", "0.10.1", "--dispatcher", "allgather"), ("vllm", "--dispatcher", "alltoall"),
                 ("sglang", "--dispatcher", "alltoall"), ("trtllm", "--dispatcher", "deepep")):
        code, err = launch(cli, "--emit", *args)
        assert code == 2 and err.startswith("llmcalc: error: --dispatcher: ") and err.count("\n") == 1, err


def test_the_line_carries_the_dtype_and_speculation_the_plan_is_priced_with(cli) -> None:
    """QA finding: a plan sized for --dtype fp8 / fp16 or speculative decoding emitted a line without them (vLLM would
    then load bf16 weights and run no speculation)."""
    import json

    base = ("llama3-8b", "--gpu", "h100", "--prompt", "1024", "--rate", "10", "--emit", "vllm")
    ns = vllm_parser().parse_args(shlex.split(emitted(cli, *base, "--dtype", "fp8"))[2:])
    assert ns.quantization == "fp8" and ns.dtype is None  # vLLM quantizes the bf16 checkpoint to FP8 online
    ns = vllm_parser().parse_args(shlex.split(emitted(cli, *base, "--dtype", "fp16"))[2:])
    assert ns.dtype == "float16" and ns.quantization is None
    ns = vllm_parser().parse_args(shlex.split(emitted(cli, *base))[2:])
    assert ns.dtype is None and ns.quantization is None and ns.speculative_config is None
    ns = vllm_parser().parse_args(shlex.split(emitted(cli, *base, "--speculative", "ngram", "--spec-tokens", "3"))[2:])
    assert json.loads(ns.speculative_config) == {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4}
    # a draft model: vLLM V1 (0.10-0.13) raises NotImplementedError for it, so no line is emitted for the default release
    r = cli("serve", *base, "--speculative", "draft", "--draft", "llama3.2-1b")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --speculative") and "draft model" in r.err


DISAGG = ("llama3.1-8b", "--gpu", "h100", "--prompt", "8000", "--output", "200", "--ttft-ms", "1000", "--tpot-ms", "15",
          "--rate", "20", "--disaggregated")


def _pools(out: str, start: str) -> list[tuple[str, str]]:
    """(comment, command) for each pool the output prints: a `# ... pool` line, then its command."""
    lines = out.splitlines()
    return [(lines[i], lines[i + 1]) for i, x in enumerate(lines) if x.startswith("# ") and " pool: " in x
            and i + 1 < len(lines) and lines[i + 1].startswith(start)]


def test_disaggregated_plan_emits_both_pools(cli) -> None:  # noqa: ANN001
    """Issue 24 item 5: "both pools for a disaggregated plan". The best layout here is a prefill + decode split
    (its name says how many instances of each); the output carries one command per pool, each parsed with vLLM's own
    flags plus the NIXL KV connector both sides need, the decode pool with the plan's batch as --max-num-seqs."""
    r = cli("serve", *DISAGG, "--emit", "vllm", "--json")
    assert r.code == 0, r.err
    best = r.json()["best"]
    assert best["prefill_gpus"] > 0, "the case is meant to pick a disaggregated layout"
    prefill_n = best["prefill_gpus"] // best["gpus_per_replica"]
    assert f"{prefill_n} prefill + {best['replicas']} decode" in best["name"]
    r = cli("serve", *DISAGG, "--emit", "vllm")
    pools = _pools(r.out, "vllm serve")
    assert [c.split(":")[0] for c, _ in pools] == ["# prefill pool", "# decode pool"]
    assert f"{prefill_n} instance" in pools[0][0] and f"{best['replicas']} instance" in pools[1][0]
    parser = vllm_parser()
    parser.add_argument("--kv-transfer-config")
    for _, line in pools:
        ns = parser.parse_args(shlex.split(line)[2:])
        assert json.loads(ns.kv_transfer_config) == {"kv_connector": "NixlConnector", "kv_role": "kv_both"}
        assert int(ns.tensor_parallel_size) == best["tp"] and int(ns.max_model_len) == 8200
    prefill, decode = (parser.parse_args(shlex.split(line)[2:]) for _, line in pools)
    assert prefill.max_num_seqs is None and int(decode.max_num_seqs) == best["batch"]


def test_disaggregated_sglang_pools_and_trtllm_refused(cli) -> None:  # noqa: ANN001
    r = cli("serve", *DISAGG, "--emit", "sglang")
    assert r.code == 0, r.err
    pools = _pools(r.out, "python -m sglang.launch_server")
    assert [line.split("--disaggregation-mode ")[1].split()[0] for _, line in pools] == ["prefill", "decode"]
    assert "--max-running-requests" not in pools[0][1] and "--max-running-requests" in pools[1][1]
    r = cli("serve", *DISAGG, "--emit", "trtllm")
    assert r.code == 2 and r.err.count("\n") == 1 and "--emit" in r.err and "disaggregated" in r.err
