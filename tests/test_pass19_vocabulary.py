"""Pass 19: one meaning and one default per option name (the brief's "one vocabulary")."""

from __future__ import annotations

import pytest
import typer


def _visible_options() -> dict[str, list[tuple[str, object]]]:
    """Every visible option name -> [(command, default)] over the app's commands."""
    from calc.cli.app import app

    root = typer.main.get_command(app)
    seen: dict[str, list[tuple[str, object]]] = {}
    for name, command in root.commands.items():
        for param in command.params:
            if param.param_type_name == "option" and not getattr(param, "hidden", False):
                for opt in param.opts:
                    seen.setdefault(opt, []).append((name, param.default))
    return seen


def test_causal_has_one_default_wherever_it_is_visible() -> None:
    """--causal/--non-causal is the workload (a causal prefill, as engines run it): on in every command."""
    uses = _visible_options()["--causal"]
    assert uses and all(default is True for _, default in uses), uses


@pytest.mark.parametrize("args", [
    ["flops", "llama3-8b"],
    ["mfu", "llama3-8b", "--gpu", "h100", "--tokens-per-s", "100K", "--num-gpus", "8"],
    ["train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T"],
])
def test_the_counting_commands_refuse_causal_and_name_the_new_flag(cli, args: list[str]) -> None:
    r = cli(*args, "--causal")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --causal") and "--attention-pairs causal" in r.err
    assert len(r.err.strip().splitlines()) == 1


def test_attention_pairs_counts_the_causal_half_by_hand(cli) -> None:
    """Llama 3 8B (32 layers, 32 heads of 128), S = 1,000: full 2*(128+128)*32*S*S*32 score FLOPs per forward;
    causal pairs S(S+1)/2 = 500,500 instead of S*S = 1,000,000."""
    full = cli("flops", "llama3-8b", "--seq", "1000", "--json").json()
    causal = cli("flops", "llama3-8b", "--seq", "1000", "--attention-pairs", "causal", "--json").json()
    assert full["forward_attention_flops"] == 2 * 256 * 32 * 32 * 1_000_000
    assert causal["forward_attention_flops"] == 2 * 256 * 32 * 32 * 500_500
    assert causal["causal"] is True and full["causal"] is False
    bad = cli("flops", "llama3-8b", "--attention-pairs", "half")
    assert bad.code == 2 and "--attention-pairs" in bad.err


def test_import_answers_json(tmp_path, cli) -> None:
    """`import --json`: the spec, its exact count and the YAML; Qwen3-0.6B by hand (tests/test_hf_import.py):
    596,049,920 parameters."""
    import json

    config = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024, "num_hidden_layers": 28,
              "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "intermediate_size": 3072,
              "vocab_size": 151936, "max_position_embeddings": 40960, "tie_word_embeddings": True}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    out = cli("import", str(path), "--name", "q06", "--json").json()
    assert out["total_params"] == 596_049_920 and out["written"] is None and out["spec"]["name"] == "q06"
    assert "hidden_size: 1024" in out["yaml"].replace('"', "")
    target = tmp_path / "q.yaml"
    written = cli("import", str(path), "--name", "q06", "--write", str(target), "--json").json()
    assert written["written"] == str(target) and target.read_text() == written["yaml"]


@pytest.mark.parametrize(("args", "flag"), [
    (["validate", "llama2-7b", "--layers", "33"], "--layers"),  # Llama 2 7B has 32 decoder blocks
    (["validate", "llama2-7b", "--prompt", "4096"], "--prompt"),  # 4,096 + 1 > its 4,096-token window
])
def test_validate_refuses_bad_input_before_any_progress_line(cli, args: list[str], flag: str) -> None:
    """One line on stderr, before torch is imported: no "llmcalc: validate: importing torch" line ahead of it, and
    --layers above the model's blocks refused, not quietly cut to them."""
    r = cli(*args)
    assert r.code == 2 and r.err.startswith(f"llmcalc: error: {flag}") and len(r.err.strip().splitlines()) == 1, r.err


def test_compare_gives_a_gpu_without_the_dtype_its_own_row(cli) -> None:
    """A T4 has fp16 and int8 tensor peaks, no bf16 (Turing). A bf16 checkpoint as shipped runs there in fp16 (vLLM's
    --dtype auto takes the platform's first supported dtype: QA41 F13), so Llama 3 8B's T4 row is priced at the fp16
    peak; Gemma 2, which vLLM refuses in fp16 (it would run fp32: QA41 F18), gets a row saying so, the other GPUs
    still compared; only a T4 -> exit 2 naming the GPU."""
    rows = {r["gpu"]: r for r in cli("compare", "llama3-8b", "h100", "t4", "--json").json()}
    assert rows["t4"]["peak_tflops"] == 65 and any("falls back to fp16" in a for a in rows["t4"]["assumptions"])
    gemma = {r["gpu"]: r for r in cli("compare", "gemma2-9b", "h100", "t4", "--json").json()}
    assert gemma["t4"]["peak_tflops"] is None and "t4 has no bf16" in gemma["t4"]["verdict"]  # vLLM would run fp32
    assert gemma["t4"]["fits"] is False and gemma["h100-sxm"]["peak_tflops"] == 989.4  # H100 SXM dense bf16 datasheet
    alone = cli("compare", "gemma2-9b", "t4")
    assert alone.code == 2 and alone.err.startswith("llmcalc: error: GPU: t4 has no bf16")
    fp16 = {r["gpu"]: r for r in cli("compare", "llama3-8b", "t4", "--dtype", "fp16", "--json").json()}
    assert fp16["t4"]["peak_tflops"] == 65  # T4 datasheet: 65 TFLOPS fp16 tensor


def test_a_gpu_file_whose_derived_peak_disagrees_is_warned_about(tmp_path, cli) -> None:
    """The A800 by hand: 512 FLOPs/clock/TC x 4 x 108 SMs x 1410 MHz = 311.8 TFLOPS bf16 (datasheet 312). A file that
    says 1,000 MHz derives 221.2 (-29%) against its 312: warned, and the datasheet 312 is the peak used."""
    from pathlib import Path

    import yaml

    spec = yaml.safe_load((Path(__file__).resolve().parents[1] / "hardware_specs" / "a800.yaml").read_text())
    spec.update(name="my-a800", aliases=[])
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(spec))
    r = cli("mfu", "llama2-7b", "--gpu", str(good), "--tflops-per-gpu", "156", "--json")
    assert r.code == 0 and "warning" not in r.err
    mfu = r.json()["mfu"]
    spec["tensor_clock_mhz"] = 1000
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec))
    r = cli("mfu", "llama2-7b", "--gpu", str(bad), "--tflops-per-gpu", "156", "--json")
    assert r.code == 0 and r.json()["mfu"] == mfu
    assert "llmcalc: warning: --gpu" in r.err and "221.2 TFLOPS" in r.err and "-29%" in r.err


def test_an_fp32_run_is_priced_with_fp32_states_activations_and_gathers(cli) -> None:
    """--dtype fp32 trains fp32 weights: fp32-adam (4 + 4 + 8 B per parameter) unless --recipe says otherwise, activations
    4 B an element, FSDP gathering fp32 units. Llama 3 8B (8,030,261,248 parameters), 8 GPUs, ZeRO-3, by hand: weights
    8,030,261,248 x 4 / 8 = 4,015,130,624 B; Adam 8 B / 8 = 8,030,261,248 B; the root unit (2 x 128,256 x 4,096 embedding
    and head + the 4,096 final norm = 1,050,677,248 parameters) gathered in fp32 with its fp32 gradient: x (4 + 4) =
    8,405,417,984 B. `memory --mode train` and `train-step` give the same figure."""
    args = ["llama3-8b", "--num-gpus", "8", "--zero", "3"]
    mem = cli("memory", *args, "--mode", "train", "--dtype", "fp32", "--json").json()
    bf16 = cli("memory", *args, "--mode", "train", "--json").json()
    assert mem["dtype"] == "fp32-adam" and bf16["dtype"] == "bf16-adam"
    per = mem["per_gpu"]
    assert per["weights"] == 4_015_130_624 and per["optimizer"] == 8_030_261_248
    assert per["FSDP unsharded layers"] == 8_405_417_984
    assert 1.8 < per["activations"] / bf16["per_gpu"]["activations"] < 2.0  # 1-byte masks and fp32 loss buffers stay
    step = cli("train-step", *args, "--gpu", "h100", "--dtype", "fp32", "--global-batch", "8", "--json").json()
    assert step["memory_per_gpu"]["weights"] == per["weights"] and step["memory_per_gpu"]["activations"] == per["activations"]
    refused = cli("train-step", *args, "--gpu", "h100", "--dtype", "fp32", "--recipe", "bf16-adam", "--global-batch", "8")
    assert refused.code == 2 and refused.err.startswith("llmcalc: error: --recipe") and "fp32-adam" in refused.err


def test_qwen3_next_counts_its_mtp_block_without_an_embedding_copy(cli) -> None:
    """Qwen3-Next-80B-A3B ships one MTP block (vLLM qwen3_next_mtp.py): pre_fc_norm_embedding + pre_fc_norm_hidden
    (2 x 2,048), fc 4,096 -> 2,048 without bias (8,388,608), one full-attention MoE decoder layer and a norm (2,048),
    reading the main embed_tokens and lm_head. The layer by hand (tests/test_hybrid_families.py): attention
    27,263,488 + MoE 1,614,809,088 + norms 4,096 = 1,642,076,672; the block 1,650,471,424; with the main model's
    79,674,391,296: 81,324,862,720 (the Hub's "81.3B params" for the safetensors). The catalog entry and its
    config.json (which does not declare the block) give the same count."""
    block = 4_096 + 8_388_608 + 27_263_488 + 1_614_809_088 + 4_096 + 2_048
    assert block == 1_650_471_424
    for model in ("qwen3-next-80b", "tests/fixtures/hf/qwen3-next-80b-a3b-instruct.json"):
        from pathlib import Path

        arg = str(Path(__file__).resolve().parents[1] / model) if model.endswith(".json") else model
        p = cli("params", arg, "--json").json()
        assert p["total_params"] == 79_674_391_296 and p["mtp_params"] == block
        assert p["total_params_with_mtp"] == 81_324_862_720


def test_memory_infer_does_not_refuse_a_batch_the_engine_and_latency_run(cli) -> None:
    """Llama 3 8B, 100 x 4,096 tokens on one H100: one unchunked forward keeps B*S*H*c activations (HF generate), over
    the card, but vLLM prefills in chunks: its KV (131,072 B a token x 4,096 x 100 = 50 GiB) beside 15 GiB of weights
    fits, as `latency` agrees; memory answers (exit 0) with a warning instead of refusing."""
    r = cli("memory", "llama3-8b", "--gpu", "h100", "--batch", "100", "--seq", "4096", "--json")
    out = r.json()
    assert r.code == 0 and out["fits"] is False and out["engine_fit"]["fits"] is True
    assert out["kv_cache_bytes"] == 131_072 * 4_096 * 100
    assert "llmcalc: warning: --batch: one unchunked forward" in r.err
    assert cli("latency", "llama3-8b", "--gpu", "h100", "--batch", "100", "--prompt", "3840", "--output", "256").code == 0
    both = cli("memory", "llama3-8b", "--gpu", "h100", "--batch", "200", "--seq", "4096")
    assert both.code == 2 and "holds the batch on 2 GPUs" in both.err


def test_memory_infer_counts_the_replicated_cache_in_its_total(cli) -> None:
    """DeepSeek-V3 on 8 x H200 at TP 8: its MLA latent, 61 layers x (512 + 64) x 2 B = 70,272 B a token, is copied onto
    every TP rank: one copy of an 8,192-token request is 575,668,224 B, stored 8 times = 4,605,345,792 B, the figure
    `concurrency` gives per request; the total over GPUs is then the per-GPU figure x 8 (no PP), the weights as stored
    likewise: 7 more copies of what vLLM keeps whole on every rank (q_a / kv_a, 61 x 7,168 x 2,112 fp8 weights with
    61 x 952 fp32 block scales, and the router's 106,445,312 bf16 parameters) than the model's one."""
    d = cli("memory", "deepseek-v3", "--gpu", "h200", "--num-gpus", "8", "--seq", "8192", "--json").json()
    assert d["kv_cache_bytes_per_token"] == 61 * 576 * 2 and d["kv_cache_bytes"] == 70_272 * 8_192
    assert d["kv_cache_stored_bytes"] == 8 * 575_668_224 and d["total_bytes"] == 8 * d["per_gpu_bytes"]
    replicated = 61 * 7168 * 2112 + 61 * 952 * 4 + 106_445_312 * 2
    assert d["weights_stored_bytes"] - d["weights_bytes"] == pytest.approx(7 * replicated, rel=1e-4)
    gqa = cli("memory", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--seq", "4096", "--json").json()
    # 8 KV heads over 8 ranks: nothing copied, stored = one copy (32 x 2 x 8 x 128 x 2 B = 131,072 B a token)
    assert gqa["kv_cache_stored_bytes"] == gqa["kv_cache_bytes"] == 131_072 * 4_096


def test_mfu_keys_mean_one_thing_across_commands(cli) -> None:
    """`mfu` counts attention FLOPs in every command (`mfu`, train-step, the planners), `mfu_6n` is seed 001's 6N
    figure in every command: train-step's step fed to `mfu --tokens-per-s` gives back its `mfu` as `mfu` (and as
    `mfu_with_attention`, its older key) and its `mfu_6n` as `mfu_6n` (same seq, GPUs and peak)."""
    step = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--global-batch", "1024", "--zero", "2",
               "--micro-batch", "2", "--json").json()
    back = cli("mfu", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens-per-s", repr(step["tokens_per_s"]),
               "--json").json()
    assert back["mfu_6n"] == pytest.approx(step["mfu_6n"], rel=1e-9)
    assert back["mfu"] == back["mfu_with_attention"] == pytest.approx(step["mfu"], rel=1e-9)
    # 6N by hand: tokens/s x 6 x 8,030,261,248 / (64 x 989.4e12)
    assert step["mfu_6n"] == pytest.approx(step["tokens_per_s"] * 6 * 8_030_261_248 / (64 * 989.4e12), rel=1e-12)
    time = cli("train-time", "llama3-8b", "--gpu", "h100", "--num-gpus", "64", "--tokens", "1T", "--json").json()
    # per token at S = 4,096: 6N = 6 x 8,030,261,248 = 48,181,567,488; with attention 3 x (2 x 7,504,658,432 matmul
    # weights + 2 x 256 x 32 x 32 x 4,096 score FLOPs / 1) = 51,470,401,536 (tests/test_flops.py counts both exactly)
    assert time["mfu_6n"] == pytest.approx(time["mfu"] * 48_181_567_488 / 51_470_401_536, rel=1e-12)


def test_fp8_weights_on_ampere_are_weight_only_whether_shipped_or_asked(cli) -> None:
    """An A100 has no fp8 tensor core; vLLM runs fp8 weights there through FP8 Marlin (W8A16). A shipped fp8 checkpoint
    (DeepSeek-V3) was priced that way while --dtype fp8 was refused; now both are, and a T4 (Turing: no Marlin) still
    refuses. Llama 3 8B at one byte a weight streams half the bf16 bytes: a faster decode step."""
    fp8 = cli("latency", "llama3-8b", "--gpu", "a100-80g", "--dtype", "fp8", "--json")
    bf16 = cli("latency", "llama3-8b", "--gpu", "a100-80g", "--dtype", "bf16", "--json").json()
    assert fp8.code == 0 and fp8.json()["tpot_s"] < bf16["tpot_s"]
    assert any("W8A16" in a for a in fp8.json()["assumptions"])
    shipped = cli("latency", "deepseek-v3", "--gpu", "a100-80g", "--num-gpus", "16")
    asked = cli("latency", "deepseek-v3", "--gpu", "a100-80g", "--num-gpus", "16", "--dtype", "fp8")
    assert shipped.code == asked.code == 0
    t4 = cli("latency", "llama3-8b", "--gpu", "t4", "--dtype", "fp8")
    assert t4.code == 2 and t4.err.startswith("llmcalc: error: --dtype")


@pytest.mark.parametrize("args", [
    ["compare", "llama3-8b", "h100", "a100"],
    ["report", "llama3-8b", "--gpu", "h100"],
    ["report", "llama3-8b", "--gpu", "h100", "--mode", "train", "--num-gpus", "8"],
    ["report", "llama3-8b", "--gpu", "h100", "--mode", "finetune"],
])
def test_compare_and_report_explain_their_assumptions(cli, args: list[str]) -> None:
    """--explain on every command that predicts: compare prints each GPU's serve assumptions (shared ones once),
    report its page's assumptions and each section's derivation."""
    plain, explained = cli(*args), cli(*args, "--explain")
    assert plain.code == explained.code == 0
    assert "How it was computed:" not in plain.out and "How it was computed:" in explained.out
    assert explained.out.count("\n") > plain.out.count("\n") + 3


def test_the_recipe_sets_the_optimizer_traffic_and_the_gradient_reduction(cli) -> None:
    """--recipe changed the memory but not the step: the optimizer step moves the recipe's bytes (bf16-adam 28, bf16
    states 14, sgd-momentum 20 per local parameter: calc.memory.training.optimizer_step_bytes worked by hand there)
    and NeMo's bf16-states recipe syncs bf16 gradients (2 B, not 4). Llama 3 8B on 64 H200s, ZeRO-1: 8,030,261,248 / 64
    = 125,472,832 parameters per GPU step their states."""
    args = ["train-step", "llama3-8b", "--gpu", "h200", "--num-gpus", "64", "--global-batch", "512", "--zero", "1",
            "--recompute", "full", "--json"]
    runs = {r: cli(*args, "--recipe", r).json() for r in ("bf16-adam", "bf16-adam-bf16-states", "sgd-momentum")}
    per_gpu = 8_030_261_248 / 64
    hbm = runs["bf16-adam"]["optimizer_s"] / (per_gpu * 28)  # seconds per byte of this GPU's HBM, as the engine reads it
    assert runs["bf16-adam-bf16-states"]["optimizer_s"] == pytest.approx(per_gpu * 14 * hbm, rel=1e-9)
    assert runs["sgd-momentum"]["optimizer_s"] == pytest.approx(per_gpu * 20 * hbm, rel=1e-9)
    assert runs["bf16-adam-bf16-states"]["dp_comm_s"] < runs["bf16-adam"]["dp_comm_s"]
    assert any("reduced at 2 B/element" in a for a in runs["bf16-adam-bf16-states"]["assumptions"])


@pytest.mark.parametrize("command", ["memory", "latency", "concurrency"])
def test_tp_against_num_gpus_is_one_refusal_in_every_serving_command(cli, command: str) -> None:
    r = cli(command, "llama3-70b", "--gpu", "h100", "--num-gpus", "8", "--tp", "2")
    assert r.code == 2 and r.err.strip() == "llmcalc: error: --tp: --tp x --pp = 2 is not --num-gpus 8; give one or the other"


def test_latency_can_run_the_layout_serve_picks(cli) -> None:
    """serve sizes a layout at the max_num_seqs its emitted line starts the engine with (vLLM's profile run samples that
    many requests): latency takes --max-num-seqs too, so serve's pick is reproducible; concurrency agrees on the KV."""
    best = cli("serve", "llama3-70b", "--gpu", "h100", "--json").json()["best"]
    tp, pp, batch = str(best["tp"]), str(best["pp"]), str(best["batch"])
    run = cli("latency", "llama3-70b", "--gpu", "h100", "--tp", tp, "--pp", pp, "--batch", batch, "--max-num-seqs", batch,
              "--json")
    assert run.code == 0 and run.json()["max_concurrency"] >= best["batch"]
    conc = cli("concurrency", "llama3-70b", "--gpu", "h100", "--tp", tp, "--pp", pp, "--max-num-seqs", batch, "--json").json()
    assert conc["kv_cache_tokens"] == best["kv_cache_tokens"]


def test_compare_rows_carry_serves_millisecond_keys(cli) -> None:
    row = cli("compare", "llama3-8b", "h100", "--json").json()[0]
    best = cli("serve", "llama3-8b", "--gpu", "h100", "--json").json()["best"]
    assert row["ttft_ms"] == pytest.approx(best["ttft_ms"]) and row["tpot_ms"] == pytest.approx(best["tpot_ms"])
    assert row["ttft_ms"] == pytest.approx(row["ttft_s"] * 1e3)


def test_dsa_indexer_is_timed_in_training() -> None:
    """DeepSeek-V3.2-Exp (61 sparse MLA layers, indexer 64 heads x 128, top-k 2,048) at s = 4,096 on one H100 rank:
    the indexer scores all 4,096 x 4,097 / 2 = 8,390,656 causal pairs at 2 x 64 x 128 = 16,384 FLOPs each in its
    forward, and its KL loss backs through the picked pairs only, 2,048 x 2,049 / 2 + 2,048 x 2,048 = 6,292,480, x 2;
    fp8 on Hopper halves the time at the attention kernel's rate. A dense-MLA model (V3) has no such term."""
    from pathlib import Path

    from calc.sources.catalog import load_gpu, load_model, load_system
    from calc.training.cost import ModelCost

    fixture = Path(__file__).resolve().parent / "fixtures" / "hf" / "deepseek-v3.2-exp.json"
    h100, node = load_gpu("h100"), load_system("dgx-h100")
    cost = ModelCost(load_model(str(fixture)), h100, node, 4096, "bf16")
    rate_fwd, rate_bwd = cost._attn_rates(1)
    fwd, bwd = cost.indexer_s(1, 1)
    assert fwd == pytest.approx(0.5 * 16_384 * 8_390_656 / rate_fwd, rel=1e-12)
    assert bwd == pytest.approx(0.5 * 2 * 16_384 * 6_292_480 / rate_bwd, rel=1e-12)
    assert ModelCost(load_model("deepseek-v3"), h100, node, 4096, "bf16").indexer_s(1, 1) == (0.0, 0.0)


def test_review_fixes_of_pass_19(cli) -> None:
    """The pass's own review: an assumed-MFU answer checks the fit with the run's dtype (an fp32 8B at 32K fits no
    layout on 2 H100s, as train-plan says); memory --mode infer reads --pp as latency does (8 GPUs, PP 2 -> TP 4);
    a full fp32 fine-tune keeps fp32 activations; --non-causal in flops names --attention-pairs full; report's
    --explain is refused with a document format."""
    fp32 = ["train-time", "llama3.1-8b", "--gpu", "h100", "--num-gpus", "2", "--seq", "32768", "--tokens", "1T",
            "--dtype", "fp32"]
    assert cli(*fp32, "--mfu", "0.3").code == 2 and cli(*fp32).code == 2
    mem = cli("memory", "llama3-70b", "--gpu", "h100", "--num-gpus", "8", "--pp", "2", "--json").json()
    lat = cli("latency", "llama3-70b", "--gpu", "h100", "--num-gpus", "8", "--pp", "2", "--json").json()
    assert (mem["tp"], mem["pp"]) == (lat["tp"], lat["pp"]) == (4, 2)
    ft = ["memory", "llama3-8b", "--mode", "finetune", "--method", "full", "--gpu", "h100", "--json"]
    assert cli(*ft, "--precision", "fp32").json()["per_gpu"]["activations"] > \
        1.5 * cli(*ft, "--precision", "mixed").json()["per_gpu"]["activations"]
    r = cli("flops", "llama3-8b", "--non-causal")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --non-causal") and "--attention-pairs full" in r.err
    r = cli("report", "llama3-8b", "--gpu", "h100", "--format", "markdown", "--explain")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --explain")


def test_fsdp_pp_keeps_the_sharded_parameters_of_a_recipe_without_a_master(cli) -> None:
    """torchtitan FSDP2 with PP, Llama 3 8B, PP 2 x DP 4, fp32-adam (no separate master): Adam m, v (8 B) and the
    sharded fp32 parameters (4 B) of the first stage's own parameters (16 layers x 218,112,000 + the embedding
    128,256 x 4,096 = 525,336,576 = 4,015,128,576; calc.memory.pipeline.stage_params), over DP 4:
    12 x 4,015,128,576 / 4 = 12,045,385,728 B (the gathered fp32 copy, 4 x 4,015,128,576, is the 'weights' part)."""
    d = cli("memory", "llama3-8b", "--mode", "train", "--num-gpus", "8", "--dtype", "fp32", "--global-batch", "16",
            "--stack", "fsdp", "--pp", "2", "--zero", "3", "--sharding", "fsdp-pp", "--json").json()
    stage = 16 * 218_112_000 + 128_256 * 4_096
    assert d["per_gpu"]["optimizer"] == 12 * stage // 4 and d["per_gpu"]["weights"] == 4 * stage


def test_compare_quotes_a_gpu_that_ran_when_none_meets_the_targets(cli) -> None:
    r = cli("compare", "llama3.1-405b", "t4", "h100", "--num-gpus", "1")  # the T4 runs it in fp16 (QA41 F13)
    assert r.code == 2 and "no GPU compared holds one request" in r.err and "bf16 tensor peak" not in r.err
    r = cli("compare", "gemma3-27b", "t4", "h100", "--num-gpus", "1", "--ttft-ms", "1")  # no fp16 Gemma 3: T4 idle
    assert r.code == 2 and ": h100-sxm:" in r.err and "bf16 tensor peak" not in r.err, r.err
