"""EXAONE 3.0 / 3.5 (LG AI Research, trust_remote_code modeling_exaone): the Llama block under other
field names (num_layers, layer_norm_epsilon, activation_function; c_fc_0/c_fc_1/c_proj gated MLP).
EXAONE 4.0 (transformers modeling_exaone4): post-norms and q/k norms, hybrid local/global attention."""

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


def exaone4(c: HFConfig) -> Mapping:
    """modeling_exaone4: post_attention_layernorm + post_feedforward_layernorm only (2 per layer), q_norm/k_norm
    RMSNorm(head_dim); layer_types, else sliding_window_pattern as a string ('LLLG': L = local, G = global)
    or an integer period (the last layer of each period global)."""
    pattern = c.get("sliding_window_pattern", default=None)
    if isinstance(pattern, str) and pattern and set(pattern) <= {"L", "G"}:
        rule = (lambda i: "sliding" if pattern[i % len(pattern)] == "L" else "full")  # noqa: E731
    elif isinstance(pattern, int) and not isinstance(pattern, bool) and pattern >= 1:
        rule = (lambda i: "sliding" if (i + 1) % pattern else "full")  # noqa: E731
    elif pattern is None:
        rule = None
    else:
        raise c.fail("sliding_window_pattern", f"must be a string of L/G or a positive integer, got {pattern!r}"[:200])
    if c.get("sliding_window", default=None) is None:
        rule = None
    return llama_like(c, norms_per_layer=2, qk_norm="head", layer_rule=rule)


MAPPERS = {"exaone": exaone, "exaone4": exaone4}
