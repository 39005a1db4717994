"""--capacity-factor caps an expert's load (Megatron --moe-expert-capacity-factor drops the overflow beyond cf x the
balanced share): under dropless routing it never adds work; under token-drop routing every expert is padded to it
(QA finding: cf 4 multiplied the busiest expert's rows by 4 x the imbalance, 14.0 -> 47.5 s)."""

from __future__ import annotations

ARGS = ["train-step", "mixtral-8x7b", "--gpu", "h100", "--tp", "2", "--ep", "4", "--dp", "8", "--sp", "--zero", "1",
        "--global-batch", "256", "--json"]


def _step(cli, *extra: str) -> float:
    r = cli(*ARGS, *extra)
    assert r.code == 0, r.err
    return r.json()["step_time_s"]


def test_a_capacity_never_adds_work_to_dropless_routing(cli) -> None:
    dropless = _step(cli)
    assert _step(cli, "--capacity-factor", "4") <= dropless
    assert _step(cli, "--capacity-factor", "1") < dropless  # a cap at the balanced share drops the busiest's overflow


def test_token_drop_pads_every_expert_to_its_capacity(cli) -> None:
    low, high = (_step(cli, "--moe-routing", "token-drop", "--capacity-factor", cf) for cf in ("1", "2"))
    assert high > low
