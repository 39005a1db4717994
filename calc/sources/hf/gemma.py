"""Gemma, Gemma 2 (alternating local/global), Gemma 3 (q/k norms, 5 local : 1 global)."""

from __future__ import annotations

from calc.sources.hf.config import HFConfig, Mapping, llama_like

# configuration_gemma / configuration_gemma2 defaults for fields a config may leave out.
GEMMA = {"num_key_value_heads": 16, "max_position_embeddings": 8192}
GEMMA2 = {"num_key_value_heads": 4, "max_position_embeddings": 8192}


def gemma(c: HFConfig) -> Mapping:
    c.use_defaults(GEMMA)
    return llama_like(c, tied_default=True, head_dim=c.int("head_dim", default=256))


def gemma2(c: HFConfig) -> Mapping:
    # modeling_gemma2: pre/post attention and feed-forward norms (4 RMSNorms per layer);
    # is_sliding = not bool(layer_idx % 2): even layers slide over sliding_window (default 4096).
    c.use_defaults(GEMMA2)
    return llama_like(c, tied_default=True, head_dim=c.int("head_dim", default=256), norms_per_layer=4,
                      layer_rule=lambda i: "sliding" if i % 2 == 0 else "full", window_default=4096)


# configuration_gemma3.Gemma3TextConfig defaults for the fields the published gemma-3-4b/12b configs omit.
GEMMA3_TEXT_DEFAULTS = {"num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 262_208,
                        "max_position_embeddings": 131_072, "hidden_activation": "gelu_pytorch_tanh"}


def gemma3_text(c: HFConfig) -> Mapping:
    # modeling_gemma3: Gemma 2's 4 norms plus q_norm/k_norm RMSNorm(head_dim); layer i slides unless
    # (i + 1) % sliding_window_pattern == 0 (default 6: five local layers per global one).
    c.use_defaults(GEMMA3_TEXT_DEFAULTS)
    pattern = c.divisor("sliding_window_pattern", default=6)
    return llama_like(c, tied_default=True, head_dim=c.int("head_dim", default=256), norms_per_layer=4,
                      qk_norm="head", layer_rule=lambda i: "sliding" if (i + 1) % pattern else "full", window_default=4096)


MAPPERS = {"gemma": gemma, "gemma2": gemma2, "gemma3_text": gemma3_text}
