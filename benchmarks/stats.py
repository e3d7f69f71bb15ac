"""Small statistics for the report: median and spread over runs, percentiles, ratios, slopes."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Figure", "linear_fit", "percentile", "ratio_figure"]


@dataclass(frozen=True)
class Figure:
    """A figure measured over repeated runs: the median, the min–max spread, the run count."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Figure | None:
        """The figure of ``values`` (``None`` when there are none)."""
        clean = [v for v in values if not math.isnan(v)]
        if not clean:
            return None
        return cls(statistics.median(clean), min(clean), max(clean), len(clean))

    def as_dict(self) -> dict[str, float | int]:
        """For the JSON output."""
        return {"median": self.median, "min": self.low, "max": self.high, "runs": self.runs}

    def format(self, scale: float = 1.0, digits: int = 0, unit: str = "") -> str:
        """``median [min–max] unit`` with the values multiplied by ``scale``."""
        med, low, high = (x * scale for x in (self.median, self.low, self.high))
        text = f"{med:.{digits}f}"
        if self.runs > 1:
            text += f" [{low:.{digits}f}–{high:.{digits}f}]"
        return text + (f" {unit}" if unit else "")


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile (0–1) with linear interpolation; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio_figure(numerators: Sequence[float], denominators: Sequence[float]) -> Figure | None:
    """Ratios computed per run (run *i* over run *i*), then summarised."""
    pairs = [
        n / d
        for n, d in zip(numerators, denominators, strict=False)
        if d and not math.isnan(n) and not math.isnan(d)
    ]
    return Figure.of(pairs)


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares ``y = intercept + slope * x``: (intercept, slope, r²)."""
    n = len(xs)
    if n < 2:
        return (ys[0] if ys else float("nan"), float("nan"), float("nan"))
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx if sxx else float("nan")
    intercept = mean_y - slope * mean_x
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    r2 = 1 - ss_res / ss_tot if ss_tot else 1.0
    return intercept, slope, r2
