"""EXAONE 3.0 / 3.5 (LG AI Research, trust_remote_code modeling_exaone): the Llama block under other
field names (num_layers, layer_norm_epsilon, activation_function; c_fc_0/c_fc_1/c_proj gated MLP)."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, llama_like


def exaone(c: HFConfig) -> Mapping:
    # modeling_exaone: q/k/v/out_proj without bias, ln_1/ln_2 RMSNorm, ln_f, lm_head tied per
    # tie_word_embeddings (True in configuration_exaone).
    aliased = HFConfig({**c.data, "num_hidden_layers": c.get("num_layers", "num_hidden_layers"),
                        "hidden_act": c.get("activation_function", default="silu")}, c.where, c.field)
    spec = llama_like(aliased, tied_default=True)
    c.defaulted.update(aliased.defaulted)
    return spec


MAPPERS = {"exaone": exaone}
