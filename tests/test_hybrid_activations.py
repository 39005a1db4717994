"""Training activations of hybrid models layer kind by layer kind (calc.memory.hybrid_layers): a Mamba-2 or Gated
DeltaNet mixer's own saved tensors, and the attention / MLP tensors only on the layers that have them. Hand numbers
from the published configs (Nemotron-H 8B: H 4096, 24 Mamba-2 blocks of 128 heads x 64, 8 groups, state 128; 24
MLP blocks of I 21504, squared ReLU; 4 attention blocks of 32 heads x 128, 8 KV heads; one norm a block. Qwen3-Next
80B: H 2048, 36 Gated DeltaNet layers of 32 value heads x 128, 16 key heads x 128, chunk 64) and the save lists of
Megatron-Core's MambaMixer / mamba_ssm's MambaSplitConv1dScanCombinedFn and fla's ChunkGatedDeltaRuleFunction."""

from __future__ import annotations

from calc.memory.activations import LayerSetup, layer_buffers
from calc.memory.hybrid_layers import is_hybrid, mixer_buffers
from calc.sources.catalog import load_model

TOKENS = 8192


def test_a_mamba2_mixer_keeps_4h_plus_10d_a_token_beside_its_norm() -> None:
    """Per token in bf16: norm input 2H + 4 (fp32 1/rms), in_proj input 2H, zxbcdt 2(2D + 2GN + nh), the ungated and the
    gated y 2 x 2D, the gated norm's fp32 1/rms 4G, out_proj input 2D: 4H + 4 + 10D + 4GN + 2nh + 4G =
    16,388 + 81,920 + 4,096 + 256 + 32 = 102,692 B with the block's norm."""
    m = load_model("nemotron-h-8b")
    H, D, G, N, nh = 4096, 128 * 64, 8, 128, 128
    per_token = 4 * H + 4 + 10 * D + 4 * G * N + 2 * nh + 4 * G
    assert per_token == 102_692
    mixer = sum(b.bytes for b in mixer_buffers(m, TOKENS, LayerSetup(full=True)))
    assert mixer + TOKENS * (2 * H + 4) == TOKENS * per_token


def test_a_gated_deltanet_mixer_keeps_fla_s_save_list() -> None:
    """fla's GatedDeltaNet layer per token in bf16 (d 2048, Kd = 16 x 128, Vd = 32 x 128, Hk 16, HV 32, BT 64):
    2d + 8Kd + 10Vd + 8Hk + 16HV + 2 BT HV = 4,096 + 16,384 + 40,960 + 128 + 512 + 4,096 = 66,176 B."""
    m = load_model("qwen3-next-80b")
    per_token = 2 * 2048 + 8 * 2048 + 10 * 4096 + 8 * 16 + 16 * 32 + 2 * 64 * 32
    assert per_token == 66_176
    assert sum(b.bytes for b in mixer_buffers(m, TOKENS, LayerSetup(full=True))) == TOKENS * per_token


def test_nemotron_h_s_mean_layer_weighs_each_kind_by_its_layers() -> None:
    """The 52 layers' activations at 8,192 tokens, by kind: every block's norm 8192 x (2 x 4096 + 4) = 67,141,632;
    4 attention blocks' q/k/v input 8192 x 4096 x 2, Q, K, V 8192 x (32 + 16) x 128 x 2, O 8192 x 4096 x 2 and the fp32
    log-sum-exp 8192 x 32 x 4 = 235,929,600; 24 MLP blocks' up input 8192 x 4096 x 2 + up output and down input
    2 x 8192 x 21504 x 2 = 771,751,936; 24 Mamba-2 blocks' 8192 x (102,692 - 8,196) = 774,111,232. The mean layer is
    their sum over 52 (each buffer rounded up once), where a Llama-style layer is 1,074,823,168."""
    m = load_model("nemotron-h-8b")
    assert is_hybrid(m)
    total = 52 * 67_141_632 + 4 * 235_929_600 + 24 * 771_751_936 + 24 * 774_111_232
    assert 24 * 8192 * (102_692 - 8_196) == 24 * 774_111_232
    mean = sum(b.bytes for b in layer_buffers(m, 1, TOKENS, LayerSetup(full=True)))
    assert 0 <= mean - total / 52 < 16  # one byte of rounding up per buffer at most
    assert mean < 0.75 * 1_074_823_168


def test_a_transformer_is_priced_as_before() -> None:
    """No layer differs in kind: the block's tensors, none weighted (Llama 3 8B's layer at 8,192 tokens in bf16 with
    FlashAttention: norms 2 x 8192 x (4096 x 2 + 4), q/k/v input and O 2 x 8192 x 4096 x 2, Q, K, V
    8192 x 6144 x 2, log-sum-exp 8192 x 32 x 4, gate/up input 8192 x 4096 x 2, gate and up 2 x 8192 x 14336 x 2, down
    input 8192 x 14336 x 2)."""
    m = load_model("llama3-8b")
    assert not is_hybrid(m)
    buffers = layer_buffers(m, 1, TOKENS, LayerSetup(full=True, fused=True))
    expected = (2 * 8192 * (4096 * 2 + 4) + 2 * 8192 * 4096 * 2 + 8192 * 6144 * 2 + 8192 * 32 * 4 + 8192 * 4096 * 2
                + 3 * 8192 * 14336 * 2)
    assert sum(b.bytes for b in buffers) == expected
    assert all(b.one_layer == 0 for b in buffers)
