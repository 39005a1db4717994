"""One capacity per GPU in every command: what CUDA reports (torch.cuda.mem_get_info()[1], GPUSpec.cuda_total_bytes),
which the serving engines budget on and a training process allocates from (its CUDA context comes out of it too). The
training, fine-tuning and `memory` fits used nvidia-smi's larger total (H100 SXM 81,559 MiB against CUDA's 81,105:
the driver's reserve, deviceQuery), so a job between the two was "fits" in `memory` and refused by the engines
(QA finding)."""

from __future__ import annotations

H100_CUDA_TOTAL = 81_105 * 2**20  # hardware_specs/h100-sxm.yaml memory_cuda_total_mib (deviceQuery)


def test_memory_training_and_serving_read_one_capacity(cli) -> None:
    train = cli("memory", "llama3-8b", "--mode", "train", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--json")
    tune = cli("memory", "llama3-8b", "--mode", "finetune", "--method", "full", "--gpu", "h100", "--num-gpus", "8", "--json")
    infer = cli("memory", "llama3-8b", "--mode", "infer", "--gpu", "h100", "--json")
    step = cli("train-step", "llama3-8b", "--gpu", "h100", "--num-gpus", "8", "--zero", "3", "--global-batch", "64",
               "--json")
    serve = cli("concurrency", "llama3-8b", "--gpu", "h100", "--json")
    assert {r.json()["gpu_memory_bytes"] for r in (train, tune, infer, step)} == {H100_CUDA_TOTAL}
    assert serve.json()["capacity_bytes"] == H100_CUDA_TOTAL


def test_a_job_between_the_two_totals_does_not_fit(cli) -> None:
    # llama3-70b at 32K, ZeRO-3, full recompute, DP 136: its need sits between CUDA's 79.20 GiB and nvidia-smi's
    # 79.65 GiB (the bounds asserted below), so it does not fit the memory a process can allocate
    step = cli("train-step", "llama3-70b", "--gpu", "h100-sxm", "--num-gpus", "136", "--dp", "136", "--micro-batch", "1",
               "--global-batch", "136", "--tp", "1", "--pp", "1", "--zero", "3", "--recompute", "full", "--seq", "32768",
               "--json")
    need = step.json()["memory_per_gpu_bytes"]
    assert H100_CUDA_TOTAL < need <= 81_559 * 2**20
    assert step.code == 2 and step.json()["fit"] == "does not fit"


def test_lora_fit_names_the_other_stacks_figure_both_ways(cli) -> None:
    """QA finding: qwen3-30b-a3b LoRA on one H100 'fits' in train-step (its default stack, megatron) and 'does not fit'
    in memory --mode finetune (its default, hf), neither naming the other's figure. Each now prints the other's."""
    step = cli("train-step", "qwen3-30b-a3b", "--gpu", "h100", "--num-gpus", "1", "--method", "lora", "--global-batch",
               "1", "--json").json()
    tune = cli("memory", "qwen3-30b-a3b", "--mode", "finetune", "--method", "lora", "--gpu", "h100", "--json").json()
    megatron = cli("memory", "qwen3-30b-a3b", "--mode", "finetune", "--method", "lora", "--gpu", "h100", "--stack",
                   "megatron", "--json").json()
    assert step["memory_per_gpu_bytes"] == megatron["per_gpu_bytes"]  # one engine: the same job, the same stack
    assert f"this job peaks at {megatron['per_gpu_bytes'] / 2**30:.2f} GiB" in tune["stack_note"]
    assert tune["stack_note"].startswith("under --stack megatron")
    note = next(a for a in step["assumptions"] if a.startswith("under --stack hf"))
    assert f"this job peaks at {tune['per_gpu_bytes'] / 2**30:.2f} GiB" in note
