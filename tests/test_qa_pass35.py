"""Pass 35's QA sweep, the defects it confirmed: EP layouts between serve, latency and concurrency, the launch lines
that start them, and options that changed nothing."""

from __future__ import annotations

import math
import re

QWEN = ("qwen3-235b-a22b", "--gpu", "h200", "--dtype", "fp8", "--prompt", "4000", "--output", "1000")
TARGETS = ("--tpot-ms", "50", "--rate", "10", "--ttft-ms", "2000")


def test_permute_scope_is_refused_where_no_copy_is_gathered(cli) -> None:
    """--moe-permute-scope picks which gathered copies a rank permutes: under deepep / alltoall each rank receives only
    its own, so it would change nothing."""
    for cmd in (("latency", "qwen3-30b-a3b", "--gpu", "h100", "--ep", "4", "--batch", "64"),
                ("serve", "qwen3-30b-a3b", "--gpu", "h100", "--prompt", "2000", "--output", "500", "--rate", "5")):
        for dispatcher in ("deepep", "alltoall"):
            r = cli(*cmd, "--dispatcher", dispatcher, "--moe-permute-scope", "gathered")
            assert r.code == 2 and r.err.startswith("llmcalc: error: --moe-permute-scope:")
    ok = cli("latency", "qwen3-30b-a3b", "--gpu", "h100", "--ep", "4", "--batch", "64", "--dispatcher", "allgather",
             "--moe-permute-scope", "gathered", "--json")
    local = cli("latency", "qwen3-30b-a3b", "--gpu", "h100", "--ep", "4", "--batch", "64", "--dispatcher", "allgather",
                "--moe-permute-scope", "local", "--json")
    assert ok.code == local.code == 0 and ok.json()["tpot_s"] > local.json()["tpot_s"]  # every copy vs its own


def test_report_refuses_ep_options_on_one_gpu(cli) -> None:
    r = cli("report", "qwen3-30b-a3b", "--gpu", "h100", "--dispatcher", "deepep")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --dispatcher:")


def test_concurrency_ep_refusal_names_the_layout(cli) -> None:
    """DeepSeek-V3 in fp8 (~671 GB) over EP 4 x TP 2 of H200: every GPU holds its group's attention and a quarter of
    the experts, far over 141 GB; the fix is a wider EP, on the layout's own 4 GPUs, and no negative memory is shown."""
    r = cli("concurrency", "deepseek-v3", "--gpu", "h200", "--ep", "4", "--tp", "2")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --ep:") and "exceed 4 x h200" in r.err
    assert "none:" in r.out and " -" not in r.out.split("As the engine logs it")[0]


def test_sglang_cap_covers_the_batch(cli) -> None:
    """SGLang splits --max-running-requests over its DP attention ranks (total // dp each): the emitted cap is the
    batch rounded up to a multiple of DP, and latency admits the batch at that cap."""
    r = cli("serve", *QWEN, *TARGETS, "--engine", "sglang", "--emit", "sglang")
    assert r.code == 0
    best = cli("serve", *QWEN, *TARGETS, "--engine", "sglang", "--json").json()["best"]
    d = best["ep"] // best["tp"]
    cap = int(re.search(r"--max-running-requests (\d+)", r.out).group(1))
    assert cap == d * math.ceil(best["batch"] / d) and cap >= best["batch"]
    if best["ep"] > 1:
        lat = cli("latency", *QWEN, "--engine", "sglang", "--ep", str(best["ep"]), "--tp", str(best["tp"]),
                  "--batch", str(best["batch"]), "--max-num-seqs", str(cap))
        assert lat.code == 0, lat.err


def test_trtllm_ep_layouts_run_attention_tp_one_and_the_line_starts_them(cli) -> None:
    """TensorRT-LLM's attention DP gives each rank the whole attention: EP layouts are DP = EP x TP 1 only, and the
    emitted line turns attention DP on (an LLM API option, through --extra_llm_api_options) with a per-rank batch."""
    from calc.serving.launch import engine_layout

    plan = cli("serve", *QWEN, *TARGETS, "--engine", "trtllm", "--json").json()
    assert all(x["tp"] == 1 for x in plan["layouts"] if x["ep"] > 1)
    r = cli("serve", *QWEN, *TARGETS, "--engine", "trtllm", "--emit", "trtllm")
    line = r.out.strip().splitlines()[-1]
    best = plan["best"]
    assert best["ep"] > 1  # DP4 x TP1 + EP4 is the fewest GPUs here
    assert line.startswith("printf 'enable_attention_dp: true\\n' > attention_dp.yaml && trtllm-serve ")
    assert line.endswith("--extra_llm_api_options attention_dp.yaml")
    tp = int(re.search(r"--tp_size (\d+)", line).group(1))
    ep = int(re.search(r"--ep_size (\d+)", line).group(1))
    assert engine_layout("trtllm", tp, ep=ep) == (best["tp"], best["pp"], best["ep"])  # the line's inverse
    per_rank = int(re.search(r"--max_batch_size (\d+)", line).group(1))
    assert per_rank == math.ceil(best["batch"] / (best["ep"] // best["tp"]))


def test_tokens_is_a_count(cli) -> None:
    for value in ("1e-9", "0.5"):
        r = cli("flops", "llama3-8b", "--tokens", value)
        assert r.code == 2 and r.err.startswith("llmcalc: error: --tokens: must be >= 1")
    assert cli("flops", "llama3-8b", "--tokens", "1").code == 0


def test_a_mamba2_config_with_no_heads_is_refused(cli, tmp_path) -> None:
    """The hostile-config property test found num_heads 0 dividing the hidden size (ZeroDivisionError, exit 1)."""
    import json

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"architectures": ["Mamba2ForCausalLM"], "model_type": "mamba2", "num_heads": 0,
                                "head_dim": 64, "hidden_size": 4096, "num_hidden_layers": 64, "vocab_size": 32768,
                                "state_size": 128, "n_groups": 8}))
    r = cli("params", str(path))
    assert r.code == 2 and "'num_heads' must be >= 1" in r.err
