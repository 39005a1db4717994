"""Findings mended in pass 42, each checked against an independent path (an engine's source, a hand count)."""

from __future__ import annotations


def test_every_serving_command_refuses_what_vllm_runs_in_fp32(cli) -> None:
    """QA41 F18: vLLM drops float16 from a Gemma 2 / 3 model's dtypes (vllm/config/model.py
    _FLOAT16_NOT_SUPPORTED_MODELS, _is_valid_dtype), so on a GPU without bf16 (T4, V100: CUDA below compute capability
    8.0 supports float16 and float32) its --dtype auto runs the bf16 checkpoint in float32: 4-byte weights (9.24 B
    parameters x 4 = 37 GB, not 18.5) and KV, on CUDA cores. latency and serve refused it (no bf16 peak) while
    concurrency counted the KV at 2 bytes a value; now every serving command refuses it with one reason, naming --gpu,
    `memory --mode infer` drops the engine verdict with a warning, and compare reports it in that GPU's row. A model
    vLLM runs in fp16 (Llama 3.2 1B) is unchanged, and --dtype fp16 on Gemma 2 is refused by concurrency as latency
    refuses it (it was accepted)."""
    for command in (("concurrency", "--max-model-len", "4096"), ("latency",), ("serve", "--users", "4"), ("report",)):
        r = cli(command[0], "gemma2-9b", "--gpu", "t4", *command[1:])
        assert r.code == 2 and r.err.startswith("llmcalc: error: --gpu: t4 has no bf16") and "fp32" in r.err, command
        assert r.err.count("\n") == 1 and "Traceback" not in r.err
    assert cli("concurrency", "gemma2-9b", "--gpu", "t4", "--max-model-len", "4096", "--engine", "sglang").err \
        .find("fp32") < 0  # another engine's rule is not vLLM's
    fp16 = cli("concurrency", "gemma2-9b", "--gpu", "h100", "--dtype", "fp16", "--max-model-len", "4096")
    assert fp16.code == 2 and "refuses to run gemma2-9b in fp16" in fp16.err
    assert cli("concurrency", "llama3.2-1b", "--gpu", "t4", "--max-model-len", "4096").code == 0
    memory = cli("memory", "gemma2-9b", "--gpu", "t4", "--num-gpus", "2", "--seq", "2048", "--json")
    assert memory.code == 0 and memory.json().get("engine_fit") is None and "no serving engine verdict" in memory.err
    assert cli("memory", "gemma2-9b", "--gpu", "l4", "--num-gpus", "2", "--seq", "2048", "--json").json()["engine_fit"]
    rows = {r["gpu"]: r for r in cli("compare", "gemma2-9b", "t4", "h100", "--json").json()}
    assert rows["t4"]["layout"] is None and "fp32" in rows["t4"]["verdict"]
    assert rows["h100-sxm"]["tokens_per_s"] > 0
    for gpus in (("t4",), ("t4", "v100-32g")):  # compare names its positional GPU field, not a --gpu it has not
        assert cli("compare", "gemma2-9b", *gpus).err.startswith("llmcalc: error: GPU: ")


def test_a_refused_tp_names_only_degrees_the_engine_loads(cli) -> None:
    """QA41b F4: DeepSeek-V3 ships 128 x 128 block-fp8 weights; vLLM loads a TP slice only when it holds whole scale
    blocks. Its dense MLP is 18,432 wide (144 blocks) and its experts 2,048 (16 blocks), so TP must divide
    gcd(144, 16) = 16: 1, 2, 4, 8, 16 (each also divides the 128 heads). A --tp 3 (not a divisor of the heads) was
    answered "try 1, 2, 4, 8, 16, 32, 64, 128", three of which the next command then refused; bf16 weights (no scale
    blocks) keep the heads' list, as does an engine whose loader is not checked (TensorRT-LLM)."""
    for command in (("latency",), ("concurrency", "--max-model-len", "4096")):
        r = cli(command[0], "deepseek-v3", "--gpu", "h200", "--tp", "3", *command[1:])
        assert r.code == 2 and r.err.strip().endswith("try 1, 2, 4, 8, 16"), r.err
        assert cli(command[0], "deepseek-v3", "--gpu", "h200", "--tp", "32", *command[1:]).err.find("scale blocks") > 0
    bf16 = cli("latency", "deepseek-v3", "--gpu", "h200", "--tp", "3", "--dtype", "bf16")
    assert bf16.code == 2 and bf16.err.strip().endswith("try 1, 2, 4, 8, 16, 32, 64, 128")
    assert cli("latency", "llama3-8b", "--gpu", "h100", "--tp", "3").err.strip().endswith("try 1, 2, 4, 8, 16, 32")


def test_compare_prices_the_traffic_it_was_asked_about(cli) -> None:
    """QA41b: compare --rate priced $/M tokens at the deployment flat out, so a GPU that idles at the traffic read
    cheap. At --rate 2 with 256 output tokens the traffic is 512 output tokens/s; one H100 at $3/h costs
    3 / (512 x 3,600) x 10^6 = $1.628 per million of them, one L40S at $1.5/h $0.814, whatever their peak rate
    (the flat-out figure stays, under its own key). Without --rate there is no traffic and no such key."""
    rows = {r["gpu"]: r for r in cli("compare", "llama3-8b", "h100", "l40s", "--rate", "2", "--output", "256",
                                     "--price", "h100=3", "--price", "l40s=1.5", "--json").json()}
    assert rows["h100-sxm"]["gpus"] == 1 and rows["l40s"]["gpus"] == 1
    assert abs(rows["h100-sxm"]["cost_per_million_tokens_at_rate"] - 3 / (512 * 3600) * 1e6) < 1e-9
    assert abs(rows["l40s"]["cost_per_million_tokens_at_rate"] - 1.5 / (512 * 3600) * 1e6) < 1e-9
    assert rows["h100-sxm"]["cost_per_million_tokens"] < rows["h100-sxm"]["cost_per_million_tokens_at_rate"]
    table = cli("compare", "llama3-8b", "h100", "l40s", "--rate", "2", "--price", "h100=3", "--price", "l40s=1.5")
    assert "$/M at rate" in table.out and "1.628" in table.out and "0.814" in table.out
    free = cli("compare", "llama3-8b", "h100", "--price", "h100=3", "--json").json()[0]
    assert free["cost_per_million_tokens_at_rate"] is None and free["cost_per_million_tokens"] > 0


def test_a_pipelined_step_line_says_whose_flops_and_bytes_it_counts(cli) -> None:
    """QA41b: under PP a serving step crosses every stage, and its derivation summed the stages' FLOPs and bytes
    under the label "FLOPs/GPU". Llama 3 70B on TP 2 x PP 2, 4 sequences at context 1,152: one TP rank reads the
    matrix weights (70,553,706,496 - 128,256 x 8,192 embedding rows) x 2 B / 2 = 69,503,033,344 B and the KV cache
    4 x 1,152 x 80 layers x 8 KV heads x 128 x 2 x 2 B / 2 = 754,974,720 B, 70.26 GB in all: the two stages' sum, which
    no single GPU reads; the line now says so. On one stage it stays per GPU."""
    lines = cli("latency", "llama3-70b", "--gpu", "h100", "--tp", "2", "--pp", "2", "--batch", "8", "--json").json()
    decode = next(line for line in lines["explain"] if line.startswith("decode 4 sequences at context 1152"))
    expected = (70_553_706_496 - 128_256 * 8_192) * 2 // 2 + 4 * 1_152 * 80 * 8 * 128 * 2 * 2 // 2
    assert f"bytes per TP rank over the 2 stages {expected / 1e9:.2f} GB" in decode, decode
    one = cli("latency", "llama3-8b", "--gpu", "h100", "--json").json()["explain"]
    assert any("FLOPs/GPU" in line for line in one) and not any("stages" in line for line in one if "FLOPs" in line)


def test_a_shipped_group_that_cuts_a_whole_matrix_loads_on_no_layout(cli, tmp_path) -> None:
    """QA42 F4: vLLM's GPTQ / AWQ create_weights refuses input_size_per_partition % group_size != 0 at every TP, TP 1
    (the whole input) included; a config.json claiming GPTQ groups of 100 over 4,096-wide inputs (4,096 = 40 x 100
    + 96) was priced and served. Now every serving command refuses it naming the checkpoint (MODEL), serve finds no
    layout, and the same checkpoint with groups of 128 (4,096 = 32 x 128, 14,336 = 112 x 128) still loads at TP 1."""
    import json

    base = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 32000, "max_position_embeddings": 8192}
    for group in (100, 128):
        (tmp_path / f"g{group}.json").write_text(json.dumps(
            {**base, "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": group}}))
    bad = str(tmp_path / "g100.json")
    for command in (("concurrency", "--max-model-len", "8192"), ("latency",), ("latency", "--tp", "2")):
        r = cli(command[0], bad, "--gpu", "h100", *command[1:])
        assert r.code == 2 and r.err.startswith("llmcalc: error: MODEL:") and "groups of 100 inputs" in r.err, r.err
    assert cli("serve", bad, "--gpu", "h100").code == 2
    good = cli("concurrency", str(tmp_path / "g128.json"), "--gpu", "h100", "--max-model-len", "8192")
    assert good.code == 0


def test_a_weight_format_given_says_so_and_not_as_shipped(cli) -> None:
    """QA42 F3: --dtype awq / gptq / nvfp4 on a bf16 checkpoint priced that format's checkpoint but reported
    "dtype": "as-shipped", so AWQ and GPTQ were told apart only by their bytes. GPTQ stores an int32 g_idx per input
    row of every quantized Linear: Llama 2 70B, 80 layers x (3 x 8,192 q / k / v + 8,192 o + 2 x 8,192 gate / up +
    28,672 down = 77,824 rows) x 4 B = 24,903,680 B more than AWQ. gpt-oss ships MXFP4, so --dtype mxfp4 is it as
    shipped."""
    awq = cli("memory", "llama2-70b", "--dtype", "awq", "--json").json()
    gptq = cli("memory", "llama2-70b", "--dtype", "gptq", "--json").json()
    assert (awq["dtype"], gptq["dtype"]) == ("awq", "gptq")
    assert gptq["weights_bytes"] - awq["weights_bytes"] == 80 * 77_824 * 4
    assert cli("latency", "llama3-8b", "--gpu", "h100", "--dtype", "nvfp4", "--json").json()["dtype"] == "nvfp4"
    assert cli("memory", "gpt-oss-20b", "--dtype", "mxfp4", "--json").json()["dtype"] == "as-shipped"
    title = cli("concurrency", "llama3-8b", "--gpu", "h100", "--dtype", "gptq", "--max-model-len", "8192").out
    assert "vllm, gptq, KV fp16" in title and "weights as shipped" not in title


def test_flops_of_a_generation_count_the_prefill_that_makes_the_first_token(cli) -> None:
    """QA42 F5: `flops --output T` labelled the T - 1 decode steps "whole generation", leaving out the prefill that
    makes the first token (ten times more here). Llama 2 7B: 6,738,415,616 parameters less the 32,000 x 4,096
    embedding and 65 RMSNorms of 4,096 = 6,607,077,376 multiplied per token, of which the head 131,072,000. Prefill of
    1,000 tokens, causal, logits at the last position only: 2 x 1,000 x (M - head) + 2 x head + 2 x 32 heads x
    (128 + 128) x 32 layers x 1,000 x 1,001 / 2 pairs."""
    m, head = 6_738_415_616 - 32_000 * 4_096 - 65 * 4_096, 32_000 * 4_096
    prefill = 2 * 1_000 * (m - head) + 2 * head + 2 * 32 * 256 * 32 * (1_000 * 1_001 // 2)
    d = cli("flops", "llama2-7b", "--seq", "1000", "--output", "100", "--json").json()
    decode = d["decode"]
    assert decode["prefill_flops"] == prefill
    assert decode["total_flops"] == prefill + decode["generation_flops"]
    table = cli("flops", "llama2-7b", "--seq", "1000", "--output", "100").out
    assert "99 decode steps" in table and f"{prefill + decode['generation_flops']:,}" in table


CALIBRATION = """format: 2
gpu: h100-sxm
device_name: NVIDIA H100 80GB HBM3
is_gpu: true
dtype: bf16
date: "2026-12-01"
roofline: {{peak_tflops: 989.4, peak_gb_s: 3350, source: spec}}
ops:
  gemm:
    - {{size: 1.0e9, measured_s: 1.0e-5, efficiency: 0.3}}
    - {{size: 1.0e13, measured_s: 0.01, efficiency: {gemm}}}
  memory:
    - {{size: 1.0e9, measured_s: 1.0e-4, efficiency: {memory}}}
"""


def test_every_training_command_reads_a_calibration_by_one_rule(cli, tmp_path) -> None:
    """QA42 F6-F9. A GPU file whose largest memory op runs at 140% of HBM peak is impossible (an op that large does
    not fit the caches): latency, train-time and mfu refused it, train-step and train-plan priced with it; now every
    command refuses it at load. Under a file with a GEMM curve --gemm-plateau changes nothing and is refused, and a
    measured step slower than the calibrated prediction is reported (error (60.79 - 200) / 200 = -70%), not refused as
    "slower than at a 5% plateau" (the plateau was never read). An MFU band ends at 100% of peak (83.3% at a 0.99
    plateau read 67.6-103.6%), and the best-case warning does not ask for the --gemm-plateau it was given."""
    bad, ok = tmp_path / "bad.yaml", tmp_path / "ok.yaml"
    bad.write_text(CALIBRATION.format(gemm=0.95, memory=1.4))
    ok.write_text(CALIBRATION.format(gemm=0.7, memory=0.85))
    run = ("llama3-8b", "--gpu", "h100", "--num-gpus", "8")
    for command in (("train-step", *run, "--zero", "1"), ("train-plan", *run), ("latency", "llama3-8b", "--gpu", "h100")):
        r = cli(*command, "--calibration", str(bad))
        assert r.code == 2 and r.err.startswith("llmcalc: error: --calibration: measured largest memory-op bandwidth is 140%")
    step = ("train-step", *run, "--zero", "1", "--calibration", str(ok))
    for command in (step, ("train-plan", *run, "--calibration", str(ok))):
        r = cli(*command, "--gemm-plateau", "0.3")
        assert r.code == 2 and r.err.startswith("llmcalc: error: --gemm-plateau")
    predicted = cli(*step, "--json").json()["step_time_s"]
    slow = cli(*step, "--measured-step-time", "200", "--json")
    assert slow.code == 0 and abs(slow.json()["measured_error"] - (predicted - 200) / 200) < 1e-9
    assert slow.json()["fitted_gemm_plateau"] is None
    hot = cli("train-step", *run, "--zero", "1", "--gemm-plateau", "0.99", "--json")
    assert hot.json()["bands"]["mfu"]["high"] <= 1.0 < hot.json()["mfu"] * 1.25
    assert "give a measured --gemm-plateau" not in hot.err and "it follows the GEMM rates given" in hot.err


def test_mtp_layers_cache_their_draft_tokens(cli) -> None:
    """QA42 F10: `memory --mtp` loaded the MTP modules' weights but not their attention layer's KV cache, which an
    engine speculating with them allocates from the same pool. GLM-4.5: 92 layers + 1 MTP layer of 8 KV heads x 128
    x 2 (K, V) x 2 B = 4,096 B a token each, 93 x 4,096 x 4,096 tokens = 1,560,281,088 B; DeepSeek-V3: MLA latent
    512 + 64 at 2 B = 1,152 B a layer, 62 x 1,152 = 71,424 B a token; Qwen3-Next 80B: 12 full-attention layers + 1
    MTP layer of 2 KV heads x 256 x 2 x 2 B = 2,048 B, 13 x 2,048 = 26,624 B a token."""
    glm = cli("memory", "glm-4.5", "--seq", "4096", "--mtp", "--json").json()
    assert glm["kv_cache_bytes_per_token"] == 93 * 4_096 and glm["kv_cache_bytes"] == 93 * 4_096 * 4_096
    assert cli("memory", "glm-4.5", "--seq", "4096", "--json").json()["kv_cache_bytes_per_token"] == 92 * 4_096
    assert cli("memory", "deepseek-v3", "--mtp", "--json").json()["kv_cache_bytes_per_token"] == 62 * 1_152
    assert cli("memory", "qwen3-next-80b", "--mtp", "--json").json()["kv_cache_bytes_per_token"] == 13 * 2_048


def test_a_4_bit_format_without_a_kernel_on_the_gpu_is_refused(cli) -> None:
    """QA42 F13: vLLM's quantization configs declare the compute capability their kernels need (get_min_capability:
    AWQ 7.5, "The AWQ kernel only supports Turing or newer GPUs"; MXFP4 8.0; ModelOpt NVFP4 7.5; GPTQ 6.0), so AWQ
    and NVFP4 do not load on a V100 (7.0) nor MXFP4 on a T4 (7.5), and gpt-oss, which ships MXFP4 experts, runs on
    neither; each was priced. Refused as fp8 is refused there, naming --dtype when it chose the format and the GPU
    when the checkpoint ships it; GPTQ on a V100 and AWQ on a T4 still price; an AMD GPU (ROCm's own kernels) is not
    checked."""
    for gpu, dtype in (("v100-32g", "awq"), ("v100-32g", "nvfp4"), ("t4", "mxfp4")):
        r = cli("latency", "llama3-8b", "--gpu", gpu, "--dtype", dtype)
        assert r.code == 2 and r.err.startswith("llmcalc: error: --dtype:") and "compute capability" in r.err
    for command in (("latency",), ("concurrency", "--max-model-len", "4096")):
        r = cli(command[0], "gpt-oss-20b", "--gpu", "v100-32g", *command[1:])
        assert r.code == 2 and r.err.startswith("llmcalc: error: --gpu: MXFP4 weights need compute capability 8.0")
    for gpu, dtype in (("v100-32g", "gptq"), ("t4", "awq"), ("mi300x", "nvfp4")):
        assert cli("latency", "llama3-8b", "--gpu", gpu, "--dtype", dtype).code == 0, (gpu, dtype)
    rows = {r["gpu"]: r for r in cli("compare", "gpt-oss-20b", "v100-32g", "h100", "--json").json()}
    assert rows["v100-32g"]["layout"] is None and "compute capability 8.0" in rows["v100-32g"]["verdict"]
    assert rows["h100-sxm"]["tokens_per_s"] > 0


def test_a_frozen_lora_base_in_fp8_converts_what_fp8_converts_everywhere(cli) -> None:
    """QA42 F11: `memory --mode finetune --dtype fp8` priced every parameter at 1 byte (embedding and head too),
    where --dtype fp8 converts only the blocks' linears everywhere else. Llama 3 8B: 8,030,261,248 parameters, of which
    the embedding and head 2 x 128,256 x 4,096 = 1,050,673,152 and 65 RMSNorms 266,240 stay 16-bit: 6,979,321,856 x 1
    + 1,050,939,392 x 2 = 9,081,200,640 B, as `memory --dtype fp8` holds, plus the rank-8 adapters' 3,407,872 x 2 B.
    An int8 / int4 base is QLoRA (bitsandbytes' format, with its scales): refused naming --method qlora."""
    infer = cli("memory", "llama3-8b", "--dtype", "fp8", "--json").json()["weights_bytes"]
    assert infer == 6_979_321_856 + 2 * 1_050_939_392
    explain = cli("memory", "llama3-8b", "--mode", "finetune", "--dtype", "fp8", "--json").json()["explain"]
    assert any(line.startswith("weights = ") and f"= {infer + 2 * 3_407_872:,} B" in line for line in explain)
    for dtype in ("int8", "int4"):
        r = cli("memory", "llama3-8b", "--mode", "finetune", "--dtype", dtype)
        assert r.code == 2 and r.err.startswith("llmcalc: error: --dtype") and "--method qlora" in r.err


def test_training_memory_on_a_gpu_without_bf16_takes_the_fp16_run_train_step_takes(cli) -> None:
    """QA42 F1: a V100 has fp16 tensor cores and no bf16 (Volta). train-step refuses the default bf16 run there and
    takes --dtype fp16; `memory --mode train` priced the bf16 plan and refused --dtype fp16 ("changes no byte").
    Now it refuses bf16 on such a GPU as train-step does and takes fp16, whose mixed-precision bytes are bf16's
    (2 + 2 + 12 per parameter); on a GPU with bf16, fp16 still changes no byte and stays refused."""
    run = ("memory", "llama3-8b", "--mode", "train", "--gpu", "v100-32g", "--num-gpus", "8", "--zero", "2",
           "--recompute", "full", "--json")
    bf16 = cli(*run)
    assert bf16.code == 2 and bf16.err.startswith("llmcalc: error: --dtype: v100-32g has no bf16")
    fp16 = cli(*run, "--dtype", "fp16")
    a100 = cli("memory", "llama3-8b", "--mode", "train", "--gpu", "a100-40g", "--num-gpus", "8", "--zero", "2",
               "--recompute", "full", "--json")
    assert fp16.code == 0 and a100.code == 0
    assert fp16.json()["per_gpu"]["weights"] == a100.json()["per_gpu"]["weights"]  # the same recipe's bytes
    assert cli("memory", "llama3-8b", "--mode", "train", "--gpu", "h100", "--dtype", "fp16").code == 2


def test_train_time_without_a_node_type_checks_the_layouts_that_hold_the_model(cli) -> None:
    """QA42 F30: with no node type for the GPU, train-time at the assumed MFU checked only ZeRO-3 data parallelism and
    refused Llama 3.1 405B on 4,096 V100s ("no GPU count up to 4096 fits"), where TP 8 x PP 16 holds it, and the
    refusal came before --tp / --pp were named as needing --system. Now TP 2-8 x PP up to 16 are tried too and the
    layout flags are refused first; a count nothing holds (64) is refused saying what was tried."""
    base = ("train-time", "llama3.1-405b", "--gpu", "v100-32g", "--tokens", "1T", "--dtype", "fp16")
    assert cli(*base, "--num-gpus", "4096").code == 0
    pinned = cli(*base, "--num-gpus", "4096", "--tp", "8", "--pp", "16")
    assert pinned.code == 2 and pinned.err.startswith("llmcalc: error: --tp:") and "--system" in pinned.err
    small = cli(*base, "--num-gpus", "64")
    assert small.code == 2 and "TP 2-8 x PP 1-16" in small.err and "up to 4096" not in small.err


def test_a_pcie_only_gpu_without_a_node_type_is_priced_over_pcie(cli) -> None:
    """QA42 F31: with no node type shipped for an L40 (PCIe Gen4 x16, 64 GB/s both ways, no NVLink), serving built a
    node from its link figure without saying the link is PCIe, so its TP all-reduces skipped the fitted PCIe collective
    factor the L40S node (pcie-l40s: the same bus) reads: 1.7x faster prefill communication on the same bus. Now the
    two price within the links' own ratio (31.5 vs 32 GB/s a direction), and an NVLink GPU keeps its link."""
    l40 = cli("latency", "llama3-8b", "--gpu", "l40", "--num-gpus", "2", "--json").json()["prefill_comm_s"]
    l40s = cli("latency", "llama3-8b", "--gpu", "l40s", "--num-gpus", "2", "--json").json()["prefill_comm_s"]
    assert 0.95 < l40 / l40s <= 1.0


def test_a_four_part_release_number_is_a_release(cli) -> None:
    """QA42 F29: vLLM 0.10.1.1 is a published release (a patch of 0.10.1, on PyPI); it was refused as "not a release
    number". Its defaults are 0.10's; six parts are still refused."""
    ok = cli("concurrency", "llama3-8b", "--gpu", "h100", "--engine-version", "0.10.1.1", "--max-model-len", "8192",
             "--json")
    assert ok.code == 0 and ok.json()["max_concurrency"] > 0
    assert cli("concurrency", "llama3-8b", "--gpu", "h100", "--engine-version", "0.10.1.1.1.1").code == 2


def test_latency_json_carries_the_kv_dtype_and_weights_concurrency_carries(cli) -> None:
    """QA42 F28: latency --json had no kv_dtype nor weights bytes, which concurrency and memory carry. Llama 3 8B in
    bf16: 8,030,261,248 x 2 = 16,060,522,496 B, half a GPU at TP 2; --kv-dtype fp8 is said back."""
    d = cli("latency", "llama3-8b", "--gpu", "h100", "--tp", "2", "--kv-dtype", "fp8", "--json").json()
    assert (d["kv_dtype"], d["weights_bytes"], d["weights_bytes_per_gpu"]) == ("fp8", 16_060_522_496, 8_030_261_248)
    c = cli("concurrency", "llama3-8b", "--gpu", "h100", "--tp", "2", "--kv-dtype", "fp8", "--max-model-len", "8192",
            "--json").json()
    assert (c["kv_dtype"], c["weights_bytes"]) == (d["kv_dtype"], d["weights_bytes"])


def test_serve_says_when_emit_chose_the_engine(cli) -> None:
    """QA42 F23: `serve --emit sglang` without --engine sizes the plan as SGLang runs it (its memory fraction, its
    scheduler), which changes the answer from the default vLLM's; it did so silently. Now a note says so, and the
    answer equals `--engine sglang --emit sglang`'s."""
    alone = cli("serve", "llama3-8b", "--gpu", "h100", "--emit", "sglang", "--json")
    both = cli("serve", "llama3-8b", "--gpu", "h100", "--engine", "sglang", "--emit", "sglang", "--json")
    assert "the plan is sized for sglang" in alone.err and "sized for" not in both.err
    assert alone.json()["best"] == both.json()["best"]


def test_emit_trtllm_refuses_a_block_size_its_line_cannot_carry(cli) -> None:
    """QA42 F25: TensorRT-LLM prices --block-size (its tokens_per_block, default 32), but trtllm-serve takes it in the
    --extra_llm_api_options file, not on its command line; the emitted line dropped it silently, so the engine would
    start with another block than the plan. Refused as the KV dtype is; without --block-size the line is emitted."""
    run = ("serve", "llama3-8b", "--gpu", "h100", "--engine", "trtllm", "--emit", "trtllm", "--num-gpus", "1")
    r = cli(*run, "--block-size", "8")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --block-size") and "tokens_per_block" in r.err
    assert "trtllm-serve" in cli(*run).out


def test_the_gpu_catalog_shows_the_memory_every_fit_uses(cli) -> None:
    """QA42 F27: `gpus` showed an H100 SXM's 85.5 GB (81,559 MiB as nvidia-smi lists it) while every
    fit is checked against the 81,105 MiB = 79.20 GiB torch reports (memory_cuda_total_mib), and the catalog did not
    say which is which; its title says so and --json carries the figure fits use."""
    rows = {r["name"]: r for r in cli("gpus", "--json").json()}
    fit = cli("memory", "llama3-8b", "--gpu", "h100", "--json").json()["gpu_memory_bytes"]
    assert rows["h100-sxm"]["cuda_total_bytes"] == fit < rows["h100-sxm"]["memory_bytes"]
    assert "cuda_total_bytes" in " ".join(cli("gpus").out.split())


def test_systems_says_a_node_has_nvlink_bridges(cli) -> None:
    """QA42 F33: `systems` showed pcie-h100 as "PCIe Gen5 x16" only, while a TP 2 group on it is timed over its 300
    GB/s NVLink bridge (the H100 PCIe product brief: a bridge joins a pair); the row now says so."""
    rows = {r["name"]: r for r in cli("systems", "--json").json()}
    assert rows["pcie-h100"]["bridge_gpus"] == 2
    from calc.report.training_views import systems_view
    from calc.sources.catalog import load_system

    cell = list(systems_view([load_system("pcie-h100")]).columns[3].cells)[0]
    assert "NVLink bridges join 2 GPUs at 300 GB/s" in cell


def test_a_gpu_file_of_ones_own_is_named_and_checked(cli, tmp_path) -> None:
    """QA42 F17: a GPU YAML whose arch is misspelt ("Hoper") was priced at the generic defaults in silence, and
    compare's --price could not name it by the name its row shows. Now the arch is warned about, naming the catalog's
    generations, and --price NAME=USD reaches the file's GPU."""
    spec = cli("show", "h100", "--yaml").out.replace("arch: Hopper", "arch: Hoper")
    spec = "\n".join("name: myh100" if line.startswith("name:") else line for line in spec.splitlines())
    (tmp_path / "g.yaml").write_text(spec)
    r = cli("memory", "llama3-8b", "--gpu", str(tmp_path / "g.yaml"))
    assert r.code == 0 and "arch 'Hoper' is none of the catalog's generations" in r.err
    rows = cli("compare", "llama3-8b", str(tmp_path / "g.yaml"), "h100", "--price", "myh100=2", "--json").json()
    assert {r["gpu"]: r["price_per_gpu_hour"] for r in rows} == {"myh100": 2.0, "h100-sxm": None}
    assert "arch" not in cli("memory", "llama3-8b", "--gpu", "h100").err


def test_vllm_has_no_fp16_cache_under_a_bf16_model(cli) -> None:
    """QA42 F2: vLLM's --kv-cache-dtype takes auto (the model's dtype), bfloat16 or an fp8 format (vllm/config/cache.py
    CacheDType), SGLang's the same, so an fp16 cache under a bf16 model is no setting of theirs; it was priced (as bf16's
    2 bytes under another name) unless --emit was asked. Refused as int8 is; TensorRT-LLM (its own KV dtype) and an
    fp16 model (a T4's fallback) keep it."""
    r = cli("concurrency", "llama3-8b", "--gpu", "h100", "--kv-dtype", "fp16", "--max-model-len", "8192")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --kv-dtype: fp16: vLLM")
    assert cli("concurrency", "llama3-8b", "--gpu", "h100", "--kv-dtype", "fp16", "--engine", "trtllm",
               "--max-model-len", "8192").code == 0
    assert cli("latency", "llama3.2-1b", "--gpu", "t4", "--kv-dtype", "fp16").code == 0


def test_serving_takes_the_gemm_plateau_and_hbm_efficiency_its_explain_names(cli, tmp_path) -> None:
    """QA42 F21: latency / serve / report / compare --explain name the GEMM plateau and the HBM efficiency every step
    is timed at, but only training could override the plateau and nothing the HBM figure. Now --gemm-plateau (one
    option, training's name) and --hbm-efficiency set them. Llama 3 8B prefilling 64 x 1,024 tokens on an H100 is
    compute-bound: at half the plateau (0.305 of 0.61) its TTFT doubles, less the fixed step overhead; a file that
    measured GEMMs sets that rate itself, so the pair is refused."""
    run = ("latency", "llama3-8b", "--gpu", "h100", "--batch", "64", "--json")
    base = cli(*run).json()
    half = cli(*run, "--gemm-plateau", str(base["compute_efficiency"] / 2)).json()
    assert 1.9 < half["ttft_s"] / base["ttft_s"] <= 2.0 and half["compute_efficiency"] == base["compute_efficiency"] / 2
    slow = cli(*run, "--hbm-efficiency", "0.45").json()
    assert slow["memory_efficiency"] == 0.45 and slow["tpot_s"] > base["tpot_s"] * 1.4
    for command in (("serve", "llama3-8b", "--gpu", "h100"), ("compare", "llama3-8b", "h100"),
                    ("report", "llama3-8b", "--gpu", "h100")):
        assert cli(*command, "--gemm-plateau", "0.5", "--hbm-efficiency", "0.8").code == 0, command
    (tmp_path / "cal.yaml").write_text(CALIBRATION.format(gemm=0.7, memory=0.85))
    r = cli(*run, "--calibration", str(tmp_path / "cal.yaml"), "--gemm-plateau", "0.5")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --gemm-plateau")


def test_one_gemm_plateau_option_for_every_timed_training_answer(cli) -> None:
    """QA42 F21's training half: --gemm-plateau was train-step's and train-plan's only; train-time refused it as no
    option and report --mode train as "a serving option". Now both take it and price the same plan: Llama 3 8B on 8
    H100s at a 0.4 plateau reads one MFU in train-time and in the report, lower than at the fitted plateau; with an
    assumed --mfu it changes nothing and is refused."""
    run = ("llama3-8b", "--gpu", "h100", "--num-gpus", "8")
    fitted = cli("train-time", *run, "--tokens", "1T", "--json").json()["mfu"]
    slow = cli("train-time", *run, "--tokens", "1T", "--gemm-plateau", "0.4", "--json").json()["mfu"]
    page = cli("report", *run, "--mode", "train", "--gemm-plateau", "0.4", "--json").json()["train_time"]["mfu"]
    assert slow == page < fitted
    assert cli("train-time", *run, "--tokens", "1T", "--mfu", "0.4", "--gemm-plateau", "0.4").code == 2


def test_report_finetune_writes_html_as_the_other_modes_do(cli) -> None:
    """QA42 F24: `report --mode finetune --format html` was refused while markdown (and html in the other modes) was
    written. The page carries the markdown page's figures: Llama 3 8B LoRA on one H100, 8,030,261,248 parameters, the
    rank-8 default adapters' 3,407,872 trainable, and the peak the JSON gives."""
    page = cli("report", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--format", "html")
    assert page.code == 0 and page.out.startswith("<!DOCTYPE html>") and "<script" not in page.out
    assert "8,030,261,248" in page.out and "3,407,872" in page.out
    markdown = cli("report", "llama3-8b", "--gpu", "h100", "--mode", "finetune", "--format", "markdown").out
    peak = next(line for line in markdown.splitlines() if line.startswith("| **peak**")).split("**")[3]
    assert f"<td>peak</td><td>{peak}</td>" in page.out


def test_a_release_before_the_architecture_is_refused(cli) -> None:
    """QA42 F19: --engine-version took releases that cannot load the model and priced them (gpt-oss on vLLM 0.6).
    vLLM's release notes date each architecture: Llama 4 (chunked local attention) 0.8.3, gpt-oss (attention sinks,
    MXFP4 experts) 0.10.1, Qwen3-Next (Gated DeltaNet) 0.10.2; an earlier release is refused naming --engine-version,
    that release itself (or a patch of it, 0.10.1.1) runs."""
    for model, gpus, before, first in (("gpt-oss-20b", "1", "0.10", "0.10.1"), ("llama4-scout", "4", "0.8.2", "0.8.3"),
                                       ("qwen3-next-80b", "4", "0.10.1", "0.10.2")):
        run = ("latency", model, "--gpu", "h100", "--num-gpus", gpus, "--engine-version")
        r = cli(*run, before)
        assert r.code == 2 and r.err.startswith("llmcalc: error: --engine-version") and f"came in vLLM {first}" in r.err
        assert cli(*run, first).code == 0, (model, first)
    assert cli("latency", "gpt-oss-20b", "--gpu", "h100", "--engine-version", "0.10.1.1").code == 0
    assert cli("concurrency", "gpt-oss-20b", "--gpu", "h100", "--engine-version", "0.6", "--max-model-len", "8192").code == 2


def test_the_second_sweep_of_this_pass(cli, tmp_path) -> None:
    """QA42b, the sweep of this pass's own changes: the release rule holds under --engine vllm-v0 too (F1); Gemma 2 as
    AWQ on a T4 (Turing: no Marlin kernel, which needs compute capability 8.0; AWQ's own kernel takes fp16 activations
    only, which vLLM refuses for Gemma 2 / 3) is refused, on an A100 (Marlin, bf16) priced (F2); report --mode train
    takes --dtype as train-time does, so a V100 run is reachable with fp16 and fp8 reads train-time's MFU (F25); an
    L40 (PCIe, no node type) is priced at the PCIe nodes' 5 us per step, not NVLink's 3 us, so its TP 4 decode no
    longer beats an L40S's on the same bus (F10); the MTP KV line multiplies out (F9); a checkpoint no TP loads is
    refused naming MODEL in compare too, and a refused --tp names no empty list (F5, F4); compare keeps a GPU without
    a kernel for a converted format as a row (F18); the MFU warning reads the plateau train-time was given (F8)."""
    r = cli("latency", "llama4-scout", "--gpu", "h100", "--num-gpus", "4", "--engine", "vllm-v0", "--engine-version", "0.8.2")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --engine-version")
    awq = cli("latency", "gemma2-9b", "--gpu", "t4", "--dtype", "awq")
    assert awq.code == 2 and awq.err.startswith("llmcalc: error: --gpu") and "Marlin" in awq.err
    assert cli("latency", "gemma2-9b", "--gpu", "a100", "--dtype", "awq").code == 0
    v100 = ("report", "llama3.2-1b", "--gpu", "v100-32g", "--num-gpus", "1", "--mode", "train")
    assert cli(*v100).err.startswith("llmcalc: error: --dtype: v100-32g has no bf16")
    assert cli(*v100, "--dtype", "fp16").code == 0
    run = ("llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--dtype", "fp8")
    assert cli("report", *run, "--mode", "train", "--json").json()["train_time"]["mfu"] == \
        cli("train-time", *run, "--tokens", "1T", "--json").json()["mfu"]
    tpot = {g: cli("latency", "llama3-70b", "--gpu", g, "--tp", "4", "--num-gpus", "4", "--json").json()["tpot_s"]
            for g in ("l40", "l40s")}
    assert abs(tpot["l40"] / tpot["l40s"] - 1) < 0.002  # the same bus, the same HBM (864 GB/s): one figure
    glm = cli("memory", "glm-4.5", "--gpu", "h200", "--num-gpus", "8", "--mtp", "--json").json()
    assert any("2*92*8*128*2 = 376,832 B; + 1 MTP attention layer x 4,096 B = 380,928 B" in line for line in glm["explain"])
    import json

    base = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 32000, "max_position_embeddings": 8192,
            "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 100}}
    (tmp_path / "g100.json").write_text(json.dumps(base))
    for command in (("compare", str(tmp_path / "g100.json"), "h100", "a100-80g"),
                    ("latency", str(tmp_path / "g100.json"), "--gpu", "h100", "--tp", "3", "--num-gpus", "3")):
        r = cli(*command)
        assert r.code == 2 and r.err.startswith("llmcalc: error: MODEL") and "try " not in r.err, command
    rows = {r["gpu"]: r for r in cli("compare", "llama3-8b", "v100-32g", "h100", "--dtype", "awq", "--json").json()}
    assert rows["v100-32g"]["layout"] is None and rows["h100-sxm"]["tokens_per_s"] > 0
    hot = cli("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "1T", "--gemm-plateau", "0.99")
    assert "it follows the GEMM rates given" in hot.err and "give a measured --gemm-plateau" not in hot.err


def test_an_fp16_config_is_an_fp16_checkpoint(cli, tmp_path) -> None:
    """QA42b F11: an unquantized config.json whose torch_dtype is float16 (Llama 2's own) was imported as bf16, so
    vLLM's auto KV (the model's dtype) was bf16 and --kv-dtype fp16 was refused as foreign to the model. The
    config's 16-bit dtype is the checkpoint's now; a bf16 config is unchanged."""
    import json

    base = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 32000, "max_position_embeddings": 8192}
    for dtype in ("float16", "bfloat16"):
        (tmp_path / f"{dtype}.json").write_text(json.dumps({**base, "torch_dtype": dtype}))
    fp16 = cli("latency", str(tmp_path / "float16.json"), "--gpu", "h100", "--json").json()
    assert fp16["kv_dtype"] == "fp16" and fp16["dtype"] == "fp16"
    assert cli("latency", str(tmp_path / "float16.json"), "--gpu", "h100", "--kv-dtype", "fp16").code == 0
    assert cli("latency", str(tmp_path / "bfloat16.json"), "--gpu", "h100", "--json").json()["kv_dtype"] == "bf16"
