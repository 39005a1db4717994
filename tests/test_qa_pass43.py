"""Findings mended in pass 43, each checked against an independent path (an engine's source, a hand count)."""

from __future__ import annotations

import pytest


def test_fp8_on_a_16_bit_moe_is_held_to_its_block_checkpoint(cli) -> None:
    """QA42 F12: `--dtype fp8` on a 16-bit MoE is priced as its block-fp8 checkpoint ([128, 128] blocks, as
    Qwen/Qwen3-235B-A22B-FP8 ships: its config.json quantization_config weight_block_size), so the TP it loads at is
    that checkpoint's: Qwen3-235B-A22B's experts are 1,536 wide (moe_intermediate_size), 1,536 / 8 = 192 outputs a
    rank at TP 8 is not a multiple of 128, and vLLM's Fp8MoEMethod refuses it ("The output_size of gate's and up's
    weight = 192 is not divisible by weight quantization block_n = 128", vllm-project/vllm#25292); at TP 4 the slice
    is 384 = 3 x 128. Expert parallelism keeps the experts whole, and `--fp8-moe-scales tensor` (online fp8, one scale
    a tensor) has no blocks to cut: both load."""
    query = ("qwen3-235b-a22b", "--gpu", "h100", "--num-gpus", "8", "--dtype", "fp8")
    for command in (("concurrency", "--max-model-len", "8192"), ("latency", "--prompt", "1000"), ("report",)):
        r = cli(command[0], *query, *command[1:])
        assert r.code == 2 and r.err.startswith("llmcalc: error: --num-gpus: ") and "192 outputs a rank" in r.err, command
        assert "TP 4 keeps them whole" in r.err and "--ep" in r.err and r.err.count("\n") == 1
    assert cli("latency", *query, "--prompt", "1000", "--tp", "8").err.startswith("llmcalc: error: --tp: ")
    for extra in (("--ep", "8"), ("--fp8-moe-scales", "tensor")):
        assert cli("concurrency", *query, "--max-model-len", "8192", *extra).code == 0, extra
        assert cli("latency", *query, "--prompt", "1000", *extra).code == 0, extra
    four = ("qwen3-235b-a22b", "--gpu", "h100", "--num-gpus", "4", "--dtype", "fp8", "--max-model-len", "8192")
    assert cli("concurrency", *four).code == 0
    # serve never offers the TP 8 layout it would refuse: every TP 8 layout it lists splits experts over EP
    layouts = cli("serve", "qwen3-235b-a22b", "--gpu", "h100", "--num-gpus", "8", "--dtype", "fp8", "--prompt", "1000",
                  "--output", "200", "--json").json()["layouts"]
    assert layouts and all("EP" in x["name"] for x in layouts if x["name"].startswith("TP8"))
    tensor = cli("serve", "qwen3-235b-a22b", "--gpu", "h100", "--num-gpus", "8", "--dtype", "fp8", "--prompt", "1000",
                 "--output", "200", "--fp8-moe-scales", "tensor", "--json").json()["layouts"]
    assert "TP8 x PP1" in {x["name"] for x in tensor}
    # a dense model's --dtype fp8 is online per-tensor fp8 in vLLM: no blocks, TP 8 loads (Llama 3 70B: 28,672 / 8)
    assert cli("concurrency", "llama3-70b", "--gpu", "h100", "--num-gpus", "8", "--dtype", "fp8",
               "--max-model-len", "8192").code == 0


def test_concurrency_refuses_fp8_moe_scales_where_it_changes_nothing(cli) -> None:
    """`concurrency --fp8-moe-scales` only decides whether a 16-bit MoE at --dtype fp8 loads as its block checkpoint
    (the test above); without --dtype fp8 it would change nothing, so it is refused in one line naming the flag, and a
    dense model refuses it as every MoE option."""
    r = cli("concurrency", "qwen3-235b-a22b", "--gpu", "h100", "--num-gpus", "8", "--fp8-moe-scales", "tensor")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --fp8-moe-scales: ") and r.err.count("\n") == 1
    r = cli("concurrency", "llama3-8b", "--gpu", "h100", "--fp8-moe-scales", "block")
    assert r.code == 2 and r.err.strip() == "llmcalc: error: --fp8-moe-scales: applies to routed experts; llama3-8b has none"


def test_vllm_keeps_replicated_tensors_whole_on_every_tp_rank() -> None:
    """QA42b F17: weights per GPU divided every tensor by TP, but vLLM keeps some whole on each rank: MLA's latent
    down-projections (deepseek_v2.py: q_a_proj, kv_a_proj_with_mqa as ReplicatedLinear) and every MoE router (the
    ``gate`` ReplicatedLinear), and past g ranks each rank holds one whole KV head (QKVParallelLinear's
    num_kv_head_replicas = t / g). By hand from the configs:
    - DeepSeek-V3 bf16 at TP 8: 7/8 x (61 x 7,168 x (1,536 + 576) + 58 x (7,168 x 256 + 256)) x 2 B more a rank;
    - Llama 3 70B (8 KV heads of 128) bf16 at TP 16: k and v 8,192 x 128 a rank, not 8,192 x 64: 80 x 2 x 8,192 x
      64 x 2 B = 167,772,160 B more a rank; at TP 8 none."""
    from calc.memory.weights import weights_per_gpu, weights_stored_bytes
    from calc.sources.catalog import load_model

    ds = load_model("deepseek-v3")
    replicated = 61 * 7168 * (1536 + 576) + 58 * (7168 * 256 + 256)
    assert weights_per_gpu(ds, "bf16", 8) - weights_per_gpu(ds, "bf16") / 8 == 7 * replicated * 2 / 8
    assert weights_stored_bytes(ds, "bf16", 8) == weights_per_gpu(ds, "bf16", 8) * 8
    llama = load_model("llama3-70b")
    one = weights_per_gpu(llama, "bf16")
    assert weights_per_gpu(llama, "bf16", 16) - one / 16 == 80 * 2 * 8192 * 64 * 2
    assert weights_per_gpu(llama, "bf16", 8) == one / 8


def test_flashmla_forces_64_token_blocks_on_hopper(cli) -> None:
    """QA42 F15: vLLM forces a 64-token KV block for an MLA model on Hopper, where FlashMLA is its default MLA backend
    (vllm/platforms/cuda.py check_and_update_config: "Forcing kv cache block size to 64 for FlashMLA backend", since
    FlashMLA came in, vLLM PR #13747, February 2025; the line vLLM 0.8.3 logs for DeepSeek-V2-Lite). DeepSeek-V3's
    latent is 61 x 576 x 2 B = 70,272 B a token on every rank, so a block is 64 x 70,272 = 4,497,408 B and the KV
    tokens a multiple of 64; an A100 (Triton MLA) keeps 16; --block-size 16 on an H200 would change nothing (refused),
    and `--emit vllm` writes the 64 the engine runs."""
    h200 = cli("concurrency", "deepseek-v3", "--gpu", "h200", "--num-gpus", "8", "--max-model-len", "8192",
               "--json").json()
    assert h200["block_size"] == 64 and h200["kv_block_bytes"] == 64 * 70_272 * 8 and h200["kv_cache_tokens"] % 64 == 0
    a100 = cli("concurrency", "deepseek-v2", "--gpu", "a100-80g", "--num-gpus", "8", "--max-model-len", "8192",
               "--json").json()
    assert a100["block_size"] == 16
    r = cli("concurrency", "deepseek-v3", "--gpu", "h200", "--num-gpus", "8", "--block-size", "16")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --block-size: 16 tokens: vLLM forces 64") and r.err.count("\n") == 1
    assert cli("concurrency", "deepseek-v3", "--gpu", "h200", "--num-gpus", "8", "--block-size", "128",
               "--json").json()["block_size"] == 128  # a multiple of 64 is kept (block_size % 64 != 0)
    line = cli("serve", "deepseek-v2", "--gpu", "h100", "--num-gpus", "8", "--prompt", "2000", "--output", "500",
               "--emit", "vllm").out
    assert "--block-size 64" in line


def test_a_replica_past_one_node_gets_each_node_s_command(cli) -> None:
    """QA43b B4: a 16-GPU replica on 8-GPU nodes cannot start from one single-node command (vLLM: "the number of
    required GPUs exceeds the total number of available GPUs"). vLLM's TP x PP runs on a Ray cluster over the nodes
    (--distributed-executor-backend ray, vLLM's multi-node serving docs); its data-parallel attention one command a
    node (--data-parallel-size-local, --data-parallel-address, the others --headless from --data-parallel-start-rank);
    SGLang the same command on every node with --nnodes / --node-rank / --dist-init-addr (its multi-node docs)."""
    # Llama 3.1 405B in bf16 (810 GB) needs more than one node of 8 x 80 GB: every replica on 16 GPUs spans two
    vllm = cli("serve", "llama3.1-405b", "--gpu", "h100", "--num-gpus", "16", "--prompt", "1000", "--output", "200",
               "--emit", "vllm").out
    assert "# 16 GPUs over 2 nodes of 8" in vllm and "--distributed-executor-backend ray" in vllm
    sglang = cli("serve", "llama3.1-405b", "--gpu", "h100", "--num-gpus", "16", "--engine", "sglang", "--prompt",
                 "1000", "--output", "200", "--emit", "sglang").out
    lines = [x for x in sglang.splitlines() if x.startswith("python -m sglang.launch_server")]
    assert [x.split("--node-rank ")[1].split()[0] for x in lines] == ["0", "1"] and all("--nnodes 2" in x for x in lines)
    kimi = cli("serve", "kimi-k2", "--gpu", "h200", "--emit", "vllm").out  # its pick: DP16 x TP1 attention + EP16
    nodes = [x for x in kimi.splitlines() if x.startswith("vllm serve")]
    assert len(nodes) == 2 and "--headless --data-parallel-start-rank 8" in nodes[1] and "--headless" not in nodes[0]
    assert all("--data-parallel-size-local 8" in x and "--trust-remote-code" in x for x in nodes)  # its tokenizer's code
    one = cli("serve", "llama3-8b", "--gpu", "h100", "--prompt", "1000", "--output", "200", "--emit", "vllm").out
    assert "nodes of" not in one and "--trust-remote-code" not in one  # one node: the one line, unchanged


def test_emit_lines_a_user_can_paste(cli, tmp_path) -> None:
    """QA43b B10 / B20: on a GPU without bf16 (T4) the engines cast a bf16 model to fp16, so the plan's KV cache is
    fp16 and `--kv-cache-dtype auto` starts it (the line was refused, blaming a --kv-dtype fp16 never given); a model
    given as a config.json names no HuggingFace repo, so the line loads MODEL_DIR and says what to put there (it
    wrote the file's name)."""
    t4 = cli("serve", "llama3-8b", "--gpu", "t4", "--num-gpus", "2", "--prompt", "1000", "--output", "200", "--emit",
             "vllm")
    assert t4.code == 0 and "--kv-cache-dtype auto" in t4.out
    config = tmp_path / "cfg" / "config.json"
    config.parent.mkdir()
    config.write_text('{"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008, '
                      '"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32, '
                      '"max_position_embeddings": 4096, "torch_dtype": "bfloat16"}')
    line = cli("serve", str(config), "--gpu", "h100", "--prompt", "1000", "--output", "200", "--emit", "vllm").out
    assert "# MODEL_DIR: the directory of" in line and "vllm serve MODEL_DIR " in line


def test_refusals_name_the_fix_on_the_same_gpus(cli) -> None:
    """QA43b B5 / B11: Llama 3 70B at TP 4 under SGLang holds 313 requests of 1,280 tokens, 314 do not fit, and
    TP 2 x PP 2 on the same 4 GPUs holds them (the refusal said "needs 4 GPUs" to a deployment on 4); an expert
    imbalance above the EP degree (more than every token on one rank) is refused."""
    r = cli("latency", "llama3-70b", "--gpu", "h100", "--tp", "4", "-b", "314", "--engine", "sglang")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --tp: ") and "--tp 2 --pp 2" in r.err
    ep8 = ("qwen3-235b-a22b", "--gpu", "h100", "--num-gpus", "8", "--ep", "8", "--dtype", "fp8", "--prompt", "1000")
    r = cli("latency", *ep8, "--expert-imbalance", "9")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --expert-imbalance: ") and "(8:" in r.err
    assert cli("latency", *ep8, "--expert-imbalance", "8").code == 0


def test_a_whole_step_calibration_is_not_read_as_a_gemm_rate(cli, tmp_path) -> None:
    """QA43 A6: `calibrate --from-runs` fits a training run as one roofline, step = 3 x forward FLOPs / (GPUs x peak x
    e_c) (calc.hardware.fit), so e_c is the run's MFU; train-step read the saved file as its GEMM rate and added the
    attention, elementwise and communication terms on top, missing the very run it was fitted to by +25% (2.698 s
    came back 3.377 s). The training commands now refuse such a file, naming --measured-step-time, which gives the GEMM
    plateau that reproduces the run in train-step's own model."""
    runs = tmp_path / "runs.yaml"
    runs.write_text("- {model: llama2-7b, gpu: h100, num_gpus: 8, batch: 64, seq: 4096, step_time_s: 2.7}\n")
    saved = tmp_path / "cal.yaml"
    assert cli("calibrate", "--from-runs", str(runs), "--save", str(saved)).code == 0
    step = ("llama2-7b", "--gpu", "h100", "--tp", "1", "--dp", "8", "--zero", "1", "--global-batch", "64")
    for command, args in (("train-step", step), ("train-plan", ("llama2-7b", "--gpu", "h100", "--num-gpus", "8"))):
        r = cli(command, *args, "--calibration", str(saved))
        assert r.code == 2 and r.err.startswith("llmcalc: error: --calibration: ") and "--measured-step-time" in r.err
    measured = cli("train-step", *step, "--measured-step-time", "2.7")
    assert measured.code == 0 and "plateau" in measured.out + measured.err


def test_a_time_band_never_implies_more_than_the_peak(cli) -> None:
    """QA43 A9: the MFU band stops at 100% of the dense peak, but the step-time band of the same answer went down to
    1.495 s where 100% is 64 x 4,096 tokens x 46.085 GFLOPs (6 x 6,607,343,616 weights multiplied + 12 x 32 layers x
    4,096 x 4,096) / (8 x 989.4 TFLOPS) = 1.526 s (the step x its MFU); and an
    assumed --mfu 0.999 gave GPU-hours down to half the figure (MFU 200%). Both low ends are now the figure x its MFU."""
    step = cli("train-step", "llama2-7b", "--gpu", "h100", "--tp", "1", "--zero", "1", "--num-gpus", "8",
               "--global-batch", "64", "--gemm-plateau", "1", "--json").json()
    floor = 64 * 4096 * 46.085e9 / (8 * 989.4e12)
    assert step["bands"]["step_time_s"]["low"] == pytest.approx(floor, rel=2e-3)
    assert step["bands"]["step_time_s"]["low"] == pytest.approx(step["step_time_s"] * step["mfu"], rel=1e-9)
    hours = cli("train-time", "llama2-7b", "--gpu", "h100", "--num-gpus", "8", "--tokens", "2T", "--mfu", "0.999",
                "--json").json()
    assert hours["bands"]["gpu_hours"]["low"] == pytest.approx(hours["gpu_hours"] * 0.999, rel=1e-9)


def test_deepseek_recomputation_needs_mla(cli) -> None:
    """QA43 A20: --recompute deepseek is DeepSeek-V3's recomputation of the norms and the MLA up-projections
    (Megatron-Core --recompute-modules layernorm mla_up_proj); on a model without MLA half of it does nothing, which
    --recompute-modules mla_up_proj already refused: refused alike in every training mode, naming what runs."""
    for args in (("memory", "--mode", "train", "--dp", "8", "--zero", "1"), ("train-step", "--dp", "8", "--zero", "1"),
                 ("memory", "--mode", "finetune")):
        r = cli(args[0], "llama2-7b", "--gpu", "h100", *args[1:], "--recompute", "deepseek")
        assert r.code == 2 and r.err.startswith("llmcalc: error: --recompute: deepseek recomputes the norms"), args
        assert "has no MLA" in r.err and r.err.count("\n") == 1
    ok = cli("memory", "deepseek-v2", "--mode", "train", "--gpu", "h200", "--num-gpus", "64", "--zero", "3",
             "--recompute", "deepseek", "--seq", "2048")
    assert not ok.err.startswith("llmcalc: error: --recompute")


def test_the_textbook_activation_formula_says_when_it_does_not_describe_the_layer(cli) -> None:
    """QA43 A27: Korthikanti et al. 2022's s*b*h*(34 + 5as/h) is a dense multi-head attention + 4h MLP layer's; a top-2
    MoE keeps each token's expert tensors twice (and the router's), so on Mixtral the formula is a dense figure. The
    answer still takes --activations textbook, with one warning giving both figures; a dense model gets none."""
    moe = cli("memory", "mixtral-8x7b", "--mode", "train", "--gpu", "h200", "--num-gpus", "32", "--zero", "3", "--seq",
              "2048", "--activations", "textbook", "--json")
    assert moe.code == 0 and "formula is a dense transformer layer's" in moe.err and "routed experts" in moe.err
    assert moe.json()["warnings"] and "tensor by tensor" in moe.json()["warnings"][-1]
    dense = cli("memory", "llama3-8b", "--mode", "train", "--gpu", "h100", "--num-gpus", "8", "--zero", "3",
                "--activations", "textbook", "--json")
    assert dense.code == 0 and "formula is a dense" not in dense.err


def test_weights_bytes_is_the_model_s_in_every_serving_command(cli) -> None:
    """QA43b B13: `weights_bytes` was the model's weights in memory and latency (DeepSeek-V3 as shipped: 673.15 GB, its
    fp8 blocks, scales and 16-bit rest) and the bytes on all GPUs in concurrency (681.11 GB at TP 8, where q_a / kv_a
    and the router sit whole on every rank). One key, one meaning: the model's; the GPUs' copy is weights_stored_bytes
    in concurrency as in memory, and concurrency's capacity still splits into stored weights + kept back + activation
    peak + KV."""
    q = ("deepseek-v3", "--gpu", "h200", "--num-gpus", "8")
    conc = cli("concurrency", *q, "--max-model-len", "8192", "--json").json()
    mem = cli("memory", *q, "--seq", "8192", "--json").json()
    lat = cli("latency", *q, "--prompt", "1000", "--output", "100", "--json").json()
    assert conc["weights_bytes"] == mem["weights_bytes"] == lat["weights_bytes"]
    assert conc["weights_stored_bytes"] == mem["weights_stored_bytes"] == 8 * lat["weights_bytes_per_gpu"]
    assert conc["capacity_bytes"] == (conc["weights_stored_bytes"] + conc["reserve_bytes"] + conc["activation_bytes"]
                                      + conc["free_bytes"])


def test_checkpoints_shipped_in_fp16_run_in_fp16(cli) -> None:
    """QA43b B14: OPT, Phi-2 and GPT-NeoX-20B ship "torch_dtype": "float16" in their config.json; the engines' dtype
    auto runs them, and keeps their KV cache, in fp16, so an fp16 cache is what they start with (it was refused as
    "fp16 under a bf16 model") and the labels say fp16."""
    for model in ("opt-6.7b", "phi-2", "gpt-neox-20b"):
        lat = cli("latency", model, "--gpu", "h100", "--prompt", "1000", "--json").json()
        assert (lat["dtype"], lat["kv_dtype"]) == ("fp16", "fp16"), model
        assert cli("concurrency", model, "--gpu", "h100", "--max-model-len", "2048", "--kv-dtype", "fp16").code == 0


def test_a_tensorrt_engine_plan_gets_no_pytorch_backend_line(cli) -> None:
    """QA43b B9: TensorRT-LLM ran the LLM API's PyTorch backend by default from 1.0 (TensorRT engines built by
    trtllm-build before); a 0.17 plan is priced as that engine flow, so a `trtllm-serve ... --backend pytorch` line would
    start another engine than the plan: refused, naming --emit; 1.0 and later emit it."""
    q = ("llama3-8b", "--gpu", "h100", "--engine", "trtllm", "--prompt", "1000", "--output", "200", "--emit", "trtllm")
    r = cli("serve", *q, "--engine-version", "0.17")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --emit: TensorRT-LLM 0.17 runs the TensorRT-engine flow")
    assert "trtllm-serve meta-llama/Meta-Llama-3-8B --backend pytorch" in cli("serve", *q).out


def test_light_load_is_little_s_law_at_the_point_users_see(cli) -> None:
    """QA43b B21: at 5 requests/s one H100 replica of Llama 3 8B is lightly loaded; the requests it holds are Little's
    law at the frontier point it runs at, L_b = rate x (TTFT_b + (O - 1) x TPOT_b), the smallest frontier batch b with
    b >= L_b. It was L at the full batch's request time (84 requests, TPOT 28.2 ms at batch 128) where the frontier's
    own figures give ~11 requests at its batch-16 point; checked here against the JSON frontier by hand."""
    d = cli("serve", "llama3-8b", "--gpu", "h100", "--rate", "5", "--json").json()
    best, o = d["best"], d["output"]
    held = [(f["batch"], 5 / best["replicas"] * (f["ttft_ms"] + (o - 1) * f["tpot_ms"]) / 1e3) for f in best["frontier"]]
    batch, load = next((b, h) for b, h in held if b >= h)
    assert d["at_rate"]["batch"] == batch and d["at_rate"]["requests_held"] == pytest.approx(load)
    assert batch < best["batch"] and load < 20


def test_the_closest_layout_is_the_one_nearest_the_target(cli) -> None:
    """QA43b B17: with a TPOT target no layout meets, serve named its first-ranked layout (TP 4, 16.8 ms) as the
    closest while TP 8 reaches 12.0 ms; the closest is the smallest figure / target over the targets given, checked
    against the layouts' own JSON figures."""
    r = cli("serve", "llama3-70b", "--gpu", "h100", "--tpot-ms", "1")
    assert r.code == 2 and "closest: " in r.err
    named = r.err.split("closest: ")[1].split(" at ")[0]
    layouts = cli("serve", "llama3-70b", "--gpu", "h100", "--tpot-ms", "1", "--json").json()["layouts"]
    assert named == min(layouts, key=lambda x: x["tpot_ms"])["name"]
