"""Speculative decoding: a cheap proposer guesses k tokens, the target model verifies them in one step.

Expected tokens accepted per verification step, with a per-token acceptance rate a (Leviathan, Kalman &
Matias 2023, "Fast Inference from Transformers via Speculative Decoding", eq. 1):
    E = (1 - a^(k+1)) / (1 - a)        (the k proposals accepted in a row, plus the target's own token)
The verification step runs k + 1 query tokens per sequence against its KV cache (read once); the
proposer costs k decode steps of the draft model, or nothing for n-gram (prompt-lookup) proposals.
TPOT = (verify step + draft steps) / E. Both a and k are named inputs printed with the plan.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from calc.specs import ModelSpec

DEFAULT_ACCEPTANCE = 0.7  # per-token acceptance, typical of EAGLE / a same-family draft on chat data
DEFAULT_SPEC_TOKENS = 4


class Speculation(BaseModel):
    method: str = Field(description="ngram or draft")
    tokens: int = Field(DEFAULT_SPEC_TOKENS, ge=1, le=64, description="k: proposals per step")
    acceptance: float = Field(DEFAULT_ACCEPTANCE, gt=0, lt=1, description="a: per-token acceptance rate")
    draft: ModelSpec | None = None

    @property
    def expected_tokens(self) -> float:
        """E = (1 - a^(k+1)) / (1 - a)."""
        a, k = self.acceptance, self.tokens
        return (1 - a ** (k + 1)) / (1 - a)

    def line(self) -> str:
        who = f"draft model {self.draft.name}" if self.draft else "n-gram (prompt lookup), free"
        return (f"speculative decoding: {self.tokens} proposals per step by {who}, acceptance {self.acceptance:g} -> "
                f"E = (1 - a^(k+1))/(1 - a) = {self.expected_tokens:.2f} tokens per verification step")
