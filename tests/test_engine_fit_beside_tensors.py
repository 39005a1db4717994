"""`memory --mode infer` counts the tensors; the serving commands launch an engine that keeps back more
(gpu_memory_utilization's margin, its profile-run activations, non-torch memory). The same job was "fits, smallest
count 2" in `memory` and `report` and "0 KV tokens, needs 4 GPUs" in `latency` / `concurrency` / `serve` without a word
(QA finding). Both verdicts are now printed side by side, from the one capacity call of the serving commands.

By hand, Llama 3 70B on 2 x H100 (TP 2), vLLM V1 defaults: 0.9 x 79.20 GiB CUDA total = 71.28 GiB, less 65.71 GiB of
weights a GPU and the profile run's activations: under 4.8 GiB of KV room at best, while `concurrency` shows none."""

from __future__ import annotations


def test_memory_prints_the_engines_verdict_and_warns_when_they_differ(cli) -> None:
    args = ("memory", "llama3-70b", "--gpu", "h100", "--num-gpus", "2", "--tp", "2", "--batch", "8", "--seq", "1280")
    r = cli(*args, "--json")
    assert r.code == 0 and r.json()["fits"] is True  # the tensors: 69.4 GiB of 79.2
    e = r.json()["engine_fit"]
    conc = cli("concurrency", "llama3-70b", "--gpu", "h100", "--num-gpus", "2", "--max-model-len", "1280", "--json").json()
    assert e["engine"] == "vllm" and e["fits"] is False and e["max_concurrency"] == conc["max_concurrency"] == 0
    lat = cli("latency", "llama3-70b", "--gpu", "h100", "--num-gpus", "2", "--batch", "8", "--prompt", "1024", "--output", "256")
    # at vLLM's default launch (max_num_seqs 1,024: a profile run sampling 1,024 sequences): TP1 x PP3, the busiest
    # stage 27 of 80 layers, ~46 GiB of weights a GPU, holds it where TP 2 does not
    assert e["min_gpus"] == 3
    # launched for the batch (--max-num-seqs 8) the profile run samples 8 sequences and 8 x 1,280 tokens fit on these 2
    assert lat.code == 2 and lat.err.startswith("llmcalc: error: --max-num-seqs:") and "with --max-num-seqs 8" in lat.err
    as_json = cli("latency", "llama3-70b", "--gpu", "h100", "--num-gpus", "2", "--batch", "8", "--prompt", "1024",
                  "--output", "256", "--json")  # the page, then the same refusal naming the same flag
    assert as_json.code == 2 and as_json.json()["fits"] is False and as_json.err.startswith("llmcalc: error: --max-num-seqs:")
    capped = cli("latency", "llama3-70b", "--gpu", "h100", "--num-gpus", "2", "--batch", "8", "--prompt", "1024", "--output",
                 "256", "--max-num-seqs", "8", "--json")
    assert capped.code == 0 and capped.json()["fits"]
    table = cli(*args)
    assert "the tensors fit, but vllm" in table.err and "the fewest GPUs that hold it: 3" in table.err


def test_report_shows_both_counts(cli) -> None:
    r = cli("report", "llama3-70b", "--gpu", "h100", "--num-gpus", "4", "--prompt", "1024", "--output", "256", "--batch", "8",
            "--json")
    assert r.code == 0
    mem = r.json()["memory"]
    assert mem["min_gpus"] == 2 and mem["engine_fit"]["min_gpus"] == 3 and mem["engine_fit"]["fits"] is True


def test_report_train_at_an_assumed_mfu_shows_a_layout_that_fits(cli) -> None:
    """QA finding: `report --mode train --mfu 0.4` priced the memory of plain DP 64 (362.5 GiB a GPU, "does not fit")
    beside "fits": true and 205 days, while train-time found a layout that fits. The page now shows the memory of
    train-plan's fastest fitting layout, and the days stay at the assumed MFU."""
    r = cli("report", "llama3-70b", "--mode", "train", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T", "--mfu", "0.4",
            "--json")
    assert r.code == 0
    d = r.json()
    assert d["fits"] is True and d["fit"] == d["memory"]["fit"] == "fits"
    plan = cli("train-plan", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--global-batch", "1024",
               "--json").json()["plans"][0]  # report: train-plan's default batch, 4M tokens / 4,096
    assert (d["memory"]["tp"], d["memory"]["pp"], d["memory"]["dp"]) == (plan["tp"], plan["pp"], plan["dp"])
    assert d["memory"]["per_gpu_bytes"] == plan["memory_per_gpu_bytes"]
    # 1T tokens x 6 x 70.6B params (+ attention) at 40% of 989.4 TFLOP/s x 64 GPUs: about 205 days
    assert d["train_time"]["mfu"] == 0.4 and 200 < d["train_time"]["days"] < 210


def test_serve_at_a_light_rate_says_what_users_see(cli) -> None:
    """QA finding: `serve --rate 0.01` headlined TTFT 63 ms / TPOT 63 ms, the full-batch (329) planning figures, where a
    replica holds ~0.2 requests (Little's law) and latency --batch 1 gives 28 / 7.5 ms. The JSON's at_rate and the
    headline now carry the batch-1 point, which is latency's."""
    r = cli("serve", "llama3-8b", "--gpu", "h100", "--num-gpus", "1", "--rate", "0.01", "--json")
    assert r.code == 0
    at = r.json()["at_rate"]
    lat = cli("latency", "llama3-8b", "--gpu", "h100", "--batch", "1", "--prompt", "1024", "--output", "256", "--json").json()
    assert at["batch"] == 1 and at["requests_held"] < 1
    assert abs(at["ttft_ms"] / (lat["ttft_s"] * 1e3) - 1) < 0.02 and abs(at["tpot_ms"] / (lat["tpot_s"] * 1e3) - 1) < 0.02
    assert "users see about TTFT" in r.json()["verdict"]
    heavy = cli("serve", "llama3-8b", "--gpu", "h100", "--num-gpus", "1", "--rate", "19", "--json").json()
    assert heavy["at_rate"] is None  # 19 of 20 req/s: the slots run busy, the full-batch figures are what users see
