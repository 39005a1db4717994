"""Physical-limit checks on results, and the one-line stderr warning the CLI prints.

A result beyond what the hardware can do (MFU above 100%, a measured rate above the device's
peak) is refused as an input error naming the input that caused it; a result that is merely
suspicious (MFU above any published run, a prompt beyond the model's context window) is
answered with a warning line on stderr.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from calc.errors import LLMCalcError, LLMCalcWarning, one_line
from calc.units import percent

# Highest MFU published for a large run: ~0.55-0.6 (PaLM 540B 46.2%, arXiv 2204.02311 table 3;
# MegaScale 55.2% at 175B, arXiv 2402.15627 table 2). Above this an observed rate is suspicious.
SUSPICIOUS_MFU = 0.75
# Below this an observed rate is more likely a unit slip (tokens/s per GPU vs per cluster, hours vs
# seconds) than a real run: even small, badly tuned jobs reach several percent.
TINY_MFU = 0.01
# The largest published pre-training corpora are ~15-36T tokens (Llama 3: 15T, arXiv 2407.21783;
# Qwen3: 36T); a thousand times that is no real run.
SUSPICIOUS_TOKENS = 1e17
# The largest GPU clusters built are ~100-200K GPUs (xAI Colossus, 2024-25); 1M is past any real deployment.
SUSPICIOUS_GPUS = 1_000_000
# The highest MFU published for a training run that this project has a source for: 61.1%, torchtitan
# docs/performance.md (Llama 2 13B, 64 x A100 80GB, FSDP2, local batch 2, no activation checkpointing; corpus row
# TT-llama2-13b), counted as llmcalc counts a plan's MFU (6N + the full s x s attention). Large runs publish less
# (Llama 3 405B: 38-43%, arXiv 2407.21783 table 4; PaLM 540B: 46.2%). A PREDICTED MFU above it is answered, with a
# warning that no measured run reached it (check_predicted_mfu).
HIGHEST_PUBLISHED_MFU = 0.611
# A calibration below this fraction of peak is a broken measurement (a CPU run, a unit slip).
MIN_EFFICIENCY = 0.01
# bench noise: a measured rate may exceed the datasheet peak by a few percent (boost clocks).
PEAK_SLACK = 1.05


# Warnings and notes the CLI holds back while a command runs, by key (None: print at once, as a library call does).
_HELD: dict[str, str] | None = None


def _say(key: str, line: str) -> None:
    """The CLI holds the line and prints it under its answer (hold_warnings / release_warnings); a library call gets it
    as an LLMCalcWarning, Python's own channel, which the caller filters or turns into errors as it likes."""
    if _HELD is None:
        warnings.warn(line.rstrip("\n"), LLMCalcWarning, stacklevel=3)
    else:
        _HELD.setdefault(key, line)


def warn(field: str, message: str) -> None:
    """Print ``llmcalc: warning: FIELD: message`` on stderr, as one line (held back while the CLI runs)."""
    line = f"llmcalc: warning: {one_line(f'{field}: {message}')}\n"
    _say(line, line)  # keyed by the line: a spec read twice in one command (a config.json path) warns once


def note(key: str, message: str) -> None:
    """Print ``llmcalc: note: message`` once per ``key`` (held back, and printed under the warnings, while the CLI
    runs): what a suffixed number was read as (calc.cli.options.note_suffix)."""
    _say(f"note {key}", f"llmcalc: note: {one_line(message)}\n")


def hold_warnings() -> None:
    """Hold warnings and notes back until `release_warnings`: a command that ends in a refusal prints the one
    error line alone, not a warning about an input it then refused (issue: the one-line rule)."""
    global _HELD
    _HELD = {}


def release_warnings(show: bool) -> None:
    """Stop holding; print the held warnings, then the notes, if ``show`` (an answer); drop them if not (a refusal)."""
    global _HELD
    held, _HELD = _HELD or {}, None
    if show:
        for _key, line in sorted(held.items(), key=lambda item: item[0].startswith("note ")):
            sys.stderr.write(line)


def check_mfu(mfu: float, field: str) -> list[str]:
    """Refuse MFU above 100% (more FLOPs than the GPUs can do); warn above SUSPICIOUS_MFU.

    MFU = achieved model FLOPs/s / (GPUs x peak) (PaLM arXiv 2204.02311 appendix B), so MFU > 1
    means the throughput given in ``field`` is impossible on that GPU count and dtype.
    """
    if mfu >= 1 - 1e-9:  # at the peak or beyond it: no run keeps every tensor core busy every cycle
        raise LLMCalcError(field, f"implies MFU {percent(mfu)}, {'above' if mfu > 1 + 1e-9 else 'at'} 100% of the GPUs' "
                                  "dense peak; check the throughput, --num-gpus and --dtype")
    if mfu > SUSPICIOUS_MFU:
        return [f"{field}: implies MFU {mfu:.1%}, above any published large run (~55-60%); check the inputs"]
    if mfu < TINY_MFU:
        return [f"{field}: implies MFU {percent(mfu)}, below 1%: check the units (per GPU vs per cluster, hours vs seconds)"]
    return []


def check_predicted_mfu(plan: Any, field: str = "MFU", measured: bool = False) -> list[str]:
    """Warn when a plan's PREDICTED MFU is above HIGHEST_PUBLISHED_MFU: the engine's plateau and overlap defaults were
    fitted on runs below it, so such a figure is a best case no published run reached (the refusal above 100% stays
    check_mfu's, for measured rates). The MFU compared is the plan's causal count (``mfu_causal``: the attention FLOPs
    a causal kernel runs), so that a long sequence's full s x s count, twice the attention work done, does not raise
    the flag by itself; ``mfu`` where a plan has no causal figure. None (no plan, or one that does not fit): no line.
    ``measured``: the GEMM rates came from the user (--gemm-plateau, --calibration), so the line asks to check them
    rather than to give them."""
    mfu = None if plan is None else getattr(plan, "mfu_causal", None) or getattr(plan, "mfu", None)
    if mfu is None or mfu <= HIGHEST_PUBLISHED_MFU:
        return []
    return [f"{field}: predicted {mfu:.1%} (attention counted causal) is above the highest MFU published for a "
            f"training run ({HIGHEST_PUBLISHED_MFU:.1%}: torchtitan, Llama 2 13B on 64 A100, FSDP2); " + (
                "it follows the GEMM rates given (--gemm-plateau / --calibration): check they were measured on this "
                "stack" if measured else "read it as a best case, or give a measured --gemm-plateau or --calibration")]


def check_tokens(tokens: float, field: str = "--tokens") -> list[str]:
    """Warn when a training corpus is beyond any real run (SUSPICIOUS_TOKENS)."""
    if tokens > SUSPICIOUS_TOKENS:
        from calc.units import abbrev

        return [f"{field}: {abbrev(tokens, 'tokens')} is over 1000x the largest published pre-training run (~15-36T)"]
    return []


def check_efficiency(fraction: float, what: str, field: str = "--calibration") -> float:
    """A GPU's measured fraction of peak (compute or bandwidth) must be physical: in (MIN_EFFICIENCY, PEAK_SLACK].

    Slightly above 1 (boost clocks, bench noise) is read as 1.0.
    """
    from calc.units import percent

    if not fraction == fraction or fraction > PEAK_SLACK:  # NaN or above the device
        raise LLMCalcError(field, f"measured {what} is {fraction:.0%} of the device's peak; a GPU cannot exceed "
                                  "its peak: the file is for another GPU or dtype, or is wrong")
    if fraction < MIN_EFFICIENCY:
        raise LLMCalcError(field, f"measured {what} is {percent(fraction)} of the device's peak, absurdly low; "
                                  "re-run `llmcalc bench --save` on the GPU")
    return min(fraction, 1.0)


def check_context(m: Any, tokens: int, field: str, what: str | None = None) -> list[str]:
    """Warn when ``tokens`` (prompt + output, or a training sequence) exceed the model's context window; ``what``
    says how the count was made when it is not ``field``'s value alone (a prompt + the output)."""
    window = m.context_window
    if tokens > window:
        return [f"{field}: {what or ''}{tokens:,} tokens exceed {m.name}'s context window of {window:,} "
                "(max_position_embeddings x RoPE scaling); the model was not trained for it"]
    return []



def check_gpus_needed(gpus: int | None, field: str, verb: str = "needs ", what: str = "the traffic") -> list[str]:
    """Warn when a GPU count is past any cluster built (SUSPICIOUS_GPUS): likely a unit slip. ``verb`` and ``what``
    word it for the caller: serve's "needs N GPUs ... check the traffic" (the default), the training commands' given
    count "N GPUs ... check the count" (calc.training.plan.scale_warnings)."""
    if gpus is not None and gpus > SUSPICIOUS_GPUS:
        return [f"{field}: {verb}{gpus:,} GPUs, more than {SUSPICIOUS_GPUS:,}, five times the largest cluster built "
                f"(~200K GPUs); check {what} and its units"]
    return []
