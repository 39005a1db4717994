"""QA regressions (params / flops / memory / mfu / training): each test names the defect it pins."""

from __future__ import annotations

import re


def test_flops_decode_past_the_context_window_warns(cli) -> None:
    # llama3-8b's window is 8,192 tokens: a prompt of 8,000 + 500 generated = 8,500 > 8,192 must warn,
    # 8,000 + 192 = 8,192 exactly fits and must not (was: silent either way).
    r = cli("flops", "llama3-8b", "--seq", "8000", "--output", "500")
    assert r.code == 0, r.err
    assert "--output: the prompt's 8,000 + 500 generated = 8,500 tokens exceed" in r.err
    r = cli("flops", "llama3-8b", "--seq", "8000", "--output", "500", "--json")
    assert r.code == 0 and "--output: the prompt's 8,000 + 500 generated = 8,500 tokens exceed" in r.err
    assert r.json()["decode"]["warnings"]
    r = cli("flops", "llama3-8b", "--seq", "8000", "--output", "192")
    assert r.code == 0 and "exceed" not in r.err


def test_flops_json_prints_the_sequence_warning_on_stderr(cli) -> None:
    # 9,000 > 8,192: the text output warned, --json did not (the warning only sat inside the JSON)
    r = cli("flops", "llama3-8b", "--seq", "9000", "--json")
    assert r.code == 0 and "--seq: 9,000 tokens exceed" in r.err


def test_negative_price_says_negative_not_not_a_number(cli) -> None:
    # was: "--price: '-1' is not a number"
    for value in ("-1", "h100=-2.5"):
        r = cli("train-time", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T", "--mfu", "0.4", "--price", value)
        assert r.code == 2 and r.err.startswith("llmcalc: error: --price: must be >= 0"), r.err


def test_mla_kv_assumption_does_not_claim_kv_heads_split(cli) -> None:
    # DeepSeek-V3 caches one MLA latent per token, the same on every TP rank: per GPU at TP 8 it is the
    # whole 61*(512+64)*2 = 70,272 B/token x 1,000 tokens = 70,272,000 B; the text said "KV heads per GPU = 16".
    data = cli("memory", "deepseek-v3", "--mode", "infer", "--num-gpus", "8", "--seq", "1000", "--json").json()
    assert data["per_gpu"]["kv_cache"] == 70_272_000
    assert not any("KV heads per GPU" in a for a in data["assumptions"])
    assert any("replicated on every TP rank" in a for a in data["assumptions"])


def test_train_plan_lists_no_zero_duplicates_without_data_parallelism(cli) -> None:
    # 11 GPUs of llama3-8b (32 layers): 11 is prime, so the only layouts are TP1 PP11 DP1 (Megatron's uneven
    # [3, 3 x 9, 2]) and TP11 (11 does not divide the 32 heads) -> DP is 1 and ZeRO has nothing to shard; "ZeRO0" and
    # "ZeRO1" rows were identical. (Was 13 GPUs: PP 13 needs 11 x 3 = 33 > 32 layers in the middle, which Megatron
    # cannot place, so 13 GPUs now have no layout.)
    data = cli("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "11", "--global-batch", "64", "--seq", "4096",
               "--json").json()
    layouts = [p["layout"] for p in data["plans"]]
    assert layouts and all("DP1" in x and "ZeRO0" in x for x in layouts)
    assert len(layouts) == len(set(layouts))


def test_memory_infer_num_gpus_alone_names_num_gpus(cli) -> None:
    # --num-gpus 5 alone is TP 5 (not a divisor of llama3-8b's 32 heads) or TP 1 x PP 5 (not a depth the serving
    # search tries); the error named --tp, a flag the user never gave. 3 GPUs are TP 1 x PP 3, as serve places them.
    r = cli("memory", "llama3-8b", "--mode", "infer", "--gpu", "h100", "--num-gpus", "5")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --num-gpus: 5 GPUs alone are laid out as TP 5,"), r.err
    assert "PP 5/8" not in r.err  # no fraction printed as a layout
    placed = cli("memory", "llama3-8b", "--mode", "infer", "--gpu", "h100", "--num-gpus", "3", "--json").json()
    assert (placed["tp"], placed["pp"]) == (1, 3)
    r = cli("memory", "llama3-8b", "--mode", "infer", "--gpu", "h100", "--tp", "3")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --tp:"), r.err


def test_plan_divisors_are_exact_and_fast_for_a_million_gpus() -> None:
    # train-plan with --num-gpus 1000000 took 0.9 s (trial division by every k <= n). 1e6 = 2^6 * 5^6 has
    # 7 * 7 = 49 divisors; 36 = 2^2 3^2 has 9 (the square root 6 once); a prime has 2.
    from calc.training.plan import _divisors

    d = _divisors(1_000_000)
    assert len(d) == 49 and d[0] == 1 and d[-1] == 1_000_000 and d == sorted(d) and 1000 in d
    assert _divisors(36) == [1, 2, 3, 4, 6, 9, 12, 18, 36]
    assert _divisors(13) == [1, 13] and _divisors(1) == [1]


def test_systems_table_prints_every_name_whole(cli) -> None:
    # the name column was cut to "workstation-rtx4…", a name --system cannot take
    names = [s["name"] for s in cli("systems", "--json").json()]
    r = cli("systems")
    assert r.code == 0 and "…" not in r.out
    assert "workstation-rtx4090" in names
    assert all(name in r.out for name in names)


def test_train_time_of_a_tiny_run_prints_its_figures_not_zero(cli) -> None:
    # 4,000 tokens of llama3-8b (N = 8.03e9) at 40% of 8 x 989.4 TFLOPS: 6N D = 6 x 8.03e9 x 4000 = 1.927e14 FLOPs
    # (attention at S = 2048 adds ~0.15%) -> 1.93e14 / 3.166e15 = 0.061 s -> 0.061 x 8 / 3600 = 1.35e-4 GPU-hours.
    # It printed "0.0 days ... (0 GPU-hours)".
    r = cli("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--seq", "2048", "--tokens", "4K", "--mfu", "0.4",
            "--price", "2.5")
    assert r.code == 0, r.err
    out = " ".join(r.out.split())  # the verdict wraps at the console width
    assert "(0 GPU-hours" not in out and "0.0 days" not in out
    assert "0.00014 GPU-hours" in out  # 1.35e-4 to two significant digits
    assert "cost 0.00034 at 2.5/GPU-h" in out  # 1.35e-4 x 2.5 = 3.4e-4
    # large figures keep their thousands separators. By hand: 1T tokens of llama3-70b, (6N - 6 x embedding
    # 1.05e9 + attention 3 x 4 x 2048 x 80 x 8192) x 1e12 = 4.331e23 FLOPs / (64 x 989.4e12 x 0.4) = 1.710e7 s
    # -> x 64 / 3600 = ~304,000 GPU-hours
    r = cli("train-time", "llama3-70b", "--gpu", "h100", "--num-gpus", "64", "--seq", "2048", "--tokens", "1T", "--mfu", "0.4")
    match = re.search(r"\((\d{3},\d{3}) GPU-hours\)", " ".join(r.out.split()))
    assert match and abs(int(match.group(1).replace(",", "")) - 304_000) < 200


def test_figure_formatting() -> None:
    from calc.units import figure

    assert figure(0.0413) == "0.041" and figure(1234.5) == "1,234" and figure(0) == "0"
    assert figure(197.92, 1) == "197.9" and figure(0.04, 1) == "0.04" and figure(0.5, 2) == "0.50"


def test_small_mfu_is_printed_not_rounded_to_zero(cli) -> None:
    # 10 tokens/s of llama3-8b on one H100: 10 x 6 x 8,030,261,248 / 989.4e12 = 0.0487% -> "0.049%", was "0.0%"
    r = cli("mfu", "llama3-8b", "--gpu", "h100", "--tokens-per-s", "10")
    assert r.code == 0, r.err
    assert "MFU 0.049% by 6N" in " ".join(r.out.split())
    # train-step's verdict used the same one-decimal format ("MFU 0.0% (HFU 0.0%)" for a 1-token sequence)
    r = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "8", "--seq", "1", "--zero", "1")
    assert r.code == 0 and "MFU 0.0%" not in r.out


def test_train_plan_searches_a_pinned_micro_batch_outside_the_default_list(cli) -> None:
    # --micro-batch 16 with global batch 64 on 8 GPUs: DP 1, 2 or 4 x 16 divides 64, so layouts exist; the search
    # only tried b in 1, 2, 4, 8 and said "no layout ... has DP x micro-batch dividing 64".
    r = cli("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "64", "--seq", "4096",
            "--micro-batch", "16", "--json")
    assert r.code == 0, r.err
    plans = r.json()["plans"]
    assert plans and all(p["micro_batch"] == 16 and p["dp"] in (1, 2, 4) for p in plans)


def test_train_plan_pinned_pp_that_cannot_divide_the_gpus_says_so(cli) -> None:
    # 16 GPUs cannot hold PP 3 (16 / 3 is not whole); the error blamed --global-batch ("no layout ... has DP x micro-batch
    # dividing 64 with --pp 3")
    r = cli("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "16", "--global-batch", "64", "--seq", "4096", "--pp", "3")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --pp: TP 1 x PP 3 x CP 1 = 3 does not divide the 16 GPUs"), r.err


def test_mfu_sanity_messages_are_percentages(cli) -> None:
    # 10 tokens/s of llama3-8b on one H100 = 0.0487% of peak; the warning printed the fraction "0.00049" next to "below 1%"
    r = cli("mfu", "llama3-8b", "--gpu", "h100", "--seq", "2048", "--tokens-per-s", "10")
    assert "implies MFU 0.049%, below 1%" in r.err, r.err
    # 1e30 tokens/s: 1e30 x 6 x 8.03e9 / 989.4e12 = 4.9e25 of peak = 4.9e27 %; was a 28-digit "48...0.0%"
    r = cli("mfu", "llama3-8b", "--gpu", "h100", "--seq", "2048", "--tokens-per-s", "1e30")
    assert r.code == 2 and "implies MFU 4.9 x 10^27%, above 100%" in r.err, r.err
