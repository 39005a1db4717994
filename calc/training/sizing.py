"""How many GPUs finish a training run in time: the smallest whole-node GPU count whose predicted days fit."""

from __future__ import annotations

from collections.abc import Callable

MAX_GPUS = 1 << 17  # 131,072: past the largest published runs (Llama 3 405B: 16,384 H100)


def smallest_gpus_within(days_at: Callable[[int], float | None], days: float, node: int, max_gpus: int = MAX_GPUS,
                         at_least: int = 0) -> int | None:
    """The smallest multiple of ``node`` GPUs n with days_at(n) <= ``days`` (days_at returns None where nothing fits).

    Days fall as 1/n at a fixed MFU; the MFU of the best plan drifts with n, so the search doubles n (node, 2 node,
    4 node, ...) until a count finishes in time, then bisects over whole nodes between the last count that did not
    and the first that did; None when no count up to ``max_gpus`` finishes in time. ``at_least``: a count known too
    small whatever the plan (at 100% MFU fewer GPUs take longer than ``days``): the doubling starts past it."""
    def ok(n: int) -> bool:
        d = days_at(n)
        return d is not None and d <= days

    return first_gpus_where(ok, node, max_gpus, at_least // node)


def largest_gpus_within_budget(cost_at: Callable[[int], float | None], budget: float, smallest: int, node: int,
                               max_gpus: int = MAX_GPUS) -> int | None:
    """The largest multiple of ``node`` GPUs n >= ``smallest`` (the fewest that fit) whose run costs at most ``budget``.

    cost(n) = n x days(n) x 24 x price = tokens x 6N-ish FLOPs / (MFU(n) x peak) x price: flat at a fixed MFU and
    rising as the MFU of larger clusters falls, while days(n) fall; so the largest count within the budget is the
    fastest run it buys. Found as one node short of the first count past the budget (first_gpus_where); None when
    even ``smallest`` costs more; ``max_gpus`` when no count up to it does."""
    def over(n: int) -> bool:
        if n < smallest:
            return False
        c = cost_at(n)
        return c is None or c > budget

    if over(smallest):
        return None
    first_over = first_gpus_where(over, node, max_gpus)
    return max_gpus if first_over is None else first_over - node


def first_gpus_where(ok: Callable[[int], bool], node: int, max_gpus: int = MAX_GPUS, too_few_nodes: int = 0) -> int | None:
    """The smallest multiple of ``node`` with ok(n), for a predicate false below some count and true from it on:
    doubling (node, 2 node, 4 node, ...) to the first true count, then bisecting over whole nodes; None when no
    count up to ``max_gpus`` is. ``too_few_nodes``: every count up to that many nodes is known false, so the doubling
    skips the powers of two below it (the same counts are then tried as without it: the same answer).

    >>> first_gpus_where(lambda n: n >= 100, 8), first_gpus_where(lambda n: n >= 100, 8, too_few_nodes=10)
    (104, 104)
    """
    skip = 1 << (too_few_nodes.bit_length() - 1) if too_few_nodes >= 1 else 0  # largest power of two <= it
    low, high = skip, node * max(2 * skip, 1)  # low: nodes known too few (0: none); high: a candidate count
    while not ok(high):
        if high * 2 > max_gpus:
            return None
        low, high = high // node, high * 2
    hi_nodes = high // node
    while hi_nodes - low > 1:
        mid = (low + hi_nodes) // 2
        if ok(mid * node):
            hi_nodes = mid
        else:
            low = mid
    return hi_nodes * node
