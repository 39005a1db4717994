"""A --max-model-len past the model's context window prices an engine run past it (RoPE scaling such as YaRN, the
engine's long-context switch), with one warning line; without it a longer prompt is refused naming --max-model-len.
Qwen3-30B-A3B's config says max_position_embeddings 40,960; its card serves 131,072 tokens with YaRN factor 4."""

from __future__ import annotations

# 2 (K and V) x 48 layers x 4 KV heads x 128 head dim x 2 B (bf16), Qwen/Qwen3-30B-A3B config.json, by hand
QWEN3_30B_KV_BYTES_PER_TOKEN = 2 * 48 * 4 * 128 * 2


def test_a_prompt_past_the_window_is_refused_naming_max_model_len(cli) -> None:
    r = cli("latency", "qwen3-30b-a3b", "--gpu", "h100", "--prompt", "100000", "--output", "1000")
    assert r.code == 2
    assert r.err.startswith("llmcalc: error: --prompt: 100,000 tokens exceed qwen3-30b-a3b's context window of 40,960")
    assert "give --max-model-len" in r.err and len(r.err.strip().splitlines()) == 1


def test_compare_and_report_take_it_as_serve_does(cli) -> None:
    refused = cli("compare", "qwen3-30b-a3b", "h200", "--prompt", "100000", "--output", "1000")
    assert refused.code == 2 and "context window of 40,960" in refused.err and "give --max-model-len" in refused.err
    for args in (("compare", "qwen3-30b-a3b", "h200"), ("report", "qwen3-30b-a3b", "--gpu", "h200")):
        r = cli(*args, "--prompt", "100000", "--output", "1000", "--max-model-len", "110000", "--json")
        assert r.code == 0, r.err
        assert "--max-model-len: 110,000 tokens exceed qwen3-30b-a3b's context window of 40,960" in r.err
    train = cli("report", "qwen3-30b-a3b", "--gpu", "h200", "--mode", "train", "--max-model-len", "110000")
    assert train.code == 2 and train.err.startswith("llmcalc: error: --max-model-len:")


def test_latency_past_the_window_with_max_model_len_warns_and_answers(cli) -> None:
    r = cli("latency", "qwen3-30b-a3b", "--gpu", "h200", "--prompt", "100000", "--output", "1000",
            "--max-model-len", "110000", "--json")
    assert r.code == 0, r.err
    assert "llmcalc: warning: --max-model-len: 110,000 tokens exceed qwen3-30b-a3b's context window of 40,960" in r.err
    data = r.json()
    assert (data["prompt"], data["output"], data["max_model_len"]) == (100000, 1000, 110000)


def test_an_output_past_the_extended_window_is_still_refused(cli) -> None:
    """The extended limit is the engine's --max-model-len, and the refusal names it so, not the model's window:
    100,000 + 20,000 = 120,000 > 110,000, room 10,000."""
    r = cli("latency", "qwen3-30b-a3b", "--gpu", "h200", "--prompt", "100000", "--output", "20000",
            "--max-model-len", "110000")
    assert r.code == 2 and len([x for x in r.err.splitlines() if x.startswith("llmcalc: error")]) == 1
    assert ("llmcalc: error: --output: --prompt 100,000 + --output 20,000 = 120,000 tokens exceed the engine's "
            "--max-model-len of 110,000; give --output <= 10,000") in r.err


def test_a_default_output_is_capped_at_the_extended_limit_naming_it(cli) -> None:
    """--output left at its default (256) after a 109,900-token prompt: 110,000 - 109,900 = 100 tokens of room."""
    r = cli("latency", "qwen3-30b-a3b", "--gpu", "h200", "--prompt", "109900", "--max-model-len", "110000", "--json")
    assert r.code == 0, r.err
    assert ("llmcalc: warning: --output: capped at 100 tokens (the default is 256): 109,900 prompt + 100 fills the "
            "engine's --max-model-len of 110,000") in r.err
    assert r.json()["output"] == 100


def test_a_prompt_past_the_extended_limit_names_max_model_len(cli) -> None:
    r = cli("latency", "qwen3-30b-a3b", "--gpu", "h200", "--prompt", "120000", "--output", "10",
            "--max-model-len", "110000")
    assert r.code == 2
    assert ("--prompt: 120,000 tokens exceed the engine's --max-model-len of 110,000 tokens; give a larger "
            "--max-model-len") in r.err


def test_concurrency_at_an_extended_length_holds_its_kv_by_hand(cli) -> None:
    r = cli("concurrency", "qwen3-30b-a3b", "--gpu", "h200", "--max-model-len", "131072", "--json")
    assert r.code == 0, r.err
    assert "context window of 40,960" in r.err
    data = r.json()
    assert data["max_tokens"] == 131072
    assert data["kv_cache_bytes_per_request"] == 131072 * QWEN3_30B_KV_BYTES_PER_TOKEN == 12_884_901_888
    assert data["max_concurrency"] == data["kv_cache_tokens"] // 131072


def test_the_emitted_line_starts_the_engine_past_the_window(cli) -> None:
    base = ("serve", "qwen3-30b-a3b", "--gpu", "h100", "--prompt", "100000", "--output", "2000",
            "--max-model-len", "110000", "--tpot-ms", "50", "--json")
    vllm = cli(*base, "--emit", "vllm")
    assert vllm.code == 0, vllm.err
    line = vllm.json()["launch"]
    assert line.startswith("VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 vllm serve Qwen/Qwen3-30B-A3B ")
    assert " --max-model-len 110000 " in line
    sglang = cli(*base, "--emit", "sglang")
    assert sglang.code == 0, sglang.err
    line = sglang.json()["launch"]
    assert line.startswith("SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1 python -m sglang.launch_server ")
    assert " --context-length 110000 " in line
    trtllm = cli(*base, "--emit", "trtllm", "--engine", "trtllm")
    assert trtllm.code == 2 and trtllm.err.startswith("llmcalc: error: --emit:")


def test_within_the_window_the_line_has_no_switch(cli) -> None:
    r = cli("serve", "qwen3-30b-a3b", "--gpu", "h100", "--prompt", "4000", "--output", "1000", "--max-model-len", "8192",
            "--tpot-ms", "50", "--emit", "vllm", "--json")
    assert r.code == 0, r.err
    assert r.json()["launch"].startswith("vllm serve Qwen/Qwen3-30B-A3B ")
    assert "context window" not in r.err


def test_an_extension_past_any_rope_scaling_is_refused(cli) -> None:
    # 1,024 x 40,960 = 41,943,040 tokens: the largest RoPE scaling a spec may state (calc.specs.bounds)
    r = cli("concurrency", "qwen3-30b-a3b", "--gpu", "h200", "--max-model-len", "50M")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --max-model-len:") and "<= 41,943,040" in r.err
