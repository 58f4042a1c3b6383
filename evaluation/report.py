"""Self-contained HTML report of one evaluation: verdict, metrics, curves, slices, training.

The Evaluator component (``components.evaluator``) calls :func:`write_report` to write
``report.html`` beside ``metrics.json``; ``movierec run`` prints its path. The page needs
nothing else to display: no external URL, stylesheet or script, and every plot is inline SVG
drawn by matplotlib on an Agg canvas (no pyplot, so no global backend or figure state).
Every number in a table carries a ``data-key`` attribute naming its path in ``metrics.json``
(``model/recall@10``, ``baselines/popularity/recall@10``, ``ratios/popularity/recall@10``,
``slices/user_history/<=20/model/recall@10``), so tests and people can check the page against
the artifact.
"""

import html
import io
import math
import re

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

PLOT_WIDTH_PX = 700

# Row order of the metrics table; metrics not named here follow, sorted by name.
_METRIC_ORDER = (
    "recall",
    "ndcg",
    "map",
    "user_recall",
    "user_ndcg",
    "user_map",
    "top_k_accuracy_incl_seen",
    "coverage",
    "popularity_percentile",
    "rmse",
    "mae",
    "num_eval_pairs",
)
_COUNTS = ("count", "num_eval_pairs")
_SLICE_METRICS = ("recall@10", "rmse")
# Slice tables sit beside their plot, so their column titles are short.
_SHORT = {"previous_model": "previous"}
_FAIL_CLASS = ' class="fail"'
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1180px;
       padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 2px 7px; text-align: right; }
th { background: #f3f3f3; }
th:first-child, td:first-child { text-align: left; }
td.na { color: #999; }
.facts td:first-child { font-weight: 600; }
.verdict { display: inline-block; padding: 0.2em 0.7em; border-radius: 4px; color: #fff; }
.blessed { background: #1d7a35; } .not-blessed { background: #b42318; }
.reasons li { font-family: monospace; } .reasons li.fail { color: #b42318; }
.slice { display: flex; gap: 1em; align-items: flex-start; flex-wrap: wrap; }
.slice table { font-size: 0.8em; margin: 0 0 0.6em; }
caption { text-align: left; font-weight: 600; }
"""


def render_report(result: dict) -> str:
    """Renders one evaluation as a self-contained HTML page.

    Args:
      result: the Evaluator's ``metrics.json`` dict. ``model``, ``blessed`` and ``reasons``
        are expected; ``split``, counts, ``baselines``, ``ratios``, ``previous_model``,
        ``curves``, ``slices`` and ``training_history`` are shown when present (and not
        ``None``).

    Returns:
      The page as one string: facts, verdict with its reasons, a metrics table (one column
      per scorer and per model/baseline ratio), then one SVG plot each for the Recall@K
      curves, every non-empty slice family (with its table) and the training history.
    """
    blessed = bool(result.get("blessed"))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>movierec evaluation</title><style>{_STYLE}</style></head><body>",
        "<h1>movierec evaluation</h1>",
        _facts_table(result),
        "<h2>Blessing</h2>",
        f'<p class="verdict {"blessed" if blessed else "not-blessed"}">'
        f"{'BLESSED' if blessed else 'NOT BLESSED'}</p>",
        _reasons_list(result.get("reasons") or []),
        "<h2>Metrics</h2>",
        "<p>The model's column is the list users are served (the servable models through "
        "the code of /v1/recommend): @10 is the served list, @50 and @100 the retrieval "
        "candidates the ranking stage orders (its ceiling); 'retrieval order' is the same "
        "candidates unranked. recall, ndcg, map: each user's train movies are excluded; "
        "user_*: averaged per user; top_k_accuracy_incl_seen (baselines): the TFRS "
        "FactorizedTopK accuracy (seen movies kept). Ratio columns: model / baseline.</p>",
        _metrics_table(result),
    ]
    if result.get("curves"):
        parts += ["<h2>Recall@K</h2>", _curve_plot(result["curves"])]
    slices = {f: s for f, s in (result.get("slices") or {}).items() if s}
    if slices:
        parts.append("<h2>Slices</h2>")
        parts += [_slice_section(family, entries) for family, entries in slices.items()]
    if result.get("training_history"):
        parts += ["<h2>Training</h2>", _history_plot(result["training_history"])]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result: dict, path: str) -> str:
    """Writes :func:`render_report` of ``result`` to ``path`` (UTF-8) and returns ``path``."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_report(result))
    return path


def _format(metric: str, value) -> str:
    """Counts as integers, percentiles with 1 decimal, everything else with 4."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if metric in _COUNTS:
        return str(int(value))
    if metric.startswith("popularity_percentile"):
        return f"{value:.1f}"
    return f"{value:.4f}"


def _cell(key: str, metric: str, value) -> str:
    """A ``<td>`` carrying the value's ``metrics.json`` path; ``metric`` picks the format."""
    text = _format(metric, value)
    css = ' class="na"' if text == "n/a" else ""
    return f'<td data-key="{html.escape(key)}"{css}>{html.escape(text)}</td>'


def _empty_cell() -> str:
    return '<td class="na">-</td>'


def _facts_table(result: dict) -> str:
    facts = []
    split = result.get("split")
    if split:
        facts.append(("split", ", ".join(f"{k}={v}" for k, v in split.items())))
    for key, label in (
        ("num_train", "train ratings"),
        ("num_eval", "eval ratings"),
        ("num_catalogue", "catalogue movies"),
    ):
        if result.get(key) is not None:
            facts.append((label, str(result[key])))
    if result.get("previous_model"):
        facts.append(("previous blessed model", str(result["previous_model"].get("uri", ""))))
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td><td>{html.escape(value)}</td></tr>"
        for label, value in facts
    )
    return f'<table class="facts">{rows}</table>'


def _reasons_list(reasons: list[str]) -> str:
    items = "".join(
        f"<li{_FAIL_CLASS if r.upper().startswith('FAIL') else ''}>{html.escape(r)}</li>"
        for r in reasons
    )
    return f'<ul class="reasons">{items}</ul>'


def _metric_sort_key(metric: str) -> tuple:
    name, _, k = metric.partition("@")
    index = _METRIC_ORDER.index(name) if name in _METRIC_ORDER else len(_METRIC_ORDER)
    return index, name, int(k) if k.isdigit() else 0


def _scorers(result: dict) -> list[tuple[str, str, dict]]:
    """``(column title, data-key prefix, metrics)`` of every scorer in ``result``."""
    out = [("model", "model", result["model"])]
    if result.get("retrieval_order"):
        out.append(("retrieval order", "retrieval_order", result["retrieval_order"]))
    if result.get("previous_model"):
        out.append(
            ("previous model", "previous_model/metrics", result["previous_model"]["metrics"])
        )
    for name, metrics in (result.get("baselines") or {}).items():
        out.append((name, f"baselines/{name}", metrics))
    return out


def _metrics_table(result: dict) -> str:
    scorers = _scorers(result)
    baselines = list(result.get("baselines") or {})
    ratios = result.get("ratios") or {}
    metrics = sorted({m for _, _, values in scorers for m in values}, key=_metric_sort_key)
    head = "".join(f"<th>{html.escape(title)}</th>" for title, _, _ in scorers)
    head += "".join(f"<th>model / {html.escape(b)}</th>" for b in baselines)
    rows = []
    for metric in metrics:
        cells = [
            _cell(f"{prefix}/{metric}", metric, values[metric])
            if metric in values
            else _empty_cell()
            for _, prefix, values in scorers
        ]
        # A ratio is a plain number whatever the metric, so always 4 decimals.
        cells += [
            _cell(f"ratios/{b}/{metric}", "ratio", ratios[f"{b}/{metric}"])
            if f"{b}/{metric}" in ratios
            else _empty_cell()
            for b in baselines
        ]
        rows.append(f"<tr><td>{html.escape(metric)}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def _svg(fig: Figure) -> str:
    """The figure as an inline ``<svg>`` element scaled to :data:`PLOT_WIDTH_PX`."""
    buf = io.StringIO()
    # A fixed salt makes element ids depend on content only: the same metrics, the same file.
    with matplotlib.rc_context({"svg.hashsalt": "movierec"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    # Inline SVG needs no XML prolog, and the RDF metadata only names the creator.
    text = text[text.index("<svg") :]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.DOTALL)
    match = re.search(r'width="([\d.]+)pt" height="([\d.]+)pt"', text)
    if match:
        width, height = float(match.group(1)), float(match.group(2))
        size = f'width="{PLOT_WIDTH_PX}" height="{round(PLOT_WIDTH_PX * height / width)}"'
        text = text[: match.start()] + size + text[match.end() :]
    return text


def _figure(width_in: float, height_in: float, ncols: int = 1, nrows: int = 1):
    """A figure on an Agg canvas (no pyplot state) and its axes, row by row."""
    fig = Figure(figsize=(width_in, height_in))
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(nrows, ncols, squeeze=False).flat)


def _curve_plot(curves: dict) -> str:
    fig, (ax,) = _figure(7.0, 3.4)
    for name, values in curves["recall"].items():
        ax.plot(curves["ks"], values, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xticks(curves["ks"], [str(k) for k in curves["ks"]])
    ax.set_xlabel("K")
    ax.set_ylabel("recall@K (seen excluded)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _svg(fig)


def _slice_scorers(entries: dict, metric: str) -> list[str]:
    """Scorers with ``metric`` in any slice, the model first, then in order of appearance."""
    found = [
        s for e in entries.values() for s, v in e.items() if isinstance(v, dict) and metric in v
    ]
    return sorted(dict.fromkeys(found), key=lambda s: s != "model")


def _slice_section(family: str, entries: dict) -> str:
    """Bar charts of recall@10 and RMSE per slice of one family, their numbers beside them."""
    panels = {m: _slice_scorers(entries, m) for m in _SLICE_METRICS}
    panels = {m: scorers for m, scorers in panels.items() if scorers}
    if not panels:
        return ""
    tables = [
        _slice_table(family, entries, metric, scorers, with_count=i == 0)
        for i, (metric, scorers) in enumerate(panels.items())
    ]
    return (
        f"<h3>{html.escape(family)}</h3><div class='slice'>{_slice_plot(entries, panels)}"
        f"<div>{''.join(tables)}</div></div>"
    )


def _slice_plot(entries: dict, panels: dict[str, list[str]]) -> str:
    labels = list(entries)
    fig, axes = _figure(7.0, 2.9, len(panels))
    for ax, (metric, scorers) in zip(axes, panels.items(), strict=True):
        width = 0.8 / len(scorers)
        drawn = []
        for i, scorer in enumerate(scorers):
            ys = [entries[label].get(scorer, {}).get(metric, math.nan) for label in labels]
            xs = [x + (i - (len(scorers) - 1) / 2) * width for x in range(len(labels))]
            ax.bar(xs, ys, width, label=_SHORT.get(scorer, scorer))
            drawn += [y for y in ys if math.isfinite(y)]
        if metric == "rmse" and drawn:
            # Scorers' RMSEs differ by a few hundredths: from zero the bars would look equal.
            ax.set_ylim(bottom=0.9 * min(drawn))
        ax.set_xticks(range(len(labels)), labels, fontsize=7, rotation=30 if len(labels) > 6 else 0)
        ax.set_ylabel(metric, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=6, ncols=len(scorers), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return _svg(fig)


def _slice_table(
    family: str, entries: dict, metric: str, scorers: list[str], with_count: bool
) -> str:
    head = "<th>slice</th>" + ("<th>pairs</th>" if with_count else "")
    head += "".join(f"<th>{html.escape(_SHORT.get(s, s))}</th>" for s in scorers)
    rows = []
    for label, entry in entries.items():
        base = f"slices/{family}/{label}"
        cells = _cell(f"{base}/count", "count", entry.get("count")) if with_count else ""
        for scorer in scorers:
            if metric in entry.get(scorer, {}):
                cells += _cell(f"{base}/{scorer}/{metric}", metric, entry[scorer][metric])
            else:
                cells += _empty_cell()
        rows.append(f"<tr><td>{html.escape(label)}</td>{cells}</tr>")
    caption = f"<caption>{html.escape(metric)}</caption>"
    return f"<table>{caption}<tr>{head}</tr>{''.join(rows)}</table>"


def _history_plot(history: dict) -> str:
    """Every history series against the epoch; ``val_x`` shares a panel with ``x``.

    Each panel has its own y axis: the retrieval loss is in the hundreds, the ranking loss
    and RMSE near one.
    """
    panels: dict[str, dict[str, list[float]]] = {}
    for name, values in history.items():
        if values:
            panels.setdefault(name.removeprefix("val_"), {})[name] = values
    if not panels:
        return ""
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = _figure(7.0, 2.1 * nrows + 0.2, ncols, nrows)
    for ax, (title, series) in zip(axes, panels.items(), strict=False):
        for name, values in series.items():
            ax.plot(range(1, len(values) + 1), values, marker=".", label=name)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return _svg(fig)
