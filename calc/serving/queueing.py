"""Queueing of requests at a replica (or a prefill instance), and the fewest servers that keep it in bounds.

M/D/c wait with c slots, each busy S seconds per request, arrivals R/s (rho = R x S / c): Sakasegawa's
M/M/c approximation (Sakasegawa 1977, "An approximation formula L_q = alpha rho^beta / (1 - rho)")
    W_q(M/M/c) ~ rho^(sqrt(2(c+1)) - 1) / (c (1 - rho)) x S
halved for deterministic service (Allen-Cunneen: W_q(G/G/c) ~ (C_a^2 + C_s^2)/2 x W_q(M/M/c), C_s = 0).

n servers of c slots each behind a router (ServingAssumptions.router, pool_queue_s):
    least-loaded   each request to a server with a free slot (vLLM production-stack / llm-d / Dynamo / SGLang
                   router load balancing, join-the-shortest-queue): the n servers wait as one M/D/(n c) queue of rate R
    random         each request to a server at random, independent of load (Poisson splitting): n M/D/c queues of
                   rate R/n each, the planning bound for a router that does not look at load
"""

from __future__ import annotations

import math
from collections.abc import Callable


def queue_s(rate: float, slots: int, service_s: float) -> float:
    """M/D/c wait (module docstring); inf at rho >= 1."""
    rho = rate * service_s / slots
    if rho >= 1:
        return math.inf
    return rho ** (math.sqrt(2 * (slots + 1)) - 1) / (slots * (1 - rho)) * service_s / 2


def pool_queue_s(rate: float, servers: int, slots: int, service_s: float, router: str = "least-loaded") -> float:
    """The wait of ``servers`` servers of ``slots`` slots each behind ``router`` (module docstring).

    >>> round(pool_queue_s(10, 5, 4, 1.0, "least-loaded"), 4) < round(pool_queue_s(10, 5, 4, 1.0, "random"), 4)
    True
    """
    if router == "random":
        return queue_s(rate / servers, slots, service_s)
    return queue_s(rate, servers * slots, service_s)


def fewest(start: int, ok: Callable[[int], bool], limit: int = 100_000) -> int | None:
    """The smallest n >= ``start`` with ok(n), for an ``ok`` that stays true once true (more servers never
    wait longer): grow by 5% a try from the fluid bound, then bisect back, so the answer is the least such n
    (a larger rate or a stricter target can then never get fewer servers). None when none up to ``limit``."""
    lo, n = start - 1, start
    while not ok(n):
        if n >= limit:
            return None
        lo, n = n, min(n + max(n // 20, 1), limit)
    while n - lo > 1:
        mid = (lo + n) // 2
        lo, n = (lo, mid) if ok(mid) else (mid, n)
    return n
