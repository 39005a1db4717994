"""Findings of the pass-37 hostile QA sweep mended in pass 38, each checked against an independent path."""

from __future__ import annotations


def test_latency_says_in_json_whether_the_ttft_target_is_met(cli) -> None:
    """--ttft-ms in latency checks one deployment, as serve's layouts do (``meets_targets``): the JSON carries the
    target and whether the modelled TTFT is at or under it; without --ttft-ms both are null, and a deployment that
    does not fit has no TTFT to compare (null, as its times)."""
    run = ("latency", "llama3-8b", "--gpu", "h100", "--json")
    ttft = cli(*run).json()["ttft_s"]
    below, above = cli(*run, "--ttft-ms", f"{ttft * 1e3 * 0.9:.6f}").json(), cli(*run, "--ttft-ms", f"{ttft * 1e3 * 1.1:.6f}").json()
    assert below["meets_targets"] is False and above["meets_targets"] is True
    assert abs(above["target_ttft_s"] / (ttft * 1.1) - 1) < 1e-6
    none = cli(*run).json()
    assert none["meets_targets"] is None and none["target_ttft_s"] is None
    unfit = cli("latency", "llama3-70b", "--gpu", "h100", "--ttft-ms", "50", "--json")
    assert unfit.code == 2 and unfit.json()["meets_targets"] is None and unfit.json()["ttft_s"] is None
