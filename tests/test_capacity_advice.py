"""A refusal names the change that fits: the engine launched for the batch (--max-num-seqs), or a shorter context."""

from __future__ import annotations


def test_latency_names_max_num_seqs_when_launching_for_the_batch_fits(cli) -> None:
    # vLLM sizes its profile run for max_num_seqs sequences (1,024 by default): the same GPU launched for 349 keeps
    # more memory for KV. So 349 requests that the default launch cannot hold fit with --max-num-seqs 349.
    r = cli("latency", "llama3-8b", "--gpu", "h100", "--batch", "349")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --max-num-seqs:") and "with --max-num-seqs 349" in r.err
    ok = cli("latency", "llama3-8b", "--gpu", "h100", "--batch", "349", "--max-num-seqs", "349", "--json")
    assert ok.code == 0 and ok.json()["fits"]


def test_concurrency_names_a_context_that_fits(cli) -> None:
    r = cli("concurrency", "gpt-oss-120b", "--gpu", "h100")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --max-model-len:")
    hint = r.err.split("--max-model-len ")[-1]  # "32,768 holds 2; ..."
    length, held = hint.split(" holds ")[0].replace(",", ""), int(hint.split(" holds ")[1].split(";")[0])
    again = cli("concurrency", "gpt-oss-120b", "--gpu", "h100", "--max-model-len", length, "--json").json()
    assert again["max_concurrency"] >= held >= 1


def test_report_json_answers_a_deployment_that_does_not_fit(cli) -> None:
    # as latency and concurrency: the page on stdout with fits false, then one refusal line on stderr and exit 2
    r = cli("report", "llama3.1-405b", "--gpu", "h100", "--num-gpus", "8", "--json")
    assert r.code == 2 and r.json()["fits"] is False and r.json()["fit"] == "does not fit"
    assert r.err.startswith("llmcalc: error: --num-gpus: does not fit")


def test_report_names_its_own_flag(cli) -> None:
    # report takes serve's engine settings (--max-num-seqs among them): its refusal names the flag that fits, as
    # latency's does, and the page fits once it is given
    r = cli("report", "llama3-8b", "--gpu", "h100", "--batch", "349")
    assert r.code == 2 and r.err.startswith("llmcalc: error: --max-num-seqs:") and "with --max-num-seqs 349" in r.err
    assert cli("report", "llama3-8b", "--gpu", "h100", "--batch", "349", "--max-num-seqs", "349").code == 0
