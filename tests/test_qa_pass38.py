"""Findings of the pass-37 hostile QA sweep mended in pass 38, each checked against an independent path."""

from __future__ import annotations


def test_latency_says_in_json_whether_the_ttft_target_is_met(cli) -> None:
    """--ttft-ms in latency checks one deployment, as serve's layouts do (``meets_targets``): the JSON carries the
    target and whether the modelled TTFT is at or under it; without --ttft-ms both are null, and a deployment that
    does not fit has no TTFT to compare (null, as its times)."""
    run = ("latency", "llama3-8b", "--gpu", "h100", "--json")
    ttft = cli(*run).json()["ttft_s"]
    below, above = cli(*run, "--ttft-ms", f"{ttft * 1e3 * 0.9:.6f}").json(), cli(*run, "--ttft-ms", f"{ttft * 1e3 * 1.1:.6f}").json()
    assert below["meets_targets"] is False and above["meets_targets"] is True
    assert abs(above["target_ttft_s"] / (ttft * 1.1) - 1) < 1e-6
    none = cli(*run).json()
    assert none["meets_targets"] is None and none["target_ttft_s"] is None
    unfit = cli("latency", "llama3-70b", "--gpu", "h100", "--ttft-ms", "50", "--json")
    assert unfit.code == 2 and unfit.json()["meets_targets"] is None and unfit.json()["ttft_s"] is None


def test_mfu_reads_back_train_steps_mfu_for_packed_documents_and_lora(cli) -> None:
    """A step time train-step predicts, fed back to `mfu` with the same run (GPUs, global batch, --doc-tokens,
    --method lora), gives train-step's MFU: one count of the model FLOPs (calc.training.model_flops). By hand for the
    packed run: Llama 3 8B at s = 4,096 in documents of 512 counts the attention of 8 documents of 512 tokens,
    2 x 32 layers x 32 heads x 256 x 512^2 x 8 = 1,099,511,627,776 FLOPs a sequence, against the whole sequence's
    2 x 32 x 32 x 256 x 4,096^2 = 8,796,093,022,208 (the forward's other FLOPs 2 x 7,504,658,432 x 4,096 either way):
    the model FLOPs per token fall from 3 x 70,274,254,897,152 / 4,096 to 3 x 62,577,673,502,720 / 4,096."""
    run = ("--gpu", "h100", "--num-gpus", "8", "--global-batch", "256")
    other = 2 * 7_504_658_432 * 4096
    assert other + 8_796_093_022_208 == 70_274_254_897_152
    packed_forward = other + 2 * 32 * 32 * 256 * 512 ** 2 * 8
    for extra, per_token in ((("--doc-tokens", "512"), 3 * packed_forward / 4096), (("--method", "lora"), None)):
        step = cli("train-step", "llama3-8b", *run, "--zero", "1", *extra, "--json").json()
        back = cli("mfu", "llama3-8b", *run, "--step-time", repr(step["step_time_s"]), *extra, "--json").json()
        assert abs(back["mfu"] / step["mfu"] - 1) < 1e-12
        if per_token is not None:
            assert back["flops_per_token"] == per_token
    plain = cli("mfu", "llama3-8b", *run, "--step-time", "10", "--json").json()
    assert plain["flops_per_token"] == 3 * 70_274_254_897_152 / 4096


def test_mfu_explain_traces_its_hfu(cli) -> None:
    """The HFU under full recomputation the JSON carries is the one the explain derives (it once said 4/3 x MFU,
    another figure): Llama 3 8B at s = 4,096, causal training FLOPs 3 x (F - A/2 + A/(2 x 4,096)) plus the layers'
    forward again, causal, without the head's 2 x 4,096 x 525,336,576."""
    r = cli("mfu", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "256", "--step-time", "10",
            "--json", "--explain").json()
    forward, attention, head = 70_274_254_897_152, 8_796_093_022_208, 2 * 4096 * 525_336_576
    causal = forward - attention + attention * 4097 / 8192
    executed = (3 * causal + causal - head) / 4096
    rate = 256 * 4096 / 10 / 8
    assert abs(r["hfu_full_recompute"] / (rate * executed / 989.4e12) - 1) < 1e-3
    assert any(f"= {r['hfu_full_recompute']:.4f}; selective" in line for line in r["explain"])


def test_train_time_days_without_a_node_type_holds_the_run(cli) -> None:
    """--days at an assumed MFU (no node type ships for the A10, or --mfu given) answers the fewest whole nodes that
    both hold the run and finish in time: Llama 3 70B's training states alone (16 B x 70.6e9 = 1.13 TB, ZeRO-3)
    need 1.13e12 / 22.06 GiB = 48 A10s before any activation, so the 16 the time alone asks for cannot be the answer;
    the count returned runs (rc 0) where one node fewer is refused."""
    run = ("train-time", "llama3-70b", "--tokens", "1e11", "--json")
    got = cli(*run, "--gpu", "a10", "--days", "1000").json()
    assert got["days"] <= 1000 and got["num_gpus"] >= 48 and got["num_gpus"] % 8 == 0
    assert cli(*run, "--gpu", "a10", "--num-gpus", str(got["num_gpus"])).code == 0
    assert cli(*run, "--gpu", "a10", "--num-gpus", str(got["num_gpus"] - 8)).code == 2
    pinned = cli(*run, "--gpu", "h100", "--days", "1000", "--mfu", "0.3")
    assert pinned.code == 0 and cli(*run, "--gpu", "h100", "--num-gpus", str(pinned.json()["num_gpus"]), "--mfu",
                                    "0.3").code == 0


def test_one_gpu_without_a_node_type_is_predicted_alike(cli) -> None:
    """One A10 (no node type ships): train-plan places the plan on a node of one; train-time and report --mode train
    use the same plan's MFU rather than an assumed 0.4, and its days are tokens / (tokens per step / step time)."""
    plan = cli("train-plan", "qwen3-0.6b", "--gpu", "a10", "--num-gpus", "1", "--json").json()["plans"][0]
    timed = cli("train-time", "qwen3-0.6b", "--gpu", "a10", "--num-gpus", "1", "--tokens", "1e9", "--json").json()
    page = cli("report", "qwen3-0.6b", "--mode", "train", "--gpu", "a10", "--num-gpus", "1", "--tokens", "1e9",
               "--json").json()["train_time"]
    assert timed["mfu"] == page["mfu"] == plan["mfu"]
    steps = 1e9 / (plan["global_batch"] * 4096)
    assert abs(timed["days"] / (steps * plan["step_time_s"] / 86400) - 1) < 1e-9


def test_report_sized_for_a_rate_prices_one_replica_of_serves_pick(cli) -> None:
    """report --rate without --num-gpus: serve sizes the GPUs (its plan in the page), and the page's memory,
    concurrency and latency are one replica of that pick, as `latency --tp T --pp P` prices it, not one GPU (where
    Llama 3 70B's 141 GB of weights cannot sit on an 80 GB H100: the page was refused before)."""
    ask = ("--gpu", "h100", "--rate", "20", "--ttft-ms", "2000", "--tpot-ms", "50")
    page = cli("report", "llama3-70b", *ask, "--json")
    assert page.code == 0
    r, served = page.json(), cli("serve", "llama3-70b", *ask, "--json").json()
    best = served["best"]
    assert (r["serving"]["best"]["name"], r["serving"]["gpus_needed"]) == (best["name"], served["gpus_needed"])
    assert r["num_gpus"] == best["tp"] * best["pp"] and (r["latency"]["tp"], r["latency"]["pp"]) == (best["tp"], best["pp"])
    alone = cli("latency", "llama3-70b", "--gpu", "h100", "--tp", str(best["tp"]), "--pp", str(best["pp"]), "--json").json()
    assert r["latency"]["ttft_s"] == alone["ttft_s"] and r["latency"]["tpot_s"] == alone["tpot_s"]
    missed = cli("report", "llama3-70b", "--gpu", "h100", "--rate", "20", "--tpot-ms", "1")
    assert missed.code == 2 and "--tpot-ms" in missed.err


def test_report_and_compare_take_serves_engine_settings(cli) -> None:
    """The engine settings serve takes (--max-num-seqs, --gpu-memory-utilization, SGLang's --mem-fraction-static,
    ...) are report's and compare's too, with the same meaning: each page's serving plan is serve's under them. At
    --max-num-seqs 64 serve runs at most 64 requests a replica (vLLM's scheduler cap), as report and compare do."""
    base = ("llama3-8b", "--gpu", "h100", "--num-gpus", "1")
    for knobs in (("--max-num-seqs", "64"), ("--gpu-memory-utilization", "0.8"),
                  ("--engine", "sglang", "--mem-fraction-static", "0.8")):
        served = cli("serve", *base, *knobs, "--json").json()["best"]
        page = cli("report", *base, *knobs, "--json").json()["serving"]["best"]
        row = cli("compare", "llama3-8b", "h100", "--num-gpus", "1", *knobs, "--json").json()
        row = (row["rows"] if isinstance(row, dict) else row)[0]
        assert page["batch"] == served["batch"] == row["batch"] and page["tpot_ms"] == served["tpot_ms"]
    assert cli("serve", *base, "--max-num-seqs", "64", "--json").json()["best"]["batch"] == 64
    refused = cli("report", "llama3-8b", "--gpu", "h100", "--mode", "train", "--max-num-seqs", "64")
    assert refused.code == 2 and "--max-num-seqs" in refused.err


def test_report_train_without_a_node_type_places_a_fitting_layout(cli) -> None:
    """No node type ships for the A10, so report --mode train times an assumed MFU of 0.4 on a DP placement; that
    placement is the first that fits (ZeRO-1, ZeRO-3, then recomputing), as train-time's fit check and memory's advice
    find it, and --recompute pins it. Days by hand: 1T tokens x 3 x 70,274,254,897,152 / 4,096 FLOPs per token /
    (8 x 125 TFLOPS x 0.4) / 86,400 s = 1,489.3 days."""
    run = ("llama3-8b", "--gpu", "a10", "--mode", "train", "--num-gpus", "8", "--tokens", "1T", "--json")
    page = cli("report", *run)
    assert page.code == 0
    days = 1e12 * 3 * 70_274_254_897_152 / 4096 / (8 * 125e12 * 0.4) / 86400
    assert abs(page.json()["train_time"]["days"] / days - 1) < 1e-9
    timed = cli("train-time", "llama3-8b", "--gpu", "a10", "--num-gpus", "8", "--tokens", "1T", "--json").json()
    assert timed["days"] == page.json()["train_time"]["days"]
    gaudi = ("llama3-8b", "--gpu", "gaudi3", "--mode", "train", "--num-gpus", "8", "--json")
    none, full = (cli("report", *gaudi, "--recompute", r).json()["memory"]["per_gpu"]["activations"] for r in ("none", "full"))
    assert full < none


def test_concurrency_totals_hold_each_layer_once_under_pp(cli) -> None:
    """Under PP the fullest stage admits the requests, but the replica's totals count each layer once: Llama 3 8B's
    weights are 8,030,261,248 x 2 B = 16,060,522,496 whatever the layout (3 stages of 11, 11, 10 layers once counted
    3 x the 11-layer stage); a 4,256-token request holds 266 blocks of 16 tokens x 32 layers x 2 x 8 KV heads x 128 x
    2 B = 557,842,432 B; the pool's bytes are its tokens x 131,072 B; the parts sum to the GPUs' capacity."""
    for layout in (("--pp", "3"), ("--pp", "4"), ("--tp", "4"), ()):
        r = cli("concurrency", "llama3-8b", "--gpu", "h100", *layout, "--max-model-len", "4256", "--json").json()
        assert r["weights_bytes"] == 16_060_522_496 and r["kv_cache_bytes_per_request"] == 557_842_432
        if layout[:1] == ("--pp",):  # the pool in whole tokens over every layer (one rank's budget x GPUs without PP)
            assert r["free_bytes"] == r["kv_cache_tokens"] * 131_072
        assert r["weights_bytes"] + r["reserve_bytes"] + r["activation_bytes"] + r["free_bytes"] == r["capacity_bytes"]


def test_flops_output_counts_generated_tokens_as_latency_does(cli) -> None:
    """--output T is T generated tokens in every command: the prefill makes the first, T - 1 decode steps follow
    (latency's e2e = TTFT + (T - 1) x TPOT). Llama 3 8B (M = 7,504,658,432 matmul weights, 32 layers x 32 heads x
    (128 + 128)) after a 1,000-token prompt: --output 1 decodes nothing; --output 2 runs one step at 1,001 keys,
    2 x M + 2 x 32 x 256 x 32 x 1,001 FLOPs; --output 3 adds one at 1,002."""
    step = 2 * 7_504_658_432 + 2 * 32 * 256 * 32 * 1001
    gen = {t: cli("flops", "llama3-8b", "--seq", "1000", "--output", str(t), "--json").json()["decode"]["generation_flops"]
           for t in (1, 2, 3)}
    assert gen == {1: 0, 2: step, 3: 2 * step + 2 * 32 * 256 * 32}


def test_report_and_compare_size_for_users_as_serve_does(cli) -> None:
    """--users (closed-loop concurrent users) is serve's other traffic: report and compare take it with the same
    meaning, and their serving plan is serve's (the page one replica of it), refused beside --rate as serve refuses."""
    ask = ("--users", "200", "--tpot-ms", "50", "--json")
    served = cli("serve", "llama3-70b", "--gpu", "h100", *ask).json()
    page = cli("report", "llama3-70b", "--gpu", "h100", *ask).json()
    rows = cli("compare", "llama3-70b", "h100", *ask).json()
    row = (rows["rows"] if isinstance(rows, dict) else rows)[0]
    assert (page["serving"]["best"]["name"], page["serving"]["gpus_needed"]) == (served["best"]["name"],
                                                                                 served["gpus_needed"])
    assert row["gpus"] == served["gpus_needed"] and row["users"] == 200
    assert page["num_gpus"] == served["best"]["tp"] * served["best"]["pp"]
    both = cli("report", "llama3-70b", "--gpu", "h100", "--users", "200", "--rate", "3")
    assert both.code == 2 and "not both" in both.err
