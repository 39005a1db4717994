"""Which engine releases run which architectures: a release older than the first to implement a model's
architecture would not load it, so no figure is given for it (calc.cli.serving.check_step_budget refuses it, naming
--engine-version).

The first vLLM release of each, from vLLM's release notes: Llama 4's chunked local attention (Llama4ForCausalLM,
v0.8.3, April 2025), gpt-oss's attention sinks and MXFP4 experts (GptOssForCausalLM, v0.10.1, August 2025),
Qwen3-Next's Gated DeltaNet layers (Qwen3NextForCausalLM, v0.10.2, September 2025). Read from the architecture, not
the name: a fine-tune of one is the same architecture."""

from __future__ import annotations

from calc.specs import ModelSpec

FIRST_VLLM_RELEASE: dict[str, tuple[tuple[int, ...], str]] = {
    "chunked": ((0, 8, 3), "Llama 4's chunked local attention"),
    "sinks": ((0, 10, 1), "gpt-oss's attention sinks and MXFP4 experts"),
    "gated_deltanet": ((0, 10, 2), "Qwen3-Next's Gated DeltaNet layers"),
}


def architecture_features(m: ModelSpec) -> list[str]:
    """The FIRST_VLLM_RELEASE keys the model's architecture has."""
    features = []
    if m.layer_types is not None and "chunked" in m.layer_types:
        features.append("chunked")
    if m.attention_sinks:
        features.append("sinks")
    if m.mixer is not None and m.mixer.kind == "gated_deltanet":
        features.append("gated_deltanet")
    return features


def vllm_release_problem(m: ModelSpec, version: tuple[int, ...]) -> str | None:
    """Why vLLM ``version`` would not load the model (a release before its architecture's first), else None.

    >>> from calc.sources.catalog import load_model
    >>> vllm_release_problem(load_model("gpt-oss-20b"), (0, 10, 0)).split(":")[0]
    'vLLM 0.10.0 has no gpt-oss-20b'
    >>> vllm_release_problem(load_model("gpt-oss-20b"), (0, 11)) is None
    True
    """
    for feature in architecture_features(m):
        first, what = FIRST_VLLM_RELEASE[feature]
        if version < first:
            shown = ".".join(map(str, version))
            return (f"vLLM {shown} has no {m.name}: {what} came in vLLM {'.'.join(map(str, first))}; give "
                    f"--engine-version {'.'.join(map(str, first))} or later")
    return None
