"""How many GPUs finish a training run in time: the smallest whole-node GPU count whose predicted days fit."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable

MAX_GPUS = 1 << 17  # 131,072: past the largest published runs (Llama 3 405B: 16,384 H100)


def smooth_counts(limit: int) -> list[int]:
    """The whole numbers 1..``limit`` with no prime factor above 7 (2^a 3^b 5^c 7^d), ascending: the node counts the
    GPU-count searches try. A parallel layout is a product of factors (TP x CP x PP x DP, EP inside DP x TP), so a
    count with a large prime factor leaves few layouts: 487 nodes of 8 H100 (3,896 GPUs) split a DeepSeek-V3 only as
    TP2 x DP1948 with ZeRO-3 and full recompute, 191 days for 15T tokens, where 486 nodes run TP2 x PP9 in 54 days.
    Such counts are what a planner does not deploy (it leaves the GPUs idle), and searching over them made the
    answer depend on where a bisection happened to land. Neighbouring 7-smooth counts lie within 4% of each other
    from 25 nodes up (24, 25, 27, 28, 30, ...; 480, 486, 490, 500, 504) and include every count up to 10 nodes.

    >>> smooth_counts(30)
    [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 15, 16, 18, 20, 21, 24, 25, 27, 28, 30]
    """
    counts = [1]
    for p in (2, 3, 5, 7):
        counts = [c * p**k for c in counts for k in range(int(math.log(limit, p)) + 2) if c * p**k <= limit]
    return sorted(set(counts))


def finishes_within(days_at: Callable[[int], float | None], days: float) -> Callable[[int], bool]:
    """The predicate "n finishes in time": days_at(n) is a figure (None: nothing fits there) of at most ``days``.

    >>> ok = finishes_within(lambda n: None if n < 2 else 60 / n, 30)
    >>> ok(1), ok(2), ok(3)
    (False, True, True)
    """
    def ok(n: int) -> bool:
        d = days_at(n)
        return d is not None and d <= days
    return ok


def smallest_gpus_within(days_at: Callable[[int], float | None], days: float, node: int, max_gpus: int = MAX_GPUS,
                         at_least: int = 0, smooth: bool = True) -> int | None:
    """The smallest GPU count n = k x ``node``, k a 7-smooth node count (smooth_counts; any count with ``smooth``
    False, for days that do not come from a layout: an assumed MFU), with days_at(n) <= ``days`` (days_at returns
    None where nothing fits).

    Days fall as 1/n at a fixed MFU; the MFU of the best plan drifts with n, so the search goes up from the largest
    power of two below ``at_least`` to the count a failing count's days extrapolate to at its MFU (n x days(n) / D;
    doubling where nothing fits) until a count finishes in time, then narrows the bracket between the last count
    that did not and the first that did: each guess interpolates days = c n^-a through the bracket's two ends (regula falsi on log n,
    log days) and is followed by its neighbour across the boundary, which settles the answer when the guess is one
    count off; a guess that does not halve the bracket is followed by a halving step, and an end without a figure
    (nothing fits there) halves too. Where days fall with n this is the count bisection finds, in a handful of plan
    searches instead of log2(bracket) of them. None when no count up to ``max_gpus`` finishes in time.
    ``at_least``: a count known too small whatever the plan (at 100% MFU fewer GPUs take longer than ``days``): the
    doubling starts past it.

    >>> smallest_gpus_within(lambda n: 1000 / n, 30, 8), smallest_gpus_within(lambda n: 5e4 / n ** 0.9, 30, 8)
    (40, 3840)
    """
    seen: dict[int, float | None] = {}  # nodes -> days (None: nothing fits)

    def _days(nodes: int) -> float | None:
        if nodes not in seen:
            seen[nodes] = days_at(nodes * node)
        return seen[nodes]

    ok = finishes_within(_days, days)

    def estimate(low: int, high: int) -> float | None:
        d_low, d_high = _days(low), _days(high)
        if d_low is None or d_high is None or not d_low > days >= d_high > 0:
            return None
        slope = math.log(d_low / d_high) / math.log(high / low)  # a in days = c n^-a
        return low * (d_low / days) ** (1 / slope)

    def jump(nodes: int) -> float | None:  # days ~ 1/n at the MFU just seen
        d = _days(nodes)
        return None if d is None else nodes * d / days

    return _first_count(ok, node, max_gpus, at_least // node, estimate, smooth, jump)


def node_counts(limit: int, smooth: bool = True) -> list[int]:
    """The node counts 1..``limit`` a search tries: the 7-smooth ones (smooth_counts), or all of them."""
    return smooth_counts(limit) if smooth else list(range(1, limit + 1))


def _first_count(ok: Callable[[int], bool], node: int, max_gpus: int, too_few_nodes: int,
                 estimate: Callable[[int, int], float | None] | None = None, smooth: bool = True,
                 jump: Callable[[int], float | None] | None = None) -> int | None:
    """The smallest node count k among node_counts (7-smooth, or all with ``smooth`` False) with ok(k), for a
    predicate false below some count and true from it on, as GPUs k x ``node``; None when none up to ``max_gpus`` is.
    From the largest power of two up to ``too_few_nodes`` (known false), up to a true count: to the count
    ``jump(k)`` names after a false k when given and larger (the count the false one's figure extrapolates to),
    to the next power of two when ``jump`` has no figure there (nothing fits at k: a count such as 15 nodes keeps its
    factor 15 under doubling, and may split no layout or power-of-two batch at any size), else doubling; then
    narrowing the bracket: by ``estimate(low, high)`` (a node count, or None) with a neighbour
    check when given and while it halves the bracket, by halving otherwise."""
    counts = node_counts(max(max_gpus // node, 1), smooth)
    where = {c: i for i, c in enumerate(counts)}
    low = 1 << (too_few_nodes.bit_length() - 1) if too_few_nodes >= 1 else 0  # nodes known too few (0: none)
    high = max(2 * low, 1)
    tried: set[int] = set()
    while not ok(high):
        tried.add(high)
        target = 2 * high
        leap = jump(high) if jump is not None else None
        if leap is not None and leap > high:
            target = leap
        elif jump is not None and leap is None:  # nothing fits at ``high``: its odd factors may split no layout or
            # batch (15 nodes of 8 a power-of-two batch): the power of two above the last count with a figure, if
            # below ``high`` and untried (the bracket keeps its false end), else the next one above ``high``
            below = 1 << low.bit_length() if low else 0
            if low < below < high and below in where and below not in tried:
                high = below
                continue
            target = 1 << high.bit_length()
        i = bisect_left(counts, target)
        if i >= len(counts):
            if counts[-1] <= high:
                return None
            i = len(counts) - 1
        low, high = high, counts[i]
    lo, hi = (where[low] if low else -1), where[high]  # indices: counts[lo] false (or none), counts[hi] true
    interpolate = estimate is not None
    while hi - lo > 1:
        width, guess = hi - lo, (lo + hi) // 2
        value = estimate(counts[lo], counts[hi]) if interpolate and lo >= 0 and estimate is not None else None
        if value is not None:
            guess = min(max(bisect_left(counts, value), lo + 1), hi - 1)
        if ok(counts[guess]):
            hi = guess
            if value is not None and guess - 1 > lo and not ok(counts[guess - 1]):
                lo = guess - 1
        else:
            lo = guess
            if value is not None and guess + 1 < hi and ok(counts[guess + 1]):
                hi = guess + 1
        interpolate = estimate is not None and 2 * (hi - lo) <= width  # a step that did not halve: halve next
    return counts[hi] * node


def smallest_over_batch_pieces(ok: Callable[[int], bool], found: int, node: int, per_gpu: Callable[[int], int],
                               smooth: bool = True) -> int:
    """The smallest GPU count at or below ``found`` with ok(n), ``found`` being what smallest_gpus_within returned,
    when the global batch follows the GPU count (calc.training.plan.default_global_batch: B0 rounded up to a multiple
    of n, so ``per_gpu(n)``, the sequences per GPU, is ceil(B0 / n), a step function of n:
    calc.training.plan.default_batch_piece).

    smallest_gpus_within assumes days fall with n. They do inside a batch piece (the counts sharing one per_gpu(n):
    the same work per GPU, spread over more GPUs), but not across a piece's lower edge: going up past n = B0 / s, each
    GPU runs one sequence fewer per step, its micro-batches shrink and the MFU can drop, so more GPUs can take longer
    (llama3-8b on H100, 15T tokens: 1,000 GPUs run 2,000 sequences a step in 16.8 days, 1,024 GPUs 1,024 sequences in
    17.4). Every lower piece holding a whole-node count of at least found / 2 (a piece's extra sequences per GPU do not
    double the MFU) is checked at its largest count (its fastest, days falling inside it), and bisected when that count
    finishes in time; the smallest count found in any piece is returned. ``ok`` takes a GPU count.

    >>> days = lambda n: (2000 if n < 1024 else 2200) / n  # a piece's step: slower per GPU from 1,024 GPUs up
    >>> per_gpu = lambda n: -(-1024 // n)
    >>> smallest_over_batch_pieces(lambda n: days(n) <= 2.1, 1080, 8, per_gpu)  # 960 GPUs: 2.08 days; 896: 2.23
    960
    """
    counts = [k * node for k in node_counts(max(found // node, 1), smooth) if found <= 2 * k * node and k * node < found]
    pieces: dict[int, list[int]] = {}
    for n in counts:
        pieces.setdefault(per_gpu(n), []).append(n)
    best = found
    for share, members in pieces.items():
        if share == per_gpu(found) or not ok(members[-1]):
            continue  # found's own piece was searched; a piece whose largest count is late is late throughout
        best = min(best, members[bisect_left(members, True, key=ok)])  # late, then on time, inside a piece
    return best


def largest_gpus_within_budget(cost_at: Callable[[int], float | None], budget: float, smallest: int, node: int,
                               max_gpus: int = MAX_GPUS, smooth: bool = True) -> int | None:
    """The largest multiple of ``node`` GPUs n >= ``smallest`` (the fewest that fit) whose run costs at most ``budget``.

    cost(n) = n x days(n) x 24 x price = tokens x 6N-ish FLOPs / (MFU(n) x peak) x price: flat at a fixed MFU and
    rising as the MFU of larger clusters falls, while days(n) fall; so the largest count within the budget is the
    fastest run it buys. Found as the smooth node count (smooth_counts) before the first count past the budget
    (first_gpus_where); None when even ``smallest`` costs more; ``max_gpus`` when no count up to it does."""
    def over(n: int) -> bool:
        if n < smallest:
            return False
        c = cost_at(n)
        return c is None or c > budget

    if over(smallest):
        return None
    first_over = first_gpus_where(over, node, max_gpus, smooth=smooth)
    if first_over is None:
        return max_gpus
    counts = node_counts(first_over // node, smooth)
    return counts[-2] * node  # the count before it: first_over > smallest, so there is one


def first_gpus_where(ok: Callable[[int], bool], node: int, max_gpus: int = MAX_GPUS, too_few_nodes: int = 0,
                     smooth: bool = True) -> int | None:
    """The smallest GPU count k x ``node``, k a 7-smooth node count (smooth_counts), with ok(n), for a predicate false
    below some count and true from it on: doubling (node, 2 node, 4 node, ...) to the first true count, then
    bisecting over the smooth node counts between; None when no count up to ``max_gpus`` is. ``too_few_nodes``: every
    count up to that many nodes is known false, so the doubling skips the powers of two below it (the same counts are
    then tried as without it: the same answer).

    >>> first_gpus_where(lambda n: n >= 100, 8), first_gpus_where(lambda n: n >= 100, 8, too_few_nodes=10)
    (112, 112)
    """
    return _first_count(lambda k: ok(k * node), node, max_gpus, too_few_nodes, smooth=smooth)
