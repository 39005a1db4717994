"""Packed documents (ModelCost.doc_tokens, `--doc-tokens`): SFT / PEFT on short examples packed into each training
sequence (NeMo / Megatron-Bridge packed sequences with THD cu_seqlens, varlen flash attention) attend inside each
document, so a sequence of s tokens holding s/d documents of d tokens computes (s/d) x d(d+1)/2 causal pairs, not
s(s+1)/2, at the kernel's rate for query length d. The weight GEMMs are unchanged."""

from __future__ import annotations

import pytest

from calc.hardware.attention import attention_rate
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import ModelCost, attention_share
from calc.training.layout import Layout
from calc.training.step import step_terms


def test_the_share_of_causal_pairs_by_hand() -> None:
    # llama3-8b, every layer full attention: 16 documents of 256 in 4,096 -> 16 x 32,896 / 8,390,656
    assert attention_share(load_model("llama3-8b"), 4096, 256) == pytest.approx(526_336 / 8_390_656, rel=1e-12)
    assert attention_share(load_model("llama3-8b"), 4096, None) == 1.0
    assert attention_share(load_model("llama3-8b"), 4096, 8192) == 1.0  # a document longer than the sequence: one
    # gpt-oss-20b alternates sliding (window 128) and full layers; 20 documents of 200 in 4,000 tokens:
    #   full layer 20 x 200*201/2 = 402,000 pairs; sliding 20 x (128*129/2 + 72*128) = 20 x 17,472 = 349,440
    #   of 4,000*4,001/2 = 8,002,000 -> mean of the two shares
    expected = (402_000 + 349_440) / 2 / 8_002_000
    assert attention_share(load_model("gpt-oss-20b"), 4000, 200) == pytest.approx(expected, rel=1e-12)


def _layer(doc: int | None):
    cost = ModelCost(load_model("llama3-8b"), load_gpu("h100-sxm"), load_system("dgx-h100"), 4096, doc_tokens=doc)
    return cost, cost.layer(0, 1, 1, 1, 1, False)


def test_attention_time_scales_by_the_pairs_and_the_rate_at_the_document_length() -> None:
    """attention forward(d) = attention forward(s) x share(d) x R(s) / R(d), R the kernel's forward rate at that query
    length (calc.hardware.attention); backward the same with the backward rates; GEMMs and elementwise unchanged."""
    cost, whole = _layer(None)
    _c, packed = _layer(256)
    share = 526_336 / 8_390_656
    gpu, kernel, head = cost.gpu, cost.attention_kernel, cost.attention_head_dim
    r = {(d, n): attention_rate(gpu, kernel, d, head, n, True, "bf16") for d in ("fwd", "bwd") for n in (4096, 256)}
    assert packed.attn_fwd == pytest.approx(whole.attn_fwd * share * r["fwd", 4096] / r["fwd", 256], rel=1e-9)
    assert packed.gemm_fwd == whole.gemm_fwd and packed.ew_fwd == whole.ew_fwd
    bwd_attn = lambda c: c.bwd - 2 * c.gemm_fwd - 2 * c.ew_fwd - c.cast_bwd  # noqa: E731
    assert bwd_attn(packed) == pytest.approx(bwd_attn(whole) * share * r["bwd", 4096] / r["bwd", 256], rel=1e-6)
    assert packed.attn_fwd < 0.2 * whole.attn_fwd


def test_the_step_is_shorter_and_the_mfu_convention_is_kept() -> None:
    layout = Layout(tp=1, pp=1, dp=8, zero=3)
    whole = step_terms(_layer(None)[0], layout, 32, 4)
    packed = step_terms(_layer(256)[0], layout, 32, 4)
    assert packed.step_time_s < whole.step_time_s
    # model FLOPs count each document's attention in the full convention: forward 4 x s x span x (heads x head dim)
    # per layer; llama3-8b: 32 layers x 32 heads x 128, s = 4,096, span 4,096 (one document) or 256 (16 of 256):
    # a training step 3 x forward, so the difference is 3 x 4 x 4,096 x (4,096 - 256) x 4,096 x 32
    saved = 3 * 4 * 4096 * (4096 - 256) * 4096 * 32
    assert _layer(None)[0].model_flops_per_seq - _layer(256)[0].model_flops_per_seq == pytest.approx(saved, rel=1e-12)


def test_mfu_stays_below_one_for_short_documents_in_long_sequences(cli) -> None:
    """QA finding: 128-token documents in a 131,072-token sequence gave MFU 2.14 when the model FLOPs counted the
    whole sequence's attention."""
    d = cli("train-step", "llama3-8b", "--gpu", "h100", "--cp", "8", "--seq", "131072", "--global-batch", "8", "--zero",
            "1", "--recompute", "full", "--doc-tokens", "128", "--json").json()
    assert 0 < d["mfu"] < 1 and 0 < d["hfu"] < 1


def test_cli_option_prices_explains_and_refuses(cli) -> None:
    args = ["train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--global-batch", "32",
            "--seq", "4K"]
    whole, packed = cli(*args, "--json").json(), cli(*args, "--doc-tokens", "256", "--json").json()
    assert packed["step_time_s"] < whole["step_time_s"]
    assert any("packed documents of 256 tokens" in a for a in packed["assumptions"])
    assert not any("packed documents" in a for a in whole["assumptions"])
    longer = cli(*args, "--doc-tokens", "8K", "--json")  # not below --seq: it would change nothing, so it is refused
    assert longer.code == 2 and longer.err.startswith("llmcalc: error: --doc-tokens")
    assert "documents of d = 256 tokens packed" in cli(*args, "--doc-tokens", "256", "--explain").out
    bad = cli(*args, "--doc-tokens", "0")
    assert bad.code == 2 and "--doc-tokens" in bad.err and "Traceback" not in bad.err
    plan = cli("train-plan", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "32", "--seq", "4K",
               "--doc-tokens", "256", "--json")
    assert plan.code == 0, plan.err


def test_corpus_packed_rows_read_their_document_length() -> None:
    """A DGX Cloud LoRA row (SQuAD packed to 4,096 tokens) priced as one document per sequence takes longer."""
    import corpus_predict as cp
    import corpus_schema as cs

    row = {r.id: r for r, _g, _s in cs.load_corpus()}["dgxc-25.04-lora-llama3-8b-bf16-h100-8"]
    assert row.assumed["doc_tokens"].value == 200
    whole = row.model_copy(update={"assumed": {k: v for k, v in row.assumed.items() if k != "doc_tokens"}})
    assert cp.predict(whole) > cp.predict(row)  # step seconds


def test_explain_words_the_lora_backward_as_input_gradients_only(cli) -> None:
    """Under LoRA the frozen base's GEMMs back-propagate their input gradient only (calc.training.cost: no weight
    gradients), and the explain line says 1 x GEMMs, where full training says 2 x."""
    args = ["train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--global-batch", "32", "--seq", "4K"]
    lora = cli(*args, "--method", "lora", "--explain").out
    full = cli(*args, "--zero", "3", "--explain").out
    assert "backward = 1 x GEMMs (input gradients only: a frozen base)" in lora
    assert "backward = 2 x GEMMs" in full and "backward = 2 x GEMMs" not in lora
