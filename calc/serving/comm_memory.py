"""GPU memory a serving engine's communication stack holds on each rank when the model is split (TP / PP / EP > 1).

Where ServingAssumptions.comm_buffer_gib is given, it is the answer. Otherwise, on an NVLink / NVSwitch node (the
node type calc.sources.catalog.system_for_gpu finds for the GPU names "NVSwitch" or "NVLink Switch"), the bytes NCCL
allocates, read in NVIDIA/nccl's source (tags v2.18.1-1 to v2.30.7-1):

  per NCCL communicator of n ranks in one node
    ring + tree  = C x S(n) x connection
      LL     = NCCL_LL_LINES_PER_THREAD 8 x NCCL_LL_MAX_NTHREADS 512 x NCCL_STEPS 8 x 16 B   =   524,288 B
      LL128  = NCCL_LL128_ELEMS_PER_THREAD 120 x NCCL_LL128_MAX_NTHREADS 640 x 8 steps x 8 B = 4,915,200 B
      Simple = NCCL_BUFFSIZE default 4 MiB                                                  = 4,194,304 B
               (src/include/device.h; src/init.cc DEFAULT_*_BUFFSIZE): 9,633,792 B of protocol buffers per
               connection (the 9.19 MiB per proxy connection users measure).
      connection = what the P2P transport allocates for it on the two ranks it joins (src/transport/p2p.cc
               p2pSendSetup / p2pRecvSetup in v2.18.1-1, v2.19.3-1, v2.20.5-1, v2.21.5-1, v2.22.3-1, v2.26.2-1;
               the same with the cuMem path off, as vLLM runs NCCL: NCCL_CUMEM_ENABLE=0 in vllm/worker/worker_base.py
               0.4.3 - 0.5.3 and vllm/env_override.py 0.9.2): the sender a ncclSendMem
               header, plus the Simple buffer when P2P read is on; the receiver a ncclRecvMem header plus the other
               protocols' buffers; each size rounded up by ALIGN_SIZE(size, CUDA_IPC_MIN) (src/include/comm.h:
               CUDA_IPC_MIN 2,097,152; both headers are unions padded to MEM_ALIGN 4,096 B). P2P read is on only
               between two GPUs of compute capability 8.0 on NVLink (src/graph/paths.cc ncclTopoCheckP2p):
                 A100 (read)   align(4,096 + 4,194,304) + align(4,096 + 524,288 + 4,915,200) = 6 MiB + 6 MiB
                 others        align(4,096)             + align(4,096 + 9,633,792)           = 2 MiB + 10 MiB
               = 12,582,912 B (12 MiB) a connection either way, a rank holding the send side of one and the
               receive side of another per ring / tree link.
      S(n)   = connections a rank holds per channel, the busiest rank: ring 1 (its predecessor) + tree 2 (a chain
               inside one node: parent and child) for n > 2, tree 1 for n = 2.
      C      = collective channels: 24 on H100 / H200-class NVSwitch nodes (18 NVLinks; NCCL INFO "24 coll channels,
               24 collnet channels, 16 nvls channels, 32 p2p channels" on 8 x H100), 16 on nodes of fewer links or
               Ampere (NVIDIA/nccl issue #892, H800: "16 coll channels, 0 nvls channels").
    NVLS (NVLink SHARP multicast; Hopper / Blackwell with NVSwitch, n > 2: src/transport/nvls.cc ncclNvlsInit
      "gpuCount <= 2" returns without it) = NVLS channels x 2 x per-channel buffer x n heads
      (ncclNvlsBufferSetup: nvlsPerRankSize = nChannels x 2 x buffSize, nvlsTotalSize = nvlsPerRankSize x nHeads):
      channels NVLS_NCHANNELS_SM90 16, SM100 24 in one node (NVLS_NCHANNELS_SM100_NVL, 2.27+); per-channel buffer
      by NCCL release: <= 2.20 NCCL_BUFFSIZE 4 MiB + NVLS_MEM_ALIGN_SIZE 2 MiB of credits, 2.21 NCCL_NVLS_CHUNKSIZE
      128 KiB x 8 steps = 1 MiB + 2 MiB, >= 2.22 1 MiB (credits moved to their own 64-B-per-channel allocation).
      Channels counted in that size by release: 2.20.x and 2.21.x size it by the communicator's collective
      channels, not its NVLS channels (v2.20.5-1 / v2.21.5-1 ncclNvlsSetup: "int nChannels = comm->nChannels;
      ... nvlsPerRankSize = nChannels * 2 * (buffSize + memSize)", called after ncclTopoPostset has set the C
      collective channels); 2.18, 2.19 (nChannels = comm->nvlsChannels) and >= 2.22 (ncclNvlsBufferSetup:
      nvlsResources->nChannels) use the NVLS channel count.
      An 8 x H100 log agrees: "NVLS comm ... nHeads 8 buffSize 1048576 nvlsPerRankSize 33554432 nvlsTotalSize
      268435456" (16 x 2 x 1 MiB x 8 = 256 MiB).
  communicators: 2 on the TP ranks, the tensor-parallel GroupCoordinator's torch.distributed ProcessGroupNCCL
    (device_group) and its PyNcclCommunicator (vllm/distributed/parallel_state.py, device_communicators/pynccl.py;
    SGLang's python/sglang/srt/distributed/parallel_state.py is the same code).
  NVLS by engine: vLLM leaves NCCL's default (NCCL_NVLS_ENABLE 2: on where the hardware supports it; vllm-project/
    vllm issue #9699 measures it on 8 x H200); SGLang sets NCCL_NVLS_ENABLE=0 unless --enable-nccl-nvls
    (sgl-project/sglang PR #631 "Disable NCCL_NVLS by default", PR #3502 enable_nccl_nvls default False).
  NCCL release by vLLM release (the torch each pins, and the nvidia-nccl-cu12 that torch pins): < 0.6.4 torch <= 2.4,
    NCCL 2.20.5; 0.6.4 - 0.8.x torch 2.5 / 2.6, NCCL 2.21.5; >= 0.9 torch >= 2.7, NCCL >= 2.26.
  custom all-reduce (vLLM vllm/distributed/device_communicators/custom_all_reduce.py, SGLang's copy; NVLink nodes
    only): max_size 8 MiB of buffer, 8 MiB + meta of signal buffer, 8 MiB of rank_data: 24 MiB.

Worked: H100 TP4 under vLLM >= 0.9: 2 x 24 x 3 x 12 MiB = 1,811,939,328 B ring / tree + 2 x 16 x 2 x 1 MiB x 4 =
268,435,456 B NVLS + 25,165,824 B custom all-reduce = 2,105,540,608 B (1.96 GiB); SGLang (no NVLS) 1.71 GiB;
TP2 (no NVLS) 2 x 24 x 2 x 12 MiB + 24 MiB = 1.15 GiB. H100 TP8 under vLLM 0.5.3 (NCCL 2.20.5): NVLS
2 x 24 collective channels x 2 x (4 + 2) MiB x 8 heads = 4.5 GiB.

Nodes without NVLink (PCIe: NCCL logs "2 coll channels", ~0.1 GiB of these buffers) and AMD (RCCL, not read) keep
the flat PCIE_COMM_GIB, the non-torch memory vLLM 0.7.2 logs on 2 x RTX 4090 at TP2 ("non_torch_memory takes
0.25GiB", vllm-project/vllm issue #13061).
"""

from __future__ import annotations

import re

from calc.specs import GPUSpec
from calc.units import GIB, MIB

LL_BYTES = 8 * 512 * 8 * 16
LL128_BYTES = 120 * 640 * 8 * 8
SIMPLE_BYTES = 4 * MIB
CONNECTION_BYTES = LL_BYTES + LL128_BYTES + SIMPLE_BYTES  # 9,633,792 B of protocol buffers
CONN_HEADER_BYTES = 4096  # sizeof(ncclSendMem) = sizeof(ncclRecvMem) = MEM_ALIGN (src/include/comm.h)
CUDA_IPC_MIN = 2 * MIB  # p2p.cc rounds each side's allocation up to it (src/include/comm.h)
P2P_READ_ARCHS = ("Ampere",)  # compute capability 8.0 (A100 / A800), the only NVSwitch Ampere parts
NVLS_SIZED_BY_COLL_CHANNELS = ((2, 20), (2, 22))  # NCCL releases whose NVLS buffers count the collective channels
COMMUNICATORS = 2  # the TP group's ProcessGroupNCCL and PyNcclCommunicator
COLL_CHANNELS = {"nvswitch": 24, "nvswitch-narrow": 16}
NVLS_CHANNELS = {"Hopper": 16, "Blackwell": 24}
CUSTOM_ALLREDUCE_BYTES = 3 * 8 * MIB
PCIE_COMM_GIB = 0.25
NVLS_ARCHS = ("Hopper", "Blackwell")


def nvls_channel_bytes(nccl: tuple[int, ...]) -> int:
    """Bytes of one NVLS channel's buffers per head, both directions (ncclNvlsBufferSetup by release, above)."""
    if nccl < (2, 21):
        return 2 * (SIMPLE_BYTES + 2 * MIB)
    if nccl < (2, 22):
        return 2 * (1 * MIB + 2 * MIB)
    return 2 * 1 * MIB


def _ipc_aligned(size: int) -> int:
    """``size`` rounded up to CUDA_IPC_MIN (p2p.cc ALIGN_SIZE(size, CUDA_IPC_MIN))."""
    return -(-size // CUDA_IPC_MIN) * CUDA_IPC_MIN


def connection_bytes(p2p_read: bool) -> int:
    """Bytes one P2P connection allocates, its send side plus its receive side (module docstring): 12 MiB with
    NCCL's default buffer sizes, with or without P2P read."""
    send = CONN_HEADER_BYTES + (SIMPLE_BYTES if p2p_read else 0)
    recv = CONN_HEADER_BYTES + LL_BYTES + LL128_BYTES + (0 if p2p_read else SIMPLE_BYTES)
    return _ipc_aligned(send) + _ipc_aligned(recv)


def nvls_channels(gpu: GPUSpec, coll_channels: int, nccl: tuple[int, ...]) -> int:
    """Channels NCCL sizes its NVLS buffers by: the collective channels in 2.20.x - 2.21.x, else the NVLS channels."""
    first, until = NVLS_SIZED_BY_COLL_CHANNELS
    return coll_channels if first <= nccl < until else NVLS_CHANNELS[gpu.arch]


def nccl_release(engine: str, version: tuple[int, ...]) -> tuple[int, ...]:
    """The NCCL a vLLM release runs (via its torch pin, above); others: a current NCCL (>= 2.22)."""
    if engine.startswith("vllm"):
        if version < (0, 6, 4):
            return (2, 20, 5)
        if version < (0, 9):
            return (2, 21, 5)
    return (2, 26, 2)


def nvswitch_links(gpu: GPUSpec) -> int | None:
    """NVLinks per GPU of the GPU's NVSwitch node, 0 where the node has no NVSwitch, None where no node ships."""
    from calc.sources.catalog import system_for_gpu

    system = system_for_gpu(gpu)
    if system is None:
        return None
    link = system.intra_node_link
    if "NVSwitch" not in link and "NVLink Switch" not in link:
        return 0
    hit = re.search(r"(\d+) links", link)
    return int(hit.group(1)) if hit else 18


def comm_buffer_bytes(gpu: GPUSpec, ranks: int, engine: str, version: tuple[int, ...],
                      given_gib: float | None) -> tuple[int, str]:
    """(bytes, --explain text) of the communication memory on one rank of ``ranks`` TP ranks (module docstring)."""
    if given_gib is not None:
        return int(given_gib * GIB), f"{given_gib:g} GiB communication buffers (given)"
    links = nvswitch_links(gpu) if gpu.vendor == "NVIDIA" else None
    if not links:
        return int(PCIE_COMM_GIB * GIB), f"{PCIE_COMM_GIB:g} GiB communication buffers (no NVSwitch node: flat)"
    channels = COLL_CHANNELS["nvswitch" if links >= 18 and gpu.arch in NVLS_ARCHS else "nvswitch-narrow"]
    sets = 1 + (2 if ranks > 2 else 1)
    connection = connection_bytes(gpu.arch in P2P_READ_ARCHS)
    ring_tree = COMMUNICATORS * channels * sets * connection
    nvls_on = gpu.arch in NVLS_ARCHS and ranks > 2 and engine != "sglang"
    nccl = nccl_release(engine, version)
    nvls = COMMUNICATORS * nvls_channels(gpu, channels, nccl) * nvls_channel_bytes(nccl) * ranks if nvls_on else 0
    total = ring_tree + nvls + CUSTOM_ALLREDUCE_BYTES
    release = ">= 2.22" if nccl >= (2, 22) else ".".join(map(str, nccl))
    line = (f"{total / GIB:.2f} GiB communication buffers (NCCL {release}: {COMMUNICATORS} communicators x "
            f"{channels} channels x {sets} connections x {connection / MIB:.0f} MiB"
            + (f" + NVLS {nvls / GIB:.2f} GiB" if nvls else (", NVLS off" if ranks > 2 else ""))
            + f" + custom all-reduce {CUSTOM_ALLREDUCE_BYTES // MIB} MiB; calc.serving.comm_memory)")
    return total, line
