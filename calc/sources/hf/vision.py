"""Vision towers of multimodal wrappers whose language model we size: counted exactly so the
wrapper's total matches what transformers builds; they are never active for a text token."""

from __future__ import annotations

from typing import Any

from calc.sources.hf.config import HFConfig

# configuration_siglip.SiglipVisionConfig defaults.
_SIGLIP = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_channels": 3,
           "image_size": 224, "patch_size": 16}


def _vision_config(data: dict[str, Any], where: str, field: str) -> dict[str, Any]:
    """The wrapper's ``vision_config`` section: a mapping (absent = the family defaults)."""
    vision = data.get("vision_config") or {}
    if not isinstance(vision, dict):
        raise HFConfig(data, where, field).fail("vision_config", f"must be a mapping, got {type(vision).__name__}")
    return vision


def _patch(c: HFConfig) -> int:
    """patch_size, a divisor of the image size: >= 1."""
    patch = c.int("patch_size")
    if patch < 1:
        raise c.fail("patch_size", f"must be >= 1, got {patch}")
    return patch


def siglip_params(vision: dict[str, Any], where: str, field: str) -> int:
    """modeling_siglip SiglipVisionTransformer without head: patch Conv2d C*p*p*H + H, positions
    (image/p)^2 * H, per layer 2 LayerNorms (4H) + q/k/v/out with bias 4(H^2 + H) + fc1/fc2 2*H*I + I + H,
    post_layernorm 2H."""
    c = HFConfig(vision, where, field).use_defaults(_SIGLIP)
    h, i, layers = c.int("hidden_size"), c.int("intermediate_size"), c.layers()
    patch, image, channels = _patch(c), c.int("image_size"), c.int("num_channels")
    if c.get("vision_use_head", default=False):
        raise c.fail("vision_use_head", "true (a pooling head) is not modelled")
    per_layer = 4 * h + 4 * (h * h + h) + 2 * h * i + i + h
    return channels * patch * patch * h + h + (image // patch) ** 2 * h + layers * per_layer + 2 * h


def gemma3_vision_params(data: dict[str, Any], text_hidden: int, where: str, field: str) -> int:
    """SigLIP tower + Gemma3MultiModalProjector: mm_input_projection_weight H_v*H_t and mm_soft_emb_norm H_v."""
    vision = _vision_config(data, where, field)
    h_v = HFConfig(vision, where, field).int("hidden_size", default=_SIGLIP["hidden_size"])
    return siglip_params(vision, where, field) + h_v * text_hidden + h_v


def llama4_vision_params(data: dict[str, Any], text_hidden: int, where: str, field: str) -> int:
    """modeling_llama4 Llama4VisionModel + Llama4MultiModalProjector:
    unfold patch Linear(C*p*p, H) without bias, class embedding H, positions ((image/p)^2 + 1)*H,
    layernorm_pre/post 2*2H, per layer q/k/v/o with bias 4(H^2 + H) + fc1/fc2 with bias 2*H*I + I + H
    + 2 LayerNorms 4H; pixel-shuffle adapter fc1 I*P_in and fc2 P_out*P_out without bias; projector
    vision_output_dim * H_text without bias."""
    c = HFConfig(_vision_config(data, where, field), where, field)
    h, i, layers = c.int("hidden_size"), c.int("intermediate_size"), c.layers()
    patch, image, channels = _patch(c), c.int("image_size"), c.int("num_channels", default=3)
    per_layer = 4 * (h * h + h) + 2 * h * i + i + h + 4 * h
    tower = channels * patch * patch * h + h + ((image // patch) ** 2 + 1) * h + 4 * h + layers * per_layer
    adapter = i * c.int("projector_input_dim") + c.int("projector_output_dim") ** 2
    if c.get("multi_modal_projector_bias", default=False):
        raise c.fail("multi_modal_projector_bias", "true is not modelled")
    return tower + adapter + c.int("vision_output_dim") * text_hidden


def mistral3_vision_params(data: dict[str, Any], text_hidden: int, where: str, field: str) -> int:
    """modeling_pixtral PixtralVisionModel + Mistral3MultiModalProjector: patch Conv2d C*p*p*H without
    bias, ln_pre RMSNorm H, per layer q/k/v/o 4*H^2 + gated feed-forward 3*H*I + 2 RMSNorms 2H (no biases);
    projector norm H + patch merger (H*s^2)*H + linear_1 H*H_text + linear_2 H_text^2 (+ biases when
    multimodal_projector_bias)."""
    c = HFConfig(_vision_config(data, where, field), where, field)
    h, i, layers = c.int("hidden_size"), c.int("intermediate_size"), c.layers()
    patch, channels = _patch(c), c.int("num_channels", default=3)
    tower = channels * patch * patch * h + h + layers * (4 * h * h + 3 * h * i + 2 * h)
    merge = HFConfig(data, where, field).int("spatial_merge_size", default=2)
    bias = HFConfig(data, where, field).bool("multimodal_projector_bias", default=False)
    projector = h + h * merge * merge * h + h * text_hidden + text_hidden * text_hidden + (2 * text_hidden if bias else 0)
    return tower + projector
