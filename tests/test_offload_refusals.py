"""--offload-modules that could move nothing are refused (every option changes the answer or is refused)."""

from __future__ import annotations


def test_module_offload_under_full_recompute_is_refused(cli) -> None:
    # full recomputation keeps each layer's input only: a module's input is not saved, so offloading it frees nothing
    r = cli("train-step", "llama3-8b", "--gpu", "h100", "--dp", "8", "--global-batch", "64", "--zero", "1", "--recompute",
            "full", "--offload-modules", "qkv_linear")
    assert r.code == 2 and "--offload-modules" in r.err and "--recompute full" in r.err


def test_expert_modules_on_a_dense_model_are_refused(cli) -> None:
    r = cli("memory", "llama3-70b", "--gpu", "h100", "--mode", "train", "--tp", "8", "--dp", "8", "--zero", "1",
            "--offload-modules", "expert_fc1")
    assert r.code == 2 and "no routed experts" in r.err


def test_module_offload_still_moves_bytes_where_inputs_are_saved(cli) -> None:
    base = ("memory", "llama3-8b", "--gpu", "h100", "--mode", "train", "--dp", "8", "--zero", "1", "--json")
    plain = cli(*base).json()["per_gpu_bytes"]
    offloaded = cli(*base, "--offload-modules", "qkv_linear").json()["per_gpu_bytes"]
    assert offloaded < plain
