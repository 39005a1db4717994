"""One name for the attention kernel: `memory` takes train-step's --attention (flash | unfused); its old --flash /
--no-flash switch is a hidden alias of it; a named fused kernel, which keeps what flash keeps, is refused there."""

from __future__ import annotations

_TRAIN = ("memory", "llama2-7b", "--mode", "train", "--seq", "4096", "--json")


def test_unfused_keeps_the_scores_and_the_old_switch_says_the_same(cli) -> None:
    """Llama-2-7B, 4,096 tokens, micro-batch 1, no recomputation: unfused attention keeps each layer's softmax
    output, 32 heads x 4,096 x 4,096 x 2 B = 1,073,741,824 B a layer more than flash: 34,359,738,368 B over 32 layers,
    beside which the score-free tensors are the same."""
    flash = cli(*_TRAIN).json()["activation_bytes"]
    unfused = cli(*_TRAIN, "--attention", "unfused").json()["activation_bytes"]
    assert unfused - flash >= 32 * 32 * 4096 * 4096 * 2
    assert cli(*_TRAIN, "--no-flash").json()["activation_bytes"] == unfused
    assert cli(*_TRAIN, "--flash").json()["activation_bytes"] == flash


def test_a_named_kernel_and_both_spellings_are_refused(cli) -> None:
    r = cli(*_TRAIN, "--attention", "fa3")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --attention") and "flash or unfused" in r.err
    r = cli(*_TRAIN, "--attention", "unfused", "--no-flash")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --no-flash") and "--attention" in r.err
    r = cli("memory", "llama2-7b", "--attention", "unfused")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --attention") and "--mode train" in r.err
