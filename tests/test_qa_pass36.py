"""Findings of the pass-36 hostile QA sweep: each refusal names the flag whose change fixes it."""

from __future__ import annotations


def test_a_raised_tokens_per_step_is_named_where_the_default_fits(cli) -> None:
    """A 4M-token profile run of Llama 3 8B needs hundreds of GiB of activations on one H100: the KV cache gets
    nothing, and at vLLM's default tokens per step it fits, so the flag to change is --max-num-batched-tokens, not
    the GPU count (latency and concurrency alike; under EP too)."""
    for args in (("latency", "llama3-8b", "--gpu", "h100-sxm", "--batch", "4"),
                 ("concurrency", "llama3-8b", "--gpu", "h100-sxm"),
                 ("latency", "qwen3-30b-a3b", "--gpu", "h100-sxm", "--num-gpus", "4", "--ep", "4", "--batch", "8"),
                 ("concurrency", "qwen3-30b-a3b", "--gpu", "h100-sxm", "--num-gpus", "4", "--ep", "4")):
        r = cli(*args, "--max-num-batched-tokens", "4M")
        assert r.code == 2 and r.err.startswith("llmcalc: error: --max-num-batched-tokens"), (args, r.err)
    # where the weights alone exceed the GPUs, a smaller step does not help: the GPU count is still the flag
    r = cli("concurrency", "llama3-405b", "--gpu", "h100-sxm", "--max-num-batched-tokens", "4M")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --num-gpus"), r.err


def test_mfu_names_seq_when_only_the_attention_flops_are_impossible(cli) -> None:
    """50,000 tokens/s on 8 H100 of Llama 3 8B is 30% MFU by 6N (50,000 / 8 x 6 x 8.03e9 / 989.4e12 = 0.304); at a
    1M-token sequence the full S x S attention count adds 3 passes x 4 x 4,096 x 1M x 32 layers = 1.6e15 FLOPs a token,
    6,250 tokens/s/GPU x 1.6e15 = 1e19 FLOP/s, ten times the 989.4e12 peak: the sequence length, not the throughput,
    is what cannot be."""
    r = cli("mfu", "llama3-8b", "--gpu", "h100-sxm", "--num-gpus", "8", "--tokens-per-s", "50000", "--seq", "1M")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --seq") and "30.4%" in r.err
    r = cli("mfu", "llama3-8b", "--gpu", "h100-sxm", "--num-gpus", "8", "--tokens-per-s", "5M", "--seq", "8K")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --tokens-per-s")


def test_flops_output_warning_counts_the_prompt_it_adds(cli) -> None:
    r = cli("flops", "llama3-8b", "--output", "10000")
    assert r.code == 0
    assert "4,096 + 10,000 generated = 14,096 tokens exceed" in r.err


def test_train_time_refuses_a_dtype_the_gpu_lacks_before_sizing(cli) -> None:
    """T4 has fp16 and int8 tensor peaks, no bf16 (datasheet): the default bf16 is refused first, not answered with a
    GPU count that is then refused for its dtype."""
    r = cli("train-time", "llama3-8b", "--gpu", "t4", "--num-gpus", "8", "--tokens", "1T")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --dtype") and "fp16" in r.err


def test_show_a_node_name_shows_the_node_not_the_gpu_aliased_to_it(cli) -> None:
    """gb200-nvl72 is a node type (systems) and an alias of the gb200 GPU: `show` gives the node for its own name."""
    d = cli("show", "gb200-nvl72", "--json").json()
    assert d["name"] == "gb200-nvl72" and d["gpus_per_node"] == 72
    assert cli("show", "gb200", "--json").json()["name"] == "gb200"


def test_a_bitsandbytes_quant_type_is_named_as_the_config_writes_it(cli, tmp_path) -> None:
    import json

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
                                "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100,
                                "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                                        "bnb_4bit_quant_type": "int4"}}))
    r = cli("params", str(path))
    assert r.code == 2 and "quantization_config.bnb_4bit_quant_type" in r.err


def test_concurrency_result_carries_the_flag_that_makes_it_fit() -> None:
    """The engine, not the CLI, names the fix (Python callers read it too): a 4M-token profile run leaves Llama 3 8B on
    one H100 no KV at all, and vLLM's default tokens per step leave room, so --max-num-batched-tokens; an 8B model's
    KV at its whole 131,072-token context is 131,072 x 131,072 B (32 layers x 8 KV heads x 128 x 2 x 2 B a token) = 16
    GiB, more than an L4's 24 GB leaves beside 15 GiB of weights, so --max-model-len; a deployment that fits has none."""
    from calc.serving.capacity import concurrency
    from calc.sources.catalog import load_gpu, load_model
    from calc.specs.serving import EngineSettings

    m, g = load_model("llama3-8b"), load_gpu("h100-sxm")
    raised = concurrency(m, g, max_tokens=8192, settings=EngineSettings(max_num_batched_tokens=4_000_000))
    assert raised.max_concurrency == 0 and raised.kv_cache_tokens == 0
    assert raised.fix_flag == "--max-num-batched-tokens"
    long = concurrency(load_model("llama3.1-8b"), load_gpu("l4"), max_tokens=131_072)
    assert long.max_concurrency == 0 and long.kv_cache_tokens > 0 and long.fix_flag == "--max-model-len"
    assert concurrency(m, g, max_tokens=8192).fix_flag is None


def test_training_and_finetune_memory_bound_the_same_inputs_alike() -> None:
    """One rule for the allocator's fragmentation (0 to 1: reserved at most twice allocated) and a dropout
    probability ([0, 1): p = 1 drops every element) in both engines; before, training took fragmentation 5 and
    fine-tuning took lora_dropout 1."""
    import pytest

    from calc.errors import LLMCalcError
    from calc.memory.finetune import finetune_memory
    from calc.memory.training import training_memory
    from calc.sources.catalog import load_gpu, load_model

    m, g = load_model("llama2-7b"), load_gpu("h100-sxm")
    for call, field in ((lambda: training_memory(m, gpu=g, fragmentation=5.0), "--fragmentation"),
                        (lambda: finetune_memory(m, gpu=g, fragmentation=5.0), "--fragmentation"),
                        (lambda: training_memory(m, gpu=g, dropout=1.0), "--dropout"),
                        (lambda: finetune_memory(m, gpu=g, lora_dropout=1.0), "--lora-dropout"),
                        (lambda: training_memory(m, gpu=g, fragmentation=float("nan")), "--fragmentation")):
        with pytest.raises(LLMCalcError) as e:
            call()
        assert e.value.field == field
    training_memory(m, gpu=g, fragmentation=1.0, dropout=0.1)
    finetune_memory(m, gpu=g, fragmentation=1.0, lora_dropout=0.1)


def test_train_step_and_train_plan_default_the_global_batch_as_train_time(cli) -> None:
    """One default for --global-batch wherever a step is timed: 4,194,304 tokens / --seq 4,096 = 1,024 sequences,
    already a multiple of 8 GPUs (train-time and report took it; train-step and train-plan refused the option's
    absence)."""
    args = ("llama3-8b", "--gpu", "h100-sxm", "--num-gpus", "8")
    step = cli("train-step", *args, "--zero", "1", "--json").json()
    assert step["global_batch"] == 1024
    assert step == cli("train-step", *args, "--zero", "1", "--global-batch", "1024", "--json").json()
    plan = cli("train-plan", *args, "--top", "1", "--json").json()
    assert plan["global_batch"] == 1024
    timed = cli("train-time", *args, "--tokens", "1T", "--json").json()
    assert timed["global_batch"] == 1024 and timed["plan"] == plan["plans"][0]["layout"]
