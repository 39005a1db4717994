"""Plan search: TP 8 inside a node for Llama 3.1 405B on 16,384 H100s; EP considered for MoE models."""

from __future__ import annotations

import pytest

from calc.errors import LLMCalcError
from calc.sources.catalog import load_gpu, load_model, load_system
from calc.training.cost import ModelCost
from calc.training.plan import SearchSpace, enumerate_fitting, search_plans


def test_405b_on_16k_h100_lists_tp8_inside_a_node() -> None:
    cost = ModelCost(load_model("llama3.1-405b"), load_gpu("h100"), load_system("dgx-h100"), 8192)
    r = search_plans(cost, 16384, 2048)
    assert len(r.plans) == 10
    assert all(p.fits and p.tp <= 8 for p in r.plans)  # TP stays inside an 8-GPU node
    assert any(p.tp == 8 for p in r.plans)
    times = [p.step_time_s for p in r.plans]
    assert times == sorted(times)
    for p in r.plans:  # 126 layers: weights alone (405.9e9 x 2 B / (t x p)) must leave room
        assert p.tp * p.pp * p.dp * p.cp == 16384
        assert p.memory_per_gpu_bytes <= p.gpu_memory_bytes


@pytest.mark.parametrize(("name", "gpu", "system", "gpus"), [
    ("mixtral-8x7b", "h100", "dgx-h100", 64), ("deepseek-v3", "h800", "hgx-h800", 2048),
])
def test_moe_models_consider_expert_parallelism(name: str, gpu: str, system: str, gpus: int) -> None:
    # balanced routing (expert_load_cv 0): with 8 experts an EP-8 rank holds one, and the default imbalance prior
    # (calc.training.cost ep_imbalance, 1.61 at EP 8) ranks TP ahead; this checks that the search weighs EP at all
    from calc.training.cost import Efficiencies
    cost = ModelCost(load_model(name), load_gpu(gpu), load_system(system), 4096, eff=Efficiencies(expert_load_cv=0.0))
    r = search_plans(cost, gpus, 1024)
    assert r.plans and any(p.ep > 1 for p in r.plans)


def test_pinned_degree_and_no_fit_message() -> None:
    cost = ModelCost(load_model("llama3-70b"), load_gpu("h100"), load_system("dgx-h100"), 8192)
    r = search_plans(cost, 64, 64, space=SearchSpace(fixed=(("tp", 4),)))
    assert r.plans and all(p.tp == 4 for p in r.plans)
    big = ModelCost(load_model("llama3.1-405b"), load_gpu("h100"), load_system("dgx-h100"), 8192)
    none = search_plans(big, 8, 8)
    assert none.plans == [] and none.verdict.startswith("does not fit: no layout")
    # the count it names fits (memory check) and half of it does not: 405B x 16 B of states alone is 6.5 TB,
    # more than 8 x 80 GB; the verdict names the doubling that first fits
    more = int(none.verdict.rsplit("fits on ", 1)[1].split(" GPUs")[0])
    assert enumerate_fitting(big, more, 8, SearchSpace())[1] and not enumerate_fitting(big, more // 2, 8, SearchSpace())[1]
    assert 405e9 * 16 / (80e9 * more) < 1  # the states fit once sharded over that many GPUs
    with pytest.raises(LLMCalcError, match="--num-gpus"):
        search_plans(big, 0, 8)


def test_default_global_batch() -> None:
    from calc.training.plan import default_global_batch

    assert default_global_batch(4096, 64) == 1024  # 4M tokens / 4096 = 1024 sequences
    assert default_global_batch(8192, 16384) == 2048  # past 8 x 512 GPUs: one sequence per 8 GPUs (16,384 / 8)
    assert default_global_batch(4096, 264) == 1056  # 1,024 rounded up to a multiple of 264: 4 x 264 (8 x 33 GPUs)
    assert default_global_batch(4096, 1032) == 1032  # one sequence per GPU: the smallest multiple of 1,032 >= 1,024
    assert default_global_batch(8192, 4096) == 4096  # 8 x 512 = 4,096 GPUs is the last count at one per GPU
