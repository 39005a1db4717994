"""Findings mended in pass 43, each checked against an independent path (an engine's source, a hand count)."""

from __future__ import annotations


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
