"""train-time states its plan's global batch, and warns where the default batch falls as GPUs are added.

The default (calc.training.plan.default_global_batch) is B0 = 4M tokens / --seq rounded up to a multiple of the GPUs,
one sequence per GPU up to N = 8 B0, then one sequence per 8 GPUs. At --seq 8,192, B0 = 2^22 / 2^13 = 512, so 4,096
GPUs run 4,096 sequences (one each) and 4,200 GPUs ceil(4,200 / 8) = 525: every sequence is split over 8 GPUs and the
run is slower on more GPUs. Found by sweeping --num-gpus (pass 32): 4,096 GPUs 4.5 days, 4,200 GPUs 6.6 days."""

from __future__ import annotations

from calc.training.plan import default_batch_drop_warning

TOKENS = 15e12


def _time(cli, *extra: str):  # noqa: ANN001, ANN202
    r = cli("train-time", "llama3-8b", "--gpu", "h100", "--tokens", "15T", "--seq", "8192", "--json", *extra)
    assert r.code == 0, r.err
    return r


def test_the_json_states_the_plans_global_batch_and_step(cli) -> None:  # noqa: ANN001
    at_edge = _time(cli, "--num-gpus", "4096")
    d = at_edge.json()
    assert d["global_batch"] == 4096 and d["global_batch_tokens"] == 4096 * 8192 == 33_554_432
    # the days are the plan's steps: 15T / (4,096 x 8,192) steps of step_time_s each
    steps = TOKENS / d["global_batch_tokens"]
    assert abs(steps * d["step_time_s"] / 86400 - d["days"]) / d["days"] < 0.005
    assert "--global-batch" not in at_edge.err
    past = _time(cli, "--num-gpus", "4200")
    assert past.json()["global_batch"] == 525  # ceil(4,200 / 8)
    assert "--global-batch: the default is 525 sequences here" in past.err
    assert "below the 4,096 it is on 4,096 GPUs" in past.err
    # the warning names a real effect: the same model trains slower on the 104 GPUs more
    assert past.json()["days"] > d["days"]


def test_a_given_batch_or_an_assumed_mfu_is_not_warned(cli) -> None:  # noqa: ANN001
    given = _time(cli, "--num-gpus", "4200", "--global-batch", "4200")
    assert given.json()["global_batch"] == 4200 and "--global-batch:" not in given.err
    assumed = _time(cli, "--num-gpus", "4200", "--mfu", "0.4")
    d = assumed.json()
    assert d["global_batch"] is None and d["step_time_s"] is None and "--global-batch:" not in assumed.err


def test_the_warning_holds_only_below_the_edges_batch() -> None:
    # 4,097 GPUs: ceil(4,097 / 8) = 513 < 4,096; 32,768 GPUs: 4,096, the edge's batch again; 40,000: 5,000 above it
    assert default_batch_drop_warning(8192, 4097) is not None
    assert default_batch_drop_warning(8192, 32768) is None
    assert default_batch_drop_warning(8192, 40000) is None
    # at --seq 4,096 the edge is 8 x 1,024 = 8,192 GPUs: 8,192 run one sequence each, 8,200 run 1,025
    assert default_batch_drop_warning(4096, 8192) is None
    assert "the default is 1,025 sequences here" in default_batch_drop_warning(4096, 8200)
