"""Blessing rules: absolute thresholds, ratios to baselines, change thresholds.

Plain Python, no TFX: the Evaluator component applies them to its metrics, and the pipeline
config (``pipeline.config``) holds them as typed values.
"""

import dataclasses
import json
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class Threshold:
    """One blessing condition on a model metric.

    The bound is ``value`` when ``baseline`` is None, else ``value x`` that baseline's metric
    (e.g. recall@10 >= 1.1 x popularity's).

    Attributes:
      metric: a key of the model metrics, e.g. ``"recall@10"`` or ``"rmse"``.
      direction: ``"min"`` (metric must be >= bound) or ``"max"`` (<= bound).
      value: the bound, or the ratio to the baseline's metric.
      baseline: None, or a baseline name (``"popularity"``, ``"ease"``, ``"bias"``).
    """

    metric: str
    direction: str
    value: float
    baseline: str | None = None

    def __post_init__(self):
        if self.direction not in ("min", "max"):
            raise ValueError(f"threshold on {self.metric}: direction must be min or max")


def parse_thresholds(text: str) -> list[Threshold]:
    """Parses the JSON list of thresholds the pipeline passes to the component.

    Args:
      text: e.g. ``'[{"metric": "recall@10", "direction": "min", "value": 1.1,
        "baseline": "popularity"}]'``.

    Raises:
      ValueError: naming the entry that is malformed.
    """
    try:
        entries = json.loads(text or "[]")
        return [Threshold(**e) for e in entries]
    except (TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"evaluator thresholds are malformed ({e}): {text!r}") from e


def _verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def check_thresholds(
    model_metrics: dict[str, float],
    baseline_metrics: dict[str, dict[str, float]],
    thresholds: Sequence[Threshold],
) -> tuple[bool, list[str]]:
    """Returns (blessed, one reason line per threshold naming the metric and both values)."""
    blessed, reasons = True, []
    for t in thresholds:
        if t.metric not in model_metrics:
            known = sorted(model_metrics)
            raise ValueError(f"threshold on unknown metric {t.metric!r}; known: {known}")
        value = model_metrics[t.metric]
        bound, against = t.value, f"{t.value:.4f}"
        if t.baseline is not None:
            base = baseline_metrics.get(t.baseline, {}).get(t.metric)
            if base is None:
                raise ValueError(
                    f"threshold on {t.metric}: baseline {t.baseline!r} has no such metric"
                )
            bound = t.value * base
            against = f"{t.value:g} x {t.baseline} {base:.4f} = {bound:.4f}"
        ok = value >= bound if t.direction == "min" else value <= bound
        op = ">=" if t.direction == "min" else "<="
        reasons.append(f"{_verdict(ok)}: {t.metric} {value:.4f} {op} {against}")
        blessed &= ok
    return blessed, reasons


def check_regression(
    model_metrics: dict[str, float],
    previous_metrics: dict[str, float],
    thresholds: Sequence[Threshold],
    tolerance: float,
) -> tuple[bool, list[str]]:
    """Change thresholds: no thresholded metric may be worse than the previous blessed model's
    by more than ``tolerance`` (relative)."""
    ok_all, reasons = True, []
    for metric, direction in dict((t.metric, t.direction) for t in thresholds).items():
        value, prev = model_metrics[metric], previous_metrics[metric]
        if direction == "min":
            bound = prev * (1.0 - tolerance)
            ok, op = value >= bound, ">="
        else:
            bound = prev * (1.0 + tolerance)
            ok, op = value <= bound, "<="
        sign = "-" if direction == "min" else "+"
        reasons.append(
            f"{_verdict(ok)}: {metric} {value:.4f} {op} previous blessed model {prev:.4f} x "
            f"(1 {sign} {tolerance:g}) = {bound:.4f}"
        )
        ok_all &= ok
    return ok_all, reasons
