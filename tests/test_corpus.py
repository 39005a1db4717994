"""The measurement corpus (benchmarks/data/corpus/): every row loads with the schema, ids are unique, every
row quotes its source, the held-out split (whole source groups, fixed hash) holds at least 30% of the rows,
and every row is predicted by the engine or reported with a reason."""

from __future__ import annotations

import corpus_predict as cp
import corpus_schema as cs
import pytest

ROWS = cs.load_corpus()


def test_rows_load_with_unique_ids_and_quotes() -> None:
    ids = [row.id for row, _g, _s in ROWS]
    assert len(ids) == len(set(ids))
    assert all(row.source.quote.strip() for row, _g, _s in ROWS)


def test_held_out_share_is_at_least_30_percent_of_rows() -> None:
    held = sum(split == "held_out" for _r, _g, split in ROWS)
    assert held / len(ROWS) >= 0.30


def test_split_is_by_whole_source_group() -> None:
    splits: dict[str, set[str]] = {}
    for _row, group, split in ROWS:
        splits.setdefault(group, set()).add(split)
    assert all(len(s) == 1 for s in splits.values())


def test_duplicate_id_is_refused(tmp_path) -> None:  # noqa: ANN001
    text = (cs.CORPUS_DIR / "vllm-issue-10517-rtx3090.yaml").read_text()
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text(text.replace("source_group: vllm-issue-10517-rtx3090", "source_group: other"))
    with pytest.raises(ValueError, match="duplicate corpus ids"):
        cs.load_groups(tmp_path)


@pytest.mark.parametrize(("row", "group", "split"), ROWS, ids=[r.id for r, _g, _s in ROWS])
def test_every_row_is_predicted_or_says_why(row, group, split) -> None:  # noqa: ANN001
    value, why = cp.predict_or_reason(row)
    assert (value is not None and value > 0) or why


def test_megatron_hfu_counts_the_recomputation_forward() -> None:
    # Narayanan et al. 2021 eq. (3): 96 B s l h^2 (1 + s/6h + V/16lh); by hand for B=1, s=2048, l=1, h=2048,
    # V=0: 96 * 2048 * 2048^2 * (1 + 1/6) = 9.62e11; the model-FLOPs form 72/96 of that with V = 0.
    hfu = cp.megatron_flops(1, 2048, 1, 2048, 0, recompute_counted=True)
    assert hfu == pytest.approx(96 * 2048**3 * (7 / 6))
    assert cp.megatron_flops(1, 2048, 1, 2048, 0, recompute_counted=False) == pytest.approx(hfu * 0.75)


def test_new_sources_follow_the_hash_rule_and_frozen_ones_keep_their_split() -> None:
    # sha256("x")[:8] = 2d711642 -> 0.178 < 0.40: held out; sha256("a")[:8] = ca978112 -> 0.791: fit.
    assert cs.split_of_source("x", {}) == "held_out"
    assert cs.split_of_source("a", {}) == "fit"
    # a frozen source keeps its split whatever its hash says
    assert cs.split_of_source("x", {"x": "fit"}) == "fit"
    frozen = cs.frozen_split()
    assert all(split == frozen[source] for _row, source, split in ROWS if source in frozen)


def test_a_closed_loop_ttft_is_not_priced_as_a_static_batch() -> None:
    """A --max-concurrency N run (N > 1, more requests than N) is priced as a static batch of N for its throughput and
    TPOT; its TTFT is one request's prefill amid the others' decode steps, so it says why it is not predicted. At
    --max-concurrency 1 the run is one request at a time, the static batch of 1, and is predicted."""
    rows = {row.id: row for row, _, _ in ROWS}
    predict_or_reason = cp.predict_or_reason
    value, why = predict_or_reason(rows["vllmv1-gpustack-perflab-qwen3-8b-h100-latency-tp1-c4-sharegpt-ttft-mean"])
    assert value is None and "closed-loop run at --max-concurrency 4 (100 requests)" in why
    value, why = predict_or_reason(rows["vllmv1-gpustack-perflab-qwen3-8b-h100-latency-tp1-c1-sharegpt-ttft-mean"])
    assert value is not None and why == ""
    value, _ = predict_or_reason(rows["vllmv1-gpustack-perflab-qwen3-8b-h100-latency-tp1-c4-sharegpt-tpot-mean"])
    assert value is not None


def _sharegpt_max_load(row) -> bool:  # noqa: ANN001
    """A ShareGPT run of N requests sent at once (num_requests, no --max-concurrency batch, no Poisson rate)."""
    k = cp.knobs(row)
    text = f"{row.notes} {row.measured.metric} {row.source.quote}".lower()
    return (row.kind == "serving_throughput" and "sharegpt" in text and "num_requests" in k and "batch" not in k
            and "rate" not in k)


def test_every_sharegpt_max_load_row_states_its_output_lengths() -> None:
    """ShareGPT outputs vary, and an offline run lasts until its longest output ends (corpus_predict.drain_excess_s):
    a ShareGPT max-load row is priced with output_lengths exponential and the benchmark sampler's output_cap (prompt +
    output <= 2048 in vLLM's and SGLang's samplers, so the cap is at most 2048 - the mean prompt). The four offline rows
    of sglang's vllm060 README had gone without it since they were added, priced as if every output had the mean
    length."""
    rows = [row for row, _g, _s in ROWS if _sharegpt_max_load(row)]
    assert len(rows) >= 20  # GPUStack's pages, sglang's vllm060 README, Lambda's vLLM report, ...
    for row in rows:
        k = cp.knobs(row)
        assert k.get("output_lengths") == "exponential", row.id
        assert 0 < k["output_cap"] <= 2048 - k["prompt"] + 1, row.id
