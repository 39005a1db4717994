"""A framework can run as a named stack's defaults and still read its own kernel efficiency (calc.training.stack
OWN_EFFICIENCY): NeMo AutoModel shards as FSDP2 (fsdp's memory engine) but runs Transformer Engine kernels."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from calc.training.stack import efficiency_key, memory_defaults, stack_efficiency, stack_key


def test_automodel_runs_fsdp_defaults_at_the_reference_efficiency():
    assert stack_key("nemo-automodel") == "fsdp" and memory_defaults("nemo-automodel") == memory_defaults("fsdp")
    assert efficiency_key("nemo-automodel") == "other" and efficiency_key("NeMo-AutoModel") == "other"
    assert stack_efficiency("nemo-automodel") == 1.0  # one source group: unfitted, the reference's 1
    assert efficiency_key("torchtitan") == efficiency_key("fsdp") == "fsdp"
    assert stack_efficiency("torchtitan") == stack_efficiency("fsdp")


def test_the_corpus_keys_an_automodel_row_as_the_engine_reads_it():
    import corpus_predict as cp
    from corpus_schema import load_corpus

    rows = [row for row, _source, _split in load_corpus() if row.stack.name == "nemo-automodel"]
    assert rows and all(cp.parameter_keys(row)["stack_efficiency"] == "other" for row in rows)
    titan = next(row for row, _source, _split in load_corpus() if row.stack.name == "torchtitan")
    assert cp.parameter_keys(titan)["stack_efficiency"] == "fsdp"
