"""Suggestion rules: where on a range-test curve a good learning rate lies.

Every rule reads the same curve: the loss against log10(LR), smoothed by a Gaussian kernel
*centred* on each point. The online moving average that watches for divergence lags the LR
ramp by tens of steps, which moves every mark to higher LRs by a share of a decade that
depends on the ramp's length; a centred kernel has no lag, and its width is set in decades
so that a longer test does not change what it measures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: The rule names, in the order they are reported.
RULES = ("steepest", "valley", "min/10")


def despike(losses: np.ndarray, *, width: int = 5) -> np.ndarray:
    """A running median over ``width`` steps: removes the one- or two-batch spikes that a
    mean-based smoother spreads into a bump (and a false steep descent after it)."""
    if len(losses) < width:
        return losses.copy()
    half = width // 2
    padded = np.concatenate([np.full(half, losses[0]), losses, np.full(half, losses[-1])])
    return np.asarray(np.median(np.lib.stride_tricks.sliding_window_view(padded, width), axis=1))


def centred(log_lrs: np.ndarray, losses: np.ndarray, *, window: float) -> np.ndarray:
    """The losses smoothed by a Gaussian of ``window`` decades (standard deviation) in log10 LR.

    At the ends the kernel is cut and renormalised, so the curve is not pulled down or up.
    """
    distance = (log_lrs[:, None] - log_lrs[None, :]) / window
    weights = np.exp(-0.5 * distance**2)
    return np.asarray(weights @ losses / weights.sum(axis=1))


def descent(log_lrs: np.ndarray, smooth: np.ndarray) -> slice:
    """The part of the curve before its minimum: where the rules look for a descent."""
    return slice(0, int(np.argmin(smooth)) + 1)


def steepest(log_lrs: np.ndarray, smooth: np.ndarray) -> float:
    """The LR where the smoothed loss falls fastest against log LR, before its minimum."""
    part = descent(log_lrs, smooth)
    x, y = log_lrs[part], smooth[part]
    if len(x) < 3:
        return float(10 ** log_lrs[0])
    slope = np.gradient(y, x)
    return float(10 ** x[int(np.argmin(slope))])


def valley(log_lrs: np.ndarray, smooth: np.ndarray, *, onset: float = 0.1) -> float:
    """fastai's valley rule: halfway (in log LR) along the loss's descent into its minimum.

    fastai takes the descent to be the longest decreasing subsequence of the loss, which
    works on a noisy curve, whose plateau is not monotone; a well-smoothed plateau drifts
    down steadily and would join the run, so here the descent starts where the loss has
    fallen ``onset`` of the way from its first value to its minimum.
    """
    bottom = int(np.argmin(smooth))
    level = smooth[0] - onset * (smooth[0] - smooth[bottom])
    above = np.flatnonzero(smooth[: bottom + 1] >= level)
    start = int(above[-1]) if len(above) else 0
    return float(10 ** ((log_lrs[start] + log_lrs[bottom]) / 2))


def min_over_10(log_lrs: np.ndarray, smooth: np.ndarray) -> float:
    """A tenth of the LR at the smoothed loss's minimum."""
    return float(10 ** log_lrs[int(np.argmin(smooth))] / 10)


_RULES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "steepest": steepest,
    "valley": valley,
    "min/10": min_over_10,
}


def log_median(values: Sequence[float]) -> float:
    """The geometric median of positive numbers on a line: the median of their logs."""
    finite = [math.log10(v) for v in values if v > 0 and math.isfinite(v)]
    return float(10 ** np.median(finite)) if finite else math.nan


def trimmed_log_mean(values: Sequence[float], *, within: float = 1.0) -> float:
    """The geometric mean of the values within ``within`` decades of their geometric median.

    A mean moves a third as much as any one rule does, where a median of three jumps
    whenever the middle rule changes; trimming keeps a rule that went wild (a spike read
    as the steepest descent) out of it.
    """
    logs = np.array([math.log10(v) for v in values if v > 0 and math.isfinite(v)])
    if not len(logs):
        return math.nan
    centre = float(np.median(logs))
    return float(10 ** logs[np.abs(logs - centre) <= within].mean())


def spread(values: Sequence[float]) -> float:
    """The largest over the smallest value (1.0: all agree)."""
    finite = [v for v in values if v > 0 and math.isfinite(v)]
    return max(finite) / min(finite) if finite else math.nan


@dataclass(frozen=True)
class Marks:
    """The suggestions read off one curve.

    Attributes:
        rules: Rule name -> suggested LR.
        combined: The rules' trimmed geometric mean, times the calibration ``scale``.
        smooth: The centred smoothed loss the rules read (for plotting).
    """

    rules: dict[str, float]
    combined: float
    smooth: np.ndarray


def read_curve(lrs: np.ndarray, losses: np.ndarray, *, window: float, scale: float = 1.0) -> Marks:
    """Applies every rule to one range-test curve.

    Args:
        lrs: The LR of each step.
        losses: The raw loss of each step.
        window: Width of the centred smoothing, in decades.
        scale: Multiplies the rules' trimmed geometric mean into the combined suggestion: the rules
            mark where a short test's loss falls fastest, and the best constant LR of a long
            run sits higher, nearer the edge of stability (``finder.scale``).
    """
    log_lrs = np.log10(np.asarray(lrs, dtype=float))
    # A last non-finite loss (the step that stopped the test) has no place on the curve.
    values = np.asarray(losses, dtype=float)
    keep = np.isfinite(values)
    log_lrs, values = log_lrs[keep], values[keep]
    smooth = centred(log_lrs, despike(values), window=window)
    rules = {name: rule(log_lrs, smooth) for name, rule in _RULES.items()}
    return Marks(rules, scale * trimmed_log_mean(list(rules.values())), smooth)
