"""Every bad input: exit code 2, one line naming the problem, no traceback (issue 7)."""

from __future__ import annotations

from pathlib import Path

import pytest

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" + "".join(
    f"{chr(99 + i)}: &{chr(99 + i)} [{', '.join(['*' + chr(98 + i)] * 9)}]\n" for i in range(8))


def _files(tmp: Path) -> dict[str, str]:
    files = {
        "empty.yaml": "",
        "bad.yaml": "name: [unclosed\n",
        "bad.json": "{not json",
        "python-tag.yaml": "!!python/object/apply:os.system ['echo pwned']\n",
        "bomb.yaml": BOMB,
        "missing.json": '{"model_type": "llama", "num_hidden_layers": 2}',
        "wrongtype.json": '{"model_type": "llama", "hidden_size": "big", "num_hidden_layers": 2}',
        "kvheads.yaml": "name: x\nnum_layers: 2\nhidden_size: 64\nnum_heads: 8\nnum_kv_heads: 3\n"
                        "intermediate_size: 128\nvocab_size: 100\ntied_embeddings: true\ngated_mlp: true\n",
        "headdim.yaml": "name: x\nnum_layers: 2\nhidden_size: 100\nnum_heads: 8\n"
                        "intermediate_size: 128\nvocab_size: 100\ntied_embeddings: true\ngated_mlp: true\n",
        "zero.yaml": "name: x\nnum_layers: 0\nhidden_size: 64\nnum_heads: 8\n"
                     "intermediate_size: 128\nvocab_size: 100\ntied_embeddings: true\ngated_mlp: true\n",
        "negative.yaml": "name: x\nnum_layers: 2\nhidden_size: -64\nnum_heads: 8\n"
                         "intermediate_size: 128\nvocab_size: 100\ntied_embeddings: true\ngated_mlp: true\n",
    }
    for name, text in files.items():
        (tmp / name).write_text(text)
    return {name: str(tmp / name) for name in files}


CASES = [
    (["params", "llama2-7bb"], "did you mean llama2-7b"),
    (["memory", "llama2-7b", "--gpu", "h1000"], "did you mean"),
    (["params", "/no/such/file.yaml"], "no such file"),
    (["params", "{tmp}"], "is a directory"),
    (["params", "@empty.yaml"], "is empty"),
    (["params", "@bad.yaml"], "not valid safe YAML"),
    (["params", "@bad.json"], "not valid JSON"),
    (["params", "@python-tag.yaml"], "not valid safe YAML"),
    (["params", "@bomb.yaml"], "anchors/aliases are not allowed"),
    (["params", "@missing.json"], "'hidden_size' is missing"),
    (["params", "@wrongtype.json"], "'hidden_size' must be an integer"),
    (["params", "@kvheads.yaml"], "must be a multiple of num_kv_heads"),
    (["params", "@headdim.yaml"], "not divisible by num_heads"),
    (["params", "@zero.yaml"], "num_layers"),
    (["params", "@negative.yaml"], "hidden_size"),
    (["memory", "llama2-7b", "--tp", "3"], "--tp: 3 does not divide the 32 attention heads"),
    (["flops", "llama2-7b", "--seq", "0"], "--seq: must be >= 1"),
    (["flops", "llama2-7b", "--batch", "0"], "--batch: must be >= 1"),
    (["flops", "llama2-7b", "--batch", "-3"], "--batch: must be >= 1"),
    (["mfu", "--model", "llama3-70b", "--gpu", "h100", "--tokens", "15X", "--gpu-hours", "6.4M"], "--tokens: '15X' is not a number"),
    (["mfu", "--model", "llama3-70b", "--gpu", "h100", "--tokens-per-s", "nan"], "--tokens-per-s"),
    (["train-time", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "2T", "--mfu", "inf"], "--mfu: 'inf' is not a number"),
    (["train-time", "llama2-7b", "--gpu", "h100", "--num-gpus", "0", "--tokens", "2T"], "--num-gpus: must be >= 1"),
    (["train-time", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "2T", "--mfu", "40"], "--mfu: is a fraction"),
    (["concurrency", "llama2-70b", "--gpu", "a800", "--max-tokens", "0"], "--max-tokens: must be >= 1"),
    (["latency", "llama2-7b", "--gpu", "nope", "--prompt", "10"], "unknown gpu 'nope'"),
    (["memory", "llama2-7b", "--dtype", "fp7"], "unknown dtype 'fp7'"),
    (["latency", "llama2-7b", "--gpu", "h100", "--num-gpus", "5", "--prompt", "10"], "--num-gpus: serving uses TP = GPUs"),
    (["flops", "llama2-7b", "--batch", "abc"], "batch"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(c[0])[:60] for c in CASES])
def test_bad_input(cli, tmp_path: Path, args: list[str], message: str) -> None:
    files = _files(tmp_path)
    args = [files[a[1:]] if a.startswith("@") else a.replace("{tmp}", str(tmp_path)) for a in args]
    r = cli(*args)
    assert r.code == 2, (r.out, r.err)
    assert message in r.err
    assert "Traceback" not in r.err + r.out
    assert len(r.err.strip().splitlines()) == 1


def test_absurd_values_answer_without_overflow(cli) -> None:
    r = cli("train-time", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1e30", "--json")
    assert r.code == 0 and r.json()["days"] > 1e15


def test_params_json_keys(cli) -> None:
    data = cli("params", "llama2-7b", "--json").json()
    assert data["total_params"] == 6_738_415_616
    assert {"active_params", "textbook_params", "components"} <= data.keys()


def test_params_table_shows_exact_and_textbook(cli) -> None:
    r = cli("params", "llama2-7b", "--explain")
    assert "6,738,415,616" in r.out and "6,573,522,944" in r.out and "12*L*H^2" in r.out


def test_gpus_json(cli) -> None:
    rows = cli("gpus", "--json").json()
    h100 = next(r for r in rows if r["name"] == "h100-sxm")
    assert h100["derived_peak_tflops"]["bf16"] == pytest.approx(989.42976)
    assert h100["datasheet_peak_tflops"]["bf16"] == 989.4


@pytest.mark.parametrize(
    ("args", "keys"),
    [
        (["flops", "llama2-7b"], {"forward_flops", "training_flops", "per_token_inference_flops",
                                  "per_token_training_flops", "approx_2n", "approx_6n"}),
        (["memory", "llama2-7b", "--gpu", "a100"], {"weights_bytes", "kv_cache_bytes", "kv_cache_bytes_per_token",
                                                    "activation_bytes", "gradient_bytes", "optimizer_bytes",
                                                    "total_bytes", "per_gpu_bytes", "fits"}),
        (["mfu", "--model", "llama3-70b", "--gpu", "h100", "--tokens", "15T", "--gpu-hours", "6.4M", "--seq", "8192"],
         {"mfu", "mfu_with_attention", "model_flops_per_s"}),
        (["train-time", "llama2-7b", "--gpu", "a100", "--num-gpus", "64", "--tokens", "2T"], {"gpu_hours", "days", "cost"}),
        (["latency", "llama2-70b", "--gpu", "a800", "--num-gpus", "8", "--prompt", "4000", "--output", "96", "--batch", "16"],
         {"ttft_s", "tpot_s", "prefill_bound", "decode_bound", "tokens_per_s"}),
        (["concurrency", "llama2-70b", "--gpu", "a800", "--num-gpus", "2", "--max-tokens", "4000"],
         {"max_concurrency", "kv_cache_bytes_per_request", "free_bytes"}),
        (["flops", "llama2-7b", "--generate", "16", "--intensity", "--fused"],
         {"forward_flops", "decode", "intensity_prefill", "intensity_decode", "fused"}),
        (["models"], {"models"}),
        (["show", "h100"], {"derived_peak_tflops"}),
        (["show", "mistral-7b"], {"num_kv_heads"}),
    ],
)
def test_json_keys(cli, args: list[str], keys: set[str]) -> None:
    r = cli(*args, "--json")
    assert r.code == 0, r.err
    assert keys <= r.json().keys()


def test_mfu_model_flops_keys_mean_one_thing_in_every_mode(cli) -> None:
    """QA finding: `mfu`'s model_flops was per step with --step-time, per second with --tokens-per-s and for the run
    with --tokens --gpu-hours. Now model_flops_per_s is the job's rate in every mode, and the per-step and whole-run
    figures have their own keys: 64 x 8,192 tokens in 10 s = 52,428.8 tokens/s, the same job either way."""
    base = ("mfu", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--seq", "8192", "--json")
    step = cli(*base, "--step-time", "10", "--global-batch", "64").json()
    rate = cli(*base, "--tokens-per-s", "52428.8").json()
    run = cli("mfu", "llama3-8b", "--gpu", "h100", "--seq", "8192", "--json", "--tokens", "1e12",
              "--gpu-hours", str(1e12 / 52428.8 * 8 / 3600)).json()  # a finished run: GPU-hours, no GPU count
    # GPU-hours carry no GPU count: no whole-job rate is claimed (it printed the per-GPU rate as the job's)
    assert run["model_flops_per_s"] is None and run["tokens_per_s"] is None and run["num_gpus"] is None
    assert run["model_flops_per_s_per_gpu"] == pytest.approx(52428.8 / 8 * run["flops_per_token"])
    assert step["model_flops_per_s"] == pytest.approx(rate["model_flops_per_s"]) == pytest.approx(8 * run["model_flops_per_s_per_gpu"])
    assert step["model_flops_per_s_per_gpu"] == pytest.approx(run["model_flops_per_s_per_gpu"])
    assert step["model_flops_per_step"] == pytest.approx(10 * step["model_flops_per_s"])
    assert run["model_flops_total"] == pytest.approx(1e12 * run["flops_per_token"])
    assert rate["model_flops_per_step"] is None and rate["model_flops_total"] is None


def test_mfu_prints_the_runs_6n_total_as_papers_publish_it(cli) -> None:
    """Llama 3 (arXiv 2407.21783) gives 3.8e25 FLOPs for the 405B model on 15.6T tokens: 6 x 405.85B x 15.6T. The run's
    with-attention total is larger; both are printed, each named (QA finding: one unlabelled total in EFLOPs)."""
    r = cli("mfu", "llama3.1-405b", "--gpu", "h100-sxm", "--tokens", "15.6T", "--gpu-hours", "30.84M", "--seq", "8192",
            "--json").json()
    assert r["model_flops_total_6n"] == pytest.approx(3.8e25, rel=0.01)
    assert r["model_flops_total"] > r["model_flops_total_6n"]
    assert r["model_flops_per_s_per_gpu"] == pytest.approx(15.6e12 / (30.84e6 * 3600) * r["flops_per_token"])


def test_flops_gives_the_training_compute_of_a_token_budget(cli) -> None:
    """Llama 3 (arXiv 2407.21783): the 405B model's pre-training used 3.8e25 FLOPs on 15.6T tokens (6ND, the paper's
    convention); a PF-day is 1e15 FLOP/s x 86,400 s (GPT-3, Table D.1). QA finding: only train-time gave a total."""
    r = cli("flops", "llama3.1-405b", "--seq", "8192", "--tokens", "15.6T", "--json").json()["training_compute"]
    assert r["training_flops_6n"] == pytest.approx(3.8e25, rel=0.01)
    assert r["pf_days_6n"] == pytest.approx(r["training_flops_6n"] / 8.64e19)
    assert r["training_flops"] > r["training_flops_6n"]  # attention at 8K adds to 6N
    assert "Training compute of" in cli("flops", "llama3.1-405b", "--seq", "8192", "--tokens", "15.6T").out


def test_mfu_takes_a_papers_tflops_per_gpu(cli) -> None:
    """Llama 3 (arXiv 2407.21783) Table 4: 400 TFLOPs per GPU and 41% MFU on 16,384 H100 at 8K. Under the same
    convention (model FLOPs with attention over the bf16 dense peak 989.4 TFLOPS) by hand: 400 / 989.4 = 40.4%."""
    r = cli("mfu", "llama3.1-405b", "--gpu", "h100", "--seq", "8192", "--tflops-per-gpu", "400", "--json").json()
    assert r["mfu_with_attention"] == pytest.approx(400 / 989.4, rel=1e-3)
    assert r["model_flops_per_s_per_gpu"] == pytest.approx(400e12)
    assert r["num_gpus"] is None and r["model_flops_per_s"] is None  # a per-GPU figure: no whole job claimed
    both = cli("mfu", "llama3.1-405b", "--gpu", "h100", "--tflops-per-gpu", "400", "--tokens-per-s", "5")
    assert both.code == 2 and "--tflops-per-gpu" in both.err
