"""Pass 44: serve's TTFT bills a prompt's last chunk for its own tokens (QA43b B16), activation offloading costs
host-copy time (QA43 A17). Each checked against an independent path: the other command, a hand count."""

from __future__ import annotations

import pytest

GIB = 2**30


def test_serve_and_latency_bill_a_prompt_in_the_same_chunks(cli) -> None:
    """QA43b B16: a 12,000-token prompt under vLLM V1's 8,192-token budget runs in a step of 8,192 and one of 3,808
    (its scheduler takes the last chunk as it is), so at batch 1 `serve` and `latency` must report one TTFT. serve
    billed ceil(12,000 / 8,192) = 2 full steps (16,384 tokens: 507 ms against latency's 375 ms) and refused a
    --ttft-ms 450 that latency said was met."""
    from calc.serving.step import prompt_chunks

    assert prompt_chunks(12_000, 8_192) == [(1, 8_192), (1, 3_808)]
    assert sum(n * t for n, t in prompt_chunks(20_001, 8_192)) == 20_001
    for prompt in (12_000, 20_000, 8_192):
        lat = cli("latency", "llama3.1-8b", "--gpu", "h100", "--prompt", str(prompt), "--output", "256", "--json").json()
        serve = cli("serve", "llama3.1-8b", "--gpu", "h100", "--prompt", str(prompt), "--output", "256", "--num-gpus",
                    "1", "--json").json()
        first = serve["layouts"][0]["frontier"][0]
        assert first["batch"] == 1
        assert first["ttft_ms"] == pytest.approx(lat["ttft_s"] * 1e3, rel=1e-9), prompt
    query = ("llama3.1-8b", "--gpu", "h100", "--prompt", "12000", "--output", "256", "--ttft-ms", "450")
    assert cli("latency", *query).code == 0
    assert cli("serve", *query, "--num-gpus", "1", "--json").code == 0


def test_the_host_link_is_the_datasheet_rate() -> None:
    """GPUSpec.host_link_gb_s, per direction: H100 SXM's datasheet "PCIe Gen5: 128GB/s" (both directions), A100's
    "PCIe Gen4: 64GB/s", GB200's NVLink-C2C 900 GB/s bidirectional to its Grace CPU, T4's PCIe Gen3 x16 32 GB/s."""
    from calc.sources.catalog import load_gpu

    assert {g: load_gpu(g).host_link_gb_s for g in ("h100", "a100-80g", "gb200", "t4")} == {
        "h100": 64, "a100-80g": 32, "gb200": 450, "t4": 16}


def test_cpu_offloading_costs_the_host_copies_of_what_it_frees(cli) -> None:
    """QA43 A17: --cpu-offload-layers freed memory at no time. The bytes a micro-batch sends to the host are the
    activation memory offloading frees (PP 1, one micro-batch in flight: the activations part drops by exactly them),
    and they cross the link each way at 64 GB/s x 0.8 on an H100 (calc.training.offload), so by hand:
        offload total = m x 2 x freed / 51.2e9, m = 64 / 8 = 8 micro-batches;
    --host-copy-gb-s 25 replaces the rate. The exposed part lies between (1 - overlap) of the total and the total."""
    base = ("train-step", "llama2-7b", "--gpu", "h100", "--dp", "8", "--zero", "1", "--global-batch", "64", "--json")
    plain = cli(*base).json()
    off = cli(*base, "--cpu-offload-layers", "31").json()
    freed = plain["memory_per_gpu"]["activations"] - off["memory_per_gpu"]["activations"]
    assert freed > 10 * GIB
    total = next(t for t in off["terms"] if t["name"] == "offload_s")["time_s"]
    assert total == pytest.approx(8 * 2 * freed / 51.2e9, rel=1e-6)
    assert 0.1 * total < off["offload_s"] <= total
    assert off["step_time_s"] == pytest.approx(plain["step_time_s"] + off["offload_s"], rel=1e-9)
    assert plain["offload_s"] == 0
    slow = cli(*base, "--cpu-offload-layers", "31", "--host-copy-gb-s", "25").json()
    assert next(t for t in slow["terms"] if t["name"] == "offload_s")["time_s"] == pytest.approx(
        8 * 2 * freed / 25e9, rel=1e-6)
    explain = cli(*base[:-1], "--cpu-offload-layers", "31", "--explain").out
    assert "offload_s = m x (copy to host" in explain and "64 GB/s host link x 0.8" in explain


def test_host_copy_rate_is_refused_where_nothing_is_offloaded(cli) -> None:
    """--host-copy-gb-s changes only an offloading plan's time: refused without offloading and in train-plan (which
    searches no offloading layout), one line naming the flag; a GPU spec without a host link refuses the offload."""
    for args in (("train-step", "llama2-7b", "--gpu", "h100", "--dp", "8", "--host-copy-gb-s", "25"),
                 ("train-plan", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--host-copy-gb-s", "25")):
        r = cli(*args)
        assert r.code == 2 and r.err.startswith("llmcalc: error: --host-copy-gb-s: ") and r.err.count("\n") == 1
    from calc.errors import LLMCalcError
    from calc.sources.catalog import load_gpu
    from calc.training.offload import host_copy_rate

    bare = load_gpu("h100").model_copy(update={"host_link_gb_s": None})
    with pytest.raises(LLMCalcError, match="host_link_gb_s"):
        host_copy_rate(bare, None, "--cpu-offload-layers")
    assert host_copy_rate(bare, 20.0, "--cpu-offload-layers")[0] == 20e9


def test_speculative_ttft_is_never_shorter_than_the_step_it_rides_in(cli) -> None:
    """QA43b B7: under load a new request's first token comes out of a whole engine step, which with speculation is
    the verify step and its drafts: TPOT x E, E = (1 - a^(k+1)) / (1 - a) tokens a step. ngram's defaults (acceptance
    0.7, k = 4, calc.serving.speculative): E = (1 - 0.7^5) / 0.3 = 2.7731. serve quoted TTFT 65.8 ms inside a 155 ms
    step (the non-speculative step's time)."""
    best = cli("serve", "llama3-8b", "--gpu", "h100", "--speculative", "ngram", "--json").json()["layouts"][0]
    e = (1 - 0.7**5) / 0.3
    assert best["ttft_ms"] >= best["tpot_ms"] * e * (1 - 1e-9)


def test_fused_parallel_layer_figures_say_when_the_model_cannot_fuse(cli) -> None:
    """QA43 A26: REFERENCE sec. 7 / seed 000: QKV and MLP-in share an input only in a parallel block,
    y = x + Attn(LN(x)) + MLP(LN(x)) (GPT-J); Llama's sequential block feeds its MLP LN(x + Attn(LN(x))). flops --fused
    on Llama showed a saving it can never get without a word; it now says it is hypothetical, GPT-J's does not."""
    seq = cli("flops", "llama2-7b", "--fused", "--seq", "2048", "--json").json()["fused"]
    par = cli("flops", "gpt-j-6b", "--fused", "--seq", "2048", "--json").json()["fused"]
    assert seq["parallel_block"] is False and seq["note"].startswith("hypothetical for llama2-7b")
    assert par["parallel_block"] is True and par["note"] == ""
    assert "hypothetical" in cli("flops", "llama2-7b", "--fused", "--seq", "2048").out


def test_a_zero_0_layout_that_fits_names_its_own_gpu_count(cli) -> None:
    """QA43 A14: under ZeRO 0 every GPU holds every state, so DP saves nothing per GPU and the smallest GPU count
    that fits a layout at TP 2 is TP x PP x CP = 2 when it fits there (as --zero 1 already answered), and none when
    it does not (Llama-2-7B whole on one H100: 117.8 GiB, no count helps)."""
    base = ("memory", "llama2-7b", "--mode", "train", "--gpu", "h100", "--json")
    assert cli(*base, "--tp", "2", "--dp", "1").json()["min_gpus"] == 2
    assert cli(*base, "--tp", "2", "--dp", "1", "--zero", "1").json()["min_gpus"] == 2
    r = cli(*base)
    assert r.code == 2 and "does not fit" in r.err


def test_import_records_the_kv_head_rule_it_used(cli, tmp_path) -> None:
    """QA43 A25: a Llama config.json without num_key_value_heads is MHA in transformers (LlamaConfig: "If it is not
    specified, will default to num_attention_heads"); the import priced it so but did not say so, unlike every other
    field it left to a default. It now writes the count and lists the rule among the defaults used."""
    import json

    config = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
              "num_attention_heads": 32, "num_hidden_layers": 32, "intermediate_size": 11008, "vocab_size": 32000,
              "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "tie_word_embeddings": False}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    r = cli("import", str(path))
    assert r.code == 0 and "num_key_value_heads=32 (num_attention_heads" in r.out and "num_kv_heads: 32" in r.out


def test_serve_on_given_gpus_says_what_the_traffic_needs(cli) -> None:
    """QA43b B1: `serve --num-gpus 8 --rate 10` labelled the 8 GPUs the user typed "GPUs needed", with an 80% band,
    while the same traffic sized without --num-gpus needs 1 GPU. The plan's gpus_needed is now what the traffic
    needs (the same figure as without --num-gpus, for the same best layout), the best layout keeps the 8 it runs on
    (no band: nothing predicted), and the verdict says both."""
    sized = cli("serve", "llama3-8b", "--gpu", "h100", "--rate", "10", "--json").json()
    given = cli("serve", "llama3-8b", "--gpu", "h100", "--rate", "10", "--num-gpus", "8", "--json").json()
    assert given["best"]["name"] == sized["best"]["name"]
    assert given["best"]["gpus_needed"] == 8 and given["best"]["replicas"] == 8
    assert given["gpus_needed"] == given["best"]["traffic_gpus"] == sized["gpus_needed"]
    assert sized["best"]["traffic_gpus"] is None
    assert f"the traffic needs {sized['gpus_needed']} of the 8 GPUs given" in given["verdict"]
    human = cli("serve", "llama3-8b", "--gpu", "h100", "--rate", "10", "--num-gpus", "8").out
    assert "best layout GPUs needed 8" not in human


def test_smallest_gpu_count_is_searched_in_the_layouts_own_steps(cli) -> None:
    """QA44 F13: the GPU-count search tried 1-8 then whole nodes of 8 only, so a TP 2 x PP 5 layout that fits on 10
    GPUs was said to need 40 (the first multiple of both), TP 4 x PP 3 24 where 12 fits. It now also tries
    TP x PP x CP x DP for DP 1-8: by hand, DP 1 of each fits (the command itself says so)."""
    base = ("memory", "llama2-13b", "--mode", "train", "--gpu", "h100", "--json")
    r = cli(*base, "--num-gpus", "10", "--tp", "2", "--pp", "5", "--zero", "0").json()
    assert r["fits"] is True and r["min_gpus"] == 10
    r = cli(*base, "--tp", "4", "--pp", "3", "--zero", "1").json()
    assert r["fits"] is True and r["min_gpus"] == 12


def test_a_fixed_budget_that_misses_the_planning_margin_is_refused_as_sizing_would(cli) -> None:
    """QA44 F7: at 100 requests/s on 8 H100s (P 2,000, O 200) every layout needs more than 8 GPUs at the
    --max-utilization margin that sizing uses (traffic_gpus > 8), yet serve said it fits. It is now refused in one line
    naming --num-gpus, the GPUs the best layout needs stated; a rate the 8 carry still fits."""
    base = ("serve", "llama3.1-8b", "--gpu", "h100", "--num-gpus", "8", "--prompt", "2000", "--output", "200")
    r = cli(*base, "--rate", "100")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --num-gpus: 8 x h100-sxm cannot carry 100 requests/s")
    ok = cli(*base, "--rate", "50", "--json").json()
    assert ok["best"]["traffic_gpus"] <= 8 and "of the 8 GPUs given" in ok["verdict"]


def test_serve_and_latency_pipeline_one_prompts_chunks_alike(cli) -> None:
    """QA44 F6: on TP 1 x PP 2 a 16,385-token prompt (two 8,192 chunks and one of 1) flows through the stages chunk
    behind chunk (vLLM V1 advances a request's computed tokens when it schedules a chunk, so the next is scheduled at
    once: v1/core/sched/scheduler.py _update_after_schedule); latency priced that, serve summed whole traversals
    (557 ms against 416). At batch 1 they now agree on every PP layout."""
    for prompt in (8_193, 16_385):
        lat = cli("latency", "llama3.1-8b", "--gpu", "h100", "--num-gpus", "2", "--pp", "2", "--prompt", str(prompt),
                  "--output", "256", "--json").json()
        layouts = cli("serve", "llama3.1-8b", "--gpu", "h100", "--num-gpus", "2", "--prompt", str(prompt), "--output",
                      "256", "--json").json()["layouts"]
        pp2 = next(x for x in layouts if x["name"] == "TP1 x PP2")
        first = next(f for f in pp2["frontier"] if f["batch"] == 1)
        assert first["ttft_ms"] == pytest.approx(lat["ttft_s"] * 1e3, rel=1e-9), prompt


def test_megatron_offloading_is_refused_off_megatron(cli) -> None:
    """QA44 F4: --cpu-offload-layers (Megatron-Core --cpu-offloading-num-layers) and --offload-modules (its
    fine-grained offloading) were priced, in memory and now in time, under --stack deepspeed / hf / fsdp, which have
    neither. Refused in one line naming the flag, by train-step and memory --mode train alike."""
    for command in (("train-step", "llama2-7b", "--gpu", "h100", "--dp", "8", "--zero", "1"),
                    ("memory", "llama2-7b", "--mode", "train", "--gpu", "h100", "--dp", "8", "--zero", "1")):
        for stack in ("deepspeed", "hf"):
            for flag, value in (("--cpu-offload-layers", "4"), ("--offload-modules", "core_attn")):
                r = cli(*command, flag, value, "--stack", stack)
                assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}: Megatron-Core's activation "
                                                        f"offloading; --stack {stack} does not run it"), (command, stack)
        assert cli(*command, "--cpu-offload-layers", "4", "--json").code == 0


def test_no_band_on_a_gpu_count_nobody_predicted(cli) -> None:
    """QA44 F14: a layout's GPU count is a prediction only when its replicas were sized for --rate / --users; on a
    given --num-gpus (or one replica without traffic) it is the count given, and carried an 80% band (7-13 on 8)."""
    for args in (("--num-gpus", "8"), ("--num-gpus", "8", "--rate", "10"), ()):
        best = cli("serve", "llama3-8b", "--gpu", "h100", *args, "--json").json()["best"]
        assert best["sized"] is False and "gpus_needed" not in (best.get("bands") or {}), args
    sized = cli("serve", "llama3-8b", "--gpu", "h100", "--rate", "10", "--json").json()
    assert sized["best"]["sized"] is True and "gpus_needed" in sized["bands"]
