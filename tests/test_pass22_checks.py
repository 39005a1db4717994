"""Pass 22: a training plan that does not fit names the cheapest change that fits it on the same GPUs (ZeRO stage,
recomputation, micro-batch: calc.training.fixes), the same change in `train-step` and `memory --mode train`."""
from __future__ import annotations

import json

GIB = 2**30

# GPT-NeoX-20B's published layout (EleutherAI gpt-neox configs/20B.yml: TP 2, PP 4, micro-batch 4, global batch 1536,
# full recompute, ZeRO 1) on 96 A100-40GB, priced at train-step's default ZeRO 0
NEOX = ["gpt-neox-20b", "--gpu", "a100-40g", "--num-gpus", "96", "--tp", "2", "--pp", "4", "--micro-batch", "4",
        "--global-batch", "1536", "--recompute", "full", "--seq", "2048"]


def _step(cli, *args: str) -> dict:
    return cli("train-step", *args, "--json").json()


def test_train_step_names_zero_1_for_neox_20b_and_its_figure(cli) -> None:
    """ZeRO 0 keeps the fp32 master weights and both Adam moments (12 B per parameter) on every DP rank; ZeRO 1
    shards them over the DP 12 ranks, so the peak drops by 11/12 of that category (Rajbhandari et al. 2020, ZeRO,
    sec. 5.1, P_os), and the change that makes the published layout fit is the published one, --zero 1."""
    refused = cli("train-step", *NEOX)
    assert refused.code == 2
    assert "fits on these GPUs with --zero 1 (" in refused.err
    zero0 = _step(cli, *NEOX)
    zero1 = _step(cli, *NEOX, "--zero", "1")
    assert zero0["fits"] is False and zero1["fits"] is True
    assert zero0["fits_with"] and zero0["fits_with"][0].startswith("--zero 1 (")
    optimizer0 = zero0["memory_per_gpu"]["optimizer"]
    assert abs((zero0["memory_per_gpu_bytes"] - zero1["memory_per_gpu_bytes"]) - optimizer0 * 11 / 12) < 1e-6 * optimizer0
    figure = f"{zero1['memory_per_gpu_bytes'] / GIB:.1f} GiB per GPU, {zero1['step_time_s']:.3g} s per step"
    assert figure in zero0["fits_with"][0]


def test_memory_mode_train_names_the_same_change(cli) -> None:
    refused = cli("memory", *NEOX, "--mode", "train")
    assert refused.code == 2
    step = _step(cli, *NEOX)["fits_with"][0]
    flags = step.split(" (")[0]
    assert f"fits with {flags} (" in refused.err
    assert step.split(" (")[1].split(",")[0] in refused.err  # the same peak per GPU


def test_the_named_change_fits_and_no_rung_of_it_is_spare(cli) -> None:
    """llama3-8b at micro-batch 8 of 8,192 tokens on 8 A100-40GB (far over the card: 8 x 8,192 tokens of 32 layers
    of activations): the change named must fit when given to train-step, and taking any one of its rungs back must
    not fit (a spare rung would cost the step for nothing)."""
    base = ["llama3-8b", "--gpu", "a100-40g", "--num-gpus", "8", "--global-batch", "64", "--seq", "8192"]
    named = _step(cli, *base, "--micro-batch", "8")["fits_with"]
    assert named, "some change fits"
    flags = named[0].split(" (")[0].split()
    rungs = [flags[i:i + 2] for i in range(0, len(flags), 2)]
    assert len(rungs) >= 2

    def with_rungs(chosen: list[list[str]]) -> list[str]:
        args = [a for rung in chosen for a in rung]
        return args if "--micro-batch" in args else [*args, "--micro-batch", "8"]

    assert _step(cli, *base, *with_rungs(rungs))["fits"] is True
    for i in range(len(rungs)):
        assert _step(cli, *base, *with_rungs(rungs[:i] + rungs[i + 1:]))["fits"] is False, rungs[i]


def test_no_change_fits_says_raise_tp_or_pp(cli) -> None:
    """Llama 3 70B on one node at TP 8 and DP 1: ZeRO shards nothing with one DP rank and 70B x 16 B / 8 = 140 GB per
    GPU of states alone is over 80 GB whatever the recomputation: the answer is a new layout, not a flag."""
    args = ["llama3-70b", "--gpu", "h100", "--num-gpus", "8", "--tp", "8", "--global-batch", "8"]
    r = cli("train-step", *args)
    assert r.code == 2 and "raise --tp or --pp, or try train-plan" in r.err
    assert _step(cli, *args)["fits_with"] == []
    m = cli("memory", *args, "--mode", "train")
    assert m.code == 2 and "raise --tp or --pp, or try train-plan" in m.err


def test_show_takes_a_node_name(cli) -> None:
    """`show dgx-h100` shows the node as `show h100` shows the GPU: the DGX H100 datasheet's 8 x H100 SXM5 and 900 GB/s
    NVLink (bidirectional: 450 GB/s per direction), its --yaml a spec --system takes back."""
    r = cli("show", "dgx-h100", "--json")
    assert r.code == 0
    node = json.loads(r.out)
    assert node["gpus_per_node"] == 8 and node["gpu"] == "h100-sxm" and node["intra_node_gb_s"] == 450
    text = cli("show", "dgx-h100")
    assert text.code == 0 and "450" in text.out


def test_show_yaml_of_a_node_round_trips_through_system(cli, tmp_path) -> None:
    spec = tmp_path / "node.yaml"
    spec.write_text(cli("show", "dgx-h100", "--yaml").out)
    args = ["llama3-8b", "--gpu", "h100", "--num-gpus", "16", "--global-batch", "32", "--zero", "3", "--json"]
    mine = json.loads(cli("train-step", *args, "--system", str(spec)).out)
    shipped = json.loads(cli("train-step", *args).out)
    assert mine["system"] == "dgx-h100" and mine["step_time_s"] == shipped["step_time_s"]


def test_fsdp_units_in_flight_gather_only_the_local_experts() -> None:
    """ZeRO-3 / FSDP2 with expert parallelism: a block's routed experts stay EP-sharded (torchtitan shards them as their
    own unit over the ranks beside EP; NeMo AutoModel keeps them out of the block's fully_shard), so a block unit in
    flight holds its other parameters plus experts / EP. Qwen3-30B-A3B by hand (config.json: H 2048, 32 heads and 4 KV
    heads of 128, 128 experts of I_e 768, vocabulary 151,936, untied head):
      block: q 2048 x 4096 + k, v 2 x 2048 x 512 + o 4096 x 2048 + q/k norms 2 x 128 + two norms 2 x 2048 + router
             2048 x 128 = 19,140,864, experts 128 x 3 x 2048 x 768 = 603,979,776
      two blocks gathered in bf16 (2 x 2 B) + one fp32 reduce buffer (4 B): 8 B per block parameter
      root (embedding + head + final norm): 2 x 151,936 x 2048 + 2048 = 622,331,904, gathered once + reduced: 6 B
    EP 1: 8 x 623,120,640 = 4,984,965,120 (blocks over the root's 3,733,991,424);
    EP 8: blocks 8 x (19,140,864 + 603,979,776 / 8) = 757,106,688, under the root: 3,733,991,424."""
    from calc.memory.training import fsdp_in_flight_bytes
    from calc.sources.catalog import load_model

    m = load_model("qwen3-30b-a3b")
    assert fsdp_in_flight_bytes(m, 1, ep=1) == 4_984_965_120
    assert fsdp_in_flight_bytes(m, 1, ep=8) == 3_733_991_424


def test_nemo_automodel_prices_as_fsdp_and_runs_fsdp_under_pp() -> None:
    """NeMo AutoModel (FSDP2 stages under torch.distributed.pipelining) is the fsdp stack, and a corpus row of it with
    FSDP and PP > 1 takes the fsdp-pp sharding as torchtitan's do (not refused as ZeRO-3 with PP)."""
    from types import SimpleNamespace

    from benchmarks.corpus_knobs import training_layout
    from calc.memory.training import FSDP_PP
    from calc.training.stack import stack_key

    assert stack_key("nemo-automodel") == "fsdp"
    row = SimpleNamespace(stack=SimpleNamespace(name="nemo-automodel"), hardware=SimpleNamespace(num_gpus=256),
                          config={}, assumed={})
    lay, batch = training_layout(row, {"tp": 1, "pp": 4, "ep": 64, "micro_batch": 1, "global_batch": 512, "fsdp": True})
    assert lay["sharding"] == FSDP_PP and lay["zero"] == 3 and lay["dp"] == 64 and batch == 512
