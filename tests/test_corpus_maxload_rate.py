"""Pass 31: a max-load throughput row of the corpus is priced as `serve` prices the same replica: output tokens/s
with each request's own prefill included, B x O / (TTFT + (O - 1) x TPOT) (calc.serving.plan.slot_tokens_per_s),
not B / TPOT, which at batch 1 leaves the whole prefill out.

The row: GPUStack's Qwen3-32B on one A100 SXM 80GB, vLLM 0.11.0 defaults, 100 random 32,000-token prompts at once,
4.32 output tokens/s measured. Qwen3-32B's weights (65.5 GB bf16) leave the KV cache room for one 32K request, so
the engine runs them one at a time."""
from __future__ import annotations

import pytest

ROW = "vllmv1-gpustack-perflab-qwen3-32b-a100-tp1-random-32k-input-output-tput"


@pytest.fixture(scope="module")
def row():
    """The corpus row, read once for the module (reading the corpus takes seconds)."""
    import corpus_schema as cs

    return cs.corpus_by_id()[ROW][0]


def test_the_corpus_prices_the_row_as_serve_prices_its_layout(cli, row) -> None:
    """The corpus prediction against `serve`'s own TTFT and TPOT for the one layout the row ran (TP1 x PP1, batch 1,
    vLLM 0.11's A100 defaults max_num_seqs 256, max_num_batched_tokens 2,048), worked out here:
    1 x O / (TTFT + (O - 1) x TPOT) at the row's mean output O = 76.99 (the CLI takes whole tokens: 77, a 0.01-token
    difference in O, well inside 1%)."""
    import corpus_predict as cp

    assert (row.config["prompt"], row.config["num_requests"], row.assumed["output"].value) == (32000, 100, 76.99)
    predicted, why = cp.predict_or_reason(row)
    assert predicted is not None, why
    r = cli("serve", "qwen3-32b", "--gpu", "a100-80g", "--num-gpus", "1", "--prompt", "32000", "--output", "77",
            "--engine", "vllm", "--engine-version", "0.11.0", "--max-num-seqs", "256", "--max-num-batched-tokens", "2048",
            "--json")
    assert r.code == 0, r.err
    layout = next(x for x in r.json()["layouts"] if (x["tp"], x["pp"]) == (1, 1))
    assert layout["batch"] == 1
    o = 76.99
    by_hand = 1 * o / ((layout["ttft_ms"] - layout["queue_ms"]) / 1e3 + (o - 1) * layout["tpot_ms"] / 1e3)
    assert predicted == pytest.approx(by_hand, rel=0.01)
    # B / TPOT (decode_tokens_per_s) would be 1 / TPOT: over five times the steady state here
    assert layout["decode_tokens_per_s"] > 5 * predicted


def test_batch_one_throughput_is_bounded_by_its_prefill(row) -> None:
    """A physical floor, independent of the engine's figures: one request at a time, each 32,000-token prompt needs
    at least 2 x 32.8e9 x 32,000 = 2.1e15 FLOPs of weight GEMMs, 6.7 s at the A100's 312 TFLOP/s dense bf16 peak; with
    77 output tokens a request, no schedule beats 77 / 6.7 = 11.5 tokens/s. B / TPOT ignored the prompt (22.4)."""
    import corpus_predict as cp

    predicted, why = cp.predict_or_reason(row)
    assert predicted is not None, why
    floor_s = 2 * 32.8e9 * 32000 / 312e12
    assert predicted < 76.99 / floor_s
