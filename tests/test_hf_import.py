"""config.json written here for every supported model_type round-trips to the catalog count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calc.errors import LLMCalcError
from calc.model.params import count_params
from calc.sources.catalog import load_model

LLAMA2_7B = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
             "intermediate_size": 11008, "vocab_size": 32000, "max_position_embeddings": 4096,
             "tie_word_embeddings": False}
MISTRAL = {**LLAMA2_7B, "num_key_value_heads": 8, "intermediate_size": 14336}

# (config.json fields, catalog name it must match, or an exact total worked out by hand)
CONFIGS = {
    "llama": ({"model_type": "llama", **LLAMA2_7B}, "llama2-7b"),
    "mistral": ({"model_type": "mistral", **MISTRAL}, "mistral-7b"),
    "mixtral": ({"model_type": "mixtral", **MISTRAL, "num_local_experts": 8, "num_experts_per_tok": 2}, "mixtral-8x7b"),
    "qwen2": ({"model_type": "qwen2", "hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28,
               "num_key_value_heads": 4, "intermediate_size": 18944, "vocab_size": 152064,
               "tie_word_embeddings": False}, "qwen2-7b"),
    "gemma": ({"model_type": "gemma", "hidden_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
               "num_key_value_heads": 16, "head_dim": 256, "intermediate_size": 24576, "vocab_size": 256000},
              "gemma-7b"),
    "gpt2": ({"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257,
              "n_positions": 1024}, "gpt2"),
    "gptj": ({"model_type": "gptj", "n_embd": 4096, "n_layer": 28, "n_head": 16, "vocab_size": 50400,
              "n_positions": 2048}, "gpt-j-6b"),
    "gpt_neox": ({"model_type": "gpt_neox", "hidden_size": 6144, "num_hidden_layers": 44, "num_attention_heads": 64,
                  "intermediate_size": 24576, "vocab_size": 50432, "use_parallel_residual": True}, "gpt-neox-20b"),
    "falcon-old": ({"model_type": "falcon", "hidden_size": 4544, "num_hidden_layers": 32, "num_attention_heads": 71,
                    "multi_query": True, "parallel_attn": True, "vocab_size": 65024, "bias": False}, "falcon-7b"),
    "falcon-new": ({"model_type": "falcon", "hidden_size": 8192, "num_hidden_layers": 60, "num_attention_heads": 128,
                    "num_kv_heads": 8, "new_decoder_architecture": True, "vocab_size": 65024, "bias": False},
                   "falcon-40b"),
    "bloom": ({"model_type": "bloom", "hidden_size": 4096, "n_layer": 30, "n_head": 32, "vocab_size": 250880},
              "bloom-7b1"),
    "opt": ({"model_type": "opt", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
             "ffn_dim": 16384, "vocab_size": 50272, "max_position_embeddings": 2048, "word_embed_proj_dim": 4096},
            "opt-6.7b"),
    "phi": ({"model_type": "phi", "hidden_size": 2560, "num_hidden_layers": 32, "num_attention_heads": 32,
             "intermediate_size": 10240, "vocab_size": 51200}, "phi-2"),
    "deepseek_v3": ({"model_type": "deepseek_v3", "hidden_size": 7168, "num_hidden_layers": 61,
                     "num_attention_heads": 128, "intermediate_size": 18432, "moe_intermediate_size": 2048,
                     "vocab_size": 129280, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                     "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 256, "n_shared_experts": 1,
                     "num_experts_per_tok": 8, "first_k_dense_replace": 3, "moe_layer_freq": 1,
                     "topk_method": "noaux_tc"}, "deepseek-v3"),
    # Phi-3-mini (hand): 32 x [4*3072^2 + 3*3072*8192 + 2*3072] = 32 x 113,252,352 = 3,624,075,264;
    # + 2*32064*3072 = 197,001,216 + 3072 -> 3,821,079,552 (published 3.82B).
    "phi3": ({"model_type": "phi3", "hidden_size": 3072, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 32, "intermediate_size": 8192, "vocab_size": 32064}, 3_821_079_552),
    # Gemma-2-9B (hand): attention 3584*4096*2 + 3584*2048*2 = 44,040,192; MLP 3*3584*14336
    # = 154,140,672; 4 norms 14,336 -> 198,195,200 x 42 = 8,324,198,400; + 256000*3584
    # = 917,504,000 (tied) + 3584 -> 9,241,705,984 (published 9.24B).
    "gemma2": ({"model_type": "gemma2", "hidden_size": 3584, "num_hidden_layers": 42, "num_attention_heads": 16,
                "num_key_value_heads": 8, "head_dim": 256, "intermediate_size": 14336, "vocab_size": 256000},
               9_241_705_984),
    # Qwen1.5-MoE-A2.7B (hand): attention 4*2048^2 + 3*2048 bias = 16,783,360; 60 experts x
    # 3*2048*1408 = 519,045,120; router 2048*60 = 122,880; shared 3*2048*5632 = 34,603,008; shared
    # gate 2048; norms 4096 -> 570,560,512 x 24 = 13,693,452,288; + 2*151936*2048 = 622,329,856
    # + 2048 -> 14,315,784,192 (published 14.3B).
    "qwen2_moe": ({"model_type": "qwen2_moe", "hidden_size": 2048, "num_hidden_layers": 24, "num_attention_heads": 16,
                   "num_key_value_heads": 16, "intermediate_size": 5632, "moe_intermediate_size": 1408,
                   "shared_expert_intermediate_size": 5632, "num_experts": 60, "num_experts_per_tok": 4,
                   "vocab_size": 151936, "tie_word_embeddings": False}, 14_315_784_192),
    # DeepSeek-V2-Lite (hand; no q latent): q_proj 2048*16*192 = 6,291,456; kv_a 2048*576 = 1,179,648;
    # kv_a norm 512; kv_b 512*16*256 = 2,097,152; o 16*128*2048 = 4,194,304 -> 13,763,072 attention.
    # Dense layer 0: 3*2048*10944 = 67,239,936. MoE: 64 x 3*2048*1408 = 553,648,128 + shared 2 x
    # 3*2048*1408 = 17,301,504 + router 131,072 = 571,080,704 (26 layers). Norms 4096/layer.
    # = 27*(13,763,072+4,096) + 67,239,936 + 26*571,080,704 + 2*102400*2048 + 2048 = 15,706,484,224.
    "deepseek_v2": ({"model_type": "deepseek_v2", "hidden_size": 2048, "num_hidden_layers": 27,
                     "num_attention_heads": 16, "intermediate_size": 10944, "moe_intermediate_size": 1408,
                     "vocab_size": 102400, "q_lora_rank": None, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                     "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 64, "n_shared_experts": 2,
                     "num_experts_per_tok": 6, "first_k_dense_replace": 1, "moe_layer_freq": 1}, 15_706_484_224),
    # Kimi K2 (moonshotai/Kimi-K2-Instruct config.json shapes; DeepseekV3 code). Hand: attention as DeepSeek-V3
    # with 64 heads: q_a 7168*1536 + 1536 + q_b 1536*64*192 + kv_a 7168*576 + 512 + kv_b 512*64*256
    # + o 64*128*7168 = 101,124,096. Dense layer 0: 3*7168*18432 = 396,361,728. MoE (60 layers): 384 x
    # 3*7168*2048 + shared 3*7168*2048 + router 7168*384 + bias 384 = 16,958,226,816. Norms 2*7168.
    # 61*(101,124,096 + 14,336) + 396,361,728 + 60*16,958,226,816 + 2*163840*7168 + 7168
    # = 1,026,408,232,448 (published "1T total, 32B activated").
    "kimi_k2": ({"model_type": "kimi_k2", "hidden_size": 7168, "num_hidden_layers": 61, "num_attention_heads": 64,
                 "num_key_value_heads": 64, "intermediate_size": 18432, "moe_intermediate_size": 2048,
                 "vocab_size": 163840, "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128,
                 "qk_rope_head_dim": 64, "v_head_dim": 128, "n_routed_experts": 384, "n_shared_experts": 1,
                 "num_experts_per_tok": 8, "first_k_dense_replace": 1, "moe_layer_freq": 1, "topk_method": "noaux_tc",
                 "num_nextn_predict_layers": 0, "tie_word_embeddings": False}, 1_026_408_232_448),
    # EXAONE 4.0 (hand, small; shapes as EXAONE-4.0-32B's config scaled down): 4 layers x [q 64*64 + k,v 2*64*32
    # + o 64*64 + q/k norms 2*16 + 3*64*128 + 2 post-norms 2*64] + final 64 + 2*100*64 = 4 x 37,024 + 12,864.
    "exaone4": ({"model_type": "exaone4", "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128, "vocab_size": 100,
                 "sliding_window": 8, "sliding_window_pattern": "LLLG", "tie_word_embeddings": False}, 160_960),
    # OLMoE-1B-7B-0924 (allenai/OLMoE-1B-7B-0924 config shapes): 16 x [4*2048^2 + q/k norms 2*2048 + 64 x
    # 3*2048*1024 + router 2048*64 + 2*2048] + 2048 + 2*50304*2048 = 6,919,161,856 (published 6.9B / 1.3B active).
    "olmoe": ({"model_type": "olmoe", "hidden_size": 2048, "num_hidden_layers": 16, "num_attention_heads": 16,
               "num_key_value_heads": 16, "intermediate_size": 1024, "num_experts": 64, "num_experts_per_tok": 8,
               "vocab_size": 50304, "max_position_embeddings": 4096, "tie_word_embeddings": False}, 6_919_161_856),
    # SmolLM3-3B (HuggingFaceTB/SmolLM3-3B config shapes): 36 x [2048^2*2 + 2*2048*512 + 3*2048*11008
    # + 2*2048] + 2048 + 128256*2048 (tied) = 3,075,098,624 (published 3B).
    "smollm3": ({"model_type": "smollm3", "hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16,
                 "num_key_value_heads": 4, "intermediate_size": 11008, "vocab_size": 128256,
                 "max_position_embeddings": 65536, "tie_word_embeddings": True}, 3_075_098_624),
    # GraniteMoeShared (hand, small): 2 layers of attention 2*64*64 + 2*64*32 = 12,288; 4 experts x
    # 3*64*16 = 12,288; router 64*4 = 256; shared 3*64*32 = 6,144; norms 128 -> 31,104 x 2
    # + final 64 + 100*64 (tied) = 68,672.
    "granitemoeshared": ({"model_type": "granitemoeshared", "hidden_size": 64, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 16,
                          "shared_intermediate_size": 32, "num_local_experts": 4, "num_experts_per_tok": 2,
                          "vocab_size": 100, "tie_word_embeddings": True}, 68_672),
    # state-spaces/mamba-130m-hf: 24 x [in_proj 768*3072 + conv1d 1536*4 + 1536 + x_proj 1536*(48 + 2*16)
    # + dt_proj 48*1536 + 1536 + A_log 1536*16 + D 1536 + out_proj 1536*768 + RMSNorm 768] + 768
    # + 50280*768 (tied) = 129,135,360 (published 129M); dt_rank 'auto' = ceil(768/16) = 48.
    "mamba": ({"model_type": "mamba", "hidden_size": 768, "num_hidden_layers": 24, "state_size": 16, "expand": 2,
               "conv_kernel": 4, "time_step_rank": "auto", "vocab_size": 50280, "use_bias": False,
               "use_conv_bias": True, "tie_word_embeddings": True}, 129_135_360),
    # FalconMamba: the Mamba-1 block (its B/C/dt RMS normalisations have no weights), head untied: + 50280*768.
    "falcon_mamba": ({"model_type": "falcon_mamba", "hidden_size": 768, "num_hidden_layers": 24, "state_size": 16,
                      "expand": 2, "conv_kernel": 4, "vocab_size": 50280, "tie_word_embeddings": False},
                     129_135_360 + 50280 * 768),
    # MiniMax, transformers' format, layer_types by default: layer 0 softmax, layer 1 lightning (H 64, 4 heads of 16,
    # 2 KV heads, 4 experts of 128): attention 64*64 + 2*64*32 + 64*64 = 12,288; lightning qkv 64*192 + gate 64*64
    # + norm 64 + out 64*64 = 20,544; MoE 4 x 3*64*128 + router 64*4 = 98,560; 2 norms 128 per layer;
    # + 2 x 100*64 + 64 = 243,072.
    "minimax": ({"model_type": "minimax", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128, "num_local_experts": 4,
                 "num_experts_per_tok": 2, "vocab_size": 100}, 243_072),
    # The checkpoints' remote-code format (attn_type_list, 1 = softmax): the same two layers the other way round.
    "minimax_text_01": ({"model_type": "minimax_text_01", "hidden_size": 64, "num_hidden_layers": 2,
                         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128,
                         "num_local_experts": 4, "num_experts_per_tok": 2, "vocab_size": 100, "attn_type_list": [0, 1]},
                        243_072),
}


@pytest.mark.parametrize("key", sorted(CONFIGS))
def test_config_json_round_trip(key: str, tmp_path: Path) -> None:
    config, expected = CONFIGS[key]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    imported = count_params(load_model(str(path)))
    if isinstance(expected, str):
        catalog = count_params(load_model(expected))
        assert imported.total_params == catalog.total_params
        assert imported.active_params == catalog.active_params
    else:
        assert imported.total_params == expected


def test_every_supported_model_type_is_covered() -> None:
    from calc.sources.hf import MAPPERS

    fixtures = Path(__file__).parent / "fixtures" / "hf"
    covered = {c["model_type"] for c, _ in CONFIGS.values()}
    for path in fixtures.glob("*.json"):
        data = json.loads(path.read_text())
        covered |= {data.get("model_type"), data.get("text_config", {}).get("model_type")}
    assert {k for k in MAPPERS if k.islower()} <= covered


def test_unsupported_model_type_lists_supported(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(LLMCalcError, match="unsupported model_type 't5'.*llama"):
        load_model(str(path))


def test_missing_and_wrong_typed_fields_are_named(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", **{k: v for k, v in LLAMA2_7B.items() if k != "hidden_size"}}))
    with pytest.raises(LLMCalcError, match="'hidden_size' is missing"):
        load_model(str(path))
    path.write_text(json.dumps({"model_type": "llama", **LLAMA2_7B, "num_hidden_layers": "32"}))
    with pytest.raises(LLMCalcError, match="'num_hidden_layers' must be an integer"):
        load_model(str(path))


# Issue 20: a field the config leaves out takes the family's transformers default, not a generic rule.
QWEN3_06B = {"model_type": "qwen3", "hidden_size": 1024, "num_hidden_layers": 28, "num_attention_heads": 16,
             "num_key_value_heads": 8, "intermediate_size": 3072, "vocab_size": 151936,
             "max_position_embeddings": 40960, "tie_word_embeddings": True}


def test_qwen3_without_head_dim_takes_transformers_128(tmp_path: Path, cli) -> None:
    # Qwen3Config.head_dim = 128 (not 1024 / 16 = 64). Qwen3-0.6B by hand, d = 128: per layer q 1024*2048
    # + k, v 2 * 1024*1024 + o 2048*1024 + q/k norms 2*128 + MLP 3*1024*3072 + 2 norms 2*1024 = 15,730,944;
    # 28 layers + embedding 151936*1024 (tied) + final norm 1024 = 596,049,920 (the published Qwen3-0.6B).
    path = tmp_path / "config.json"
    path.write_text(json.dumps(QWEN3_06B))
    assert count_params(load_model(str(path))).total_params == 596_049_920
    # `import` writes no YAML resting on a family constant for a shape: the config must say head_dim.
    result = cli("import", str(path), "--write", str(tmp_path / "q.yaml"))
    assert result.code == 2 and "head_dim (default 128)" in result.err, result.err
    assert not (tmp_path / "q.yaml").exists()


def test_mistral_without_kv_heads_takes_transformers_8(tmp_path: Path) -> None:
    # MistralConfig.num_key_value_heads = 8 when absent (LlamaConfig's rule, = num_attention_heads, is not
    # Mistral's): Mistral-7B's published 7,241,732,096 = 32 x [4096*4096*2 + 2*4096*1024 + 3*4096*14336
    # + 2*4096] + 4096 + 2*32000*4096.
    path = tmp_path / "config.json"
    path.write_text(json.dumps({k: v for k, v in CONFIGS["mistral"][0].items() if k != "num_key_value_heads"}))
    assert count_params(load_model(str(path))).total_params == 7_241_732_096


def test_falcon_import_and_query_agree(tmp_path: Path, cli) -> None:
    # tiiuae/falcon-7b's published config.json gives no ffn_hidden_size (FalconConfig: 4 * hidden_size) and no
    # max_position_embeddings; reading it and importing it must give the same model, 6,921,720,704 parameters.
    config = {"alibi": False, "bias": False, "hidden_size": 4544, "model_type": "falcon", "multi_query": True,
              "new_decoder_architecture": False, "num_attention_heads": 71, "num_hidden_layers": 32,
              "parallel_attn": True, "torch_dtype": "bfloat16", "vocab_size": 65024}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    target = tmp_path / "falcon.yaml"
    result = cli("import", str(path), "--write", str(target))
    assert result.code == 0, result.err
    assert count_params(load_model(str(target))).total_params == 6_921_720_704
    assert count_params(load_model(str(path))).total_params == 6_921_720_704
    assert "ffn_hidden_size=18176 (4 * hidden_size)" in load_model(str(target)).description
