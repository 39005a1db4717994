"""One group of parameters (``Tensor``) and the Linear layer that makes one: the unit every
parameter, FLOP and weight-byte formula sums over (calc.model.params, calc.model.mixers)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tensor:
    """One group of parameters.

    ``params``: stored parameters. ``active``: those a token uses (top-k of E experts).
    ``matmul``: weights a token is multiplied with (0 for the embedding gather, biases and
    norms; V*H for a tied output head even though it stores nothing new).
    """

    component: str
    params: int
    formula: str
    active: int | None = None
    matmul: int = 0
    shape: tuple[int, int] | None = None  # (in, out) of one weight matrix, for GEMM views
    name: str = ""  # the matrix's name in the modeling code (q_proj, gate_proj, ...), for GEMM views
    has_bias: bool = False  # the matrix's Linear has its own bias (a Tensor of its own beside it)

    @property
    def active_params(self) -> int:
        return self.params if self.active is None else self.active

    @property
    def copies(self) -> int:
        """Weight matrices of ``shape`` stored (E for routed experts, else 1); 0 without a shape."""
        return max(self.params // (self.shape[0] * self.shape[1]), 1) if self.shape else 0

    @property
    def used(self) -> int:
        """Weight matrices of ``shape`` one token multiplies with (top-k for routed experts, else 1)."""
        return self.matmul // (self.shape[0] * self.shape[1]) if self.shape else 0


def linear(component: str, name: str, n_in: int, n_out: int, bias: bool, sym: str) -> list[Tensor]:
    weights = Tensor(
        component, n_in * n_out, f"{name}: {sym} = {n_in}*{n_out}", matmul=n_in * n_out, shape=(n_in, n_out), name=name,
        has_bias=bias,
    )
    if not bias:
        return [weights]
    return [weights, Tensor(component, n_out, f"{name}.bias: {n_out}")]
