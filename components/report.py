"""Self-contained HTML report of one evaluation: tables, curves, slices, training losses.

The Evaluator component writes ``report.html`` beside ``metrics.json`` with
:func:`write_report`; ``movierec run`` prints its path. Plots are inline SVG (matplotlib,
Agg backend), so the file needs nothing else to display. Every number in a table carries a
``data-key`` attribute naming where it comes from in ``metrics.json`` (e.g.
``model/recall@10``), which the tests use to check the page against the artifact.
"""

import html
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

_TABLE_METRICS = (
    "recall@10",
    "recall@50",
    "recall@100",
    "ndcg@10",
    "ndcg@50",
    "ndcg@100",
    "map@10",
    "map@50",
    "map@100",
    "user_recall@10",
    "user_recall@50",
    "user_recall@100",
    "user_ndcg@10",
    "user_ndcg@100",
    "user_map@10",
    "user_map@100",
    "top_k_accuracy_incl_seen@1",
    "top_k_accuracy_incl_seen@10",
    "top_k_accuracy_incl_seen@100",
    "coverage@10",
    "popularity_percentile@10",
    "rmse",
    "mae",
)
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.blessed { color: #14692a; } .not-blessed { color: #a11; }
.reasons li { font-family: monospace; }
.slice { display: flex; gap: 1.5em; align-items: flex-start; flex-wrap: wrap; }
"""


def fmt(key: str, value) -> str:
    """How a metric value is shown: percentiles with 1 decimal, the rest with 4."""
    if value is None:
        return "-"
    if "percentile" in key:
        return f"{value:.1f}"
    if key in ("count", "num_eval_pairs"):
        return f"{int(value)}"
    return f"{value:.4f}"


def _cell(key: str, metric: str, value) -> str:
    return f'<td data-key="{html.escape(key)}">{html.escape(fmt(metric, value))}</td>'


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _scorers(result: dict) -> dict[str, tuple[str, dict]]:
    """Column name -> (data-key prefix, metrics) of every scorer present."""
    out = {"model": ("model", result["model"])}
    if result.get("previous_model"):
        out["previous model"] = ("previous_model/metrics", result["previous_model"]["metrics"])
    for name, metrics in result.get("baselines", {}).items():
        out[name] = (f"baselines/{name}", metrics)
    return out


def _metrics_table(result: dict) -> str:
    scorers = _scorers(result)
    baselines = list(result.get("baselines", {}))
    head = "".join(f"<th>{html.escape(n)}</th>" for n in scorers)
    head += "".join(f"<th>model / {html.escape(b)}</th>" for b in baselines)
    rows = []
    for metric in _TABLE_METRICS:
        if not any(metric in m for _, m in scorers.values()):
            continue
        cells = "".join(
            _cell(f"{prefix}/{metric}", metric, m[metric]) if metric in m else "<td>-</td>"
            for prefix, m in scorers.values()
        )
        for b in baselines:
            key = f"{b}/{metric}"
            ratio = result.get("ratios", {}).get(key)
            cells += _cell(f"ratios/{key}", "ratio", ratio) if ratio is not None else "<td>-</td>"
        rows.append(f"<tr><td>{html.escape(metric)}</td>{cells}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def _curve_plot(curves: dict) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, values in curves["recall"].items():
        ax.plot(curves["ks"], values, marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("recall@K (seen excluded)")
    ax.grid(alpha=0.3)
    ax.legend()
    return _svg(fig)


def _slice_section(family: str, slices: dict) -> str:
    labels = list(slices)
    scorers_r = [
        s
        for s in ("model", "previous_model", "popularity", "ease")
        if any(s in v and "recall@10" in v[s] for v in slices.values())
    ]
    scorers_e = [
        s
        for s in ("model", "previous_model", "bias")
        if any(s in v and "rmse" in v[s] for v in slices.values())
    ]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, scorers, metric in ((axes[0], scorers_r, "recall@10"), (axes[1], scorers_e, "rmse")):
        width = 0.8 / max(1, len(scorers))
        for i, scorer in enumerate(scorers):
            ys = [slices[label].get(scorer, {}).get(metric, 0.0) for label in labels]
            ax.bar([x + i * width for x in range(len(labels))], ys, width, label=scorer)
        ax.set_xticks([x + 0.4 - width / 2 for x in range(len(labels))], labels, fontsize=8)
        ax.set_title(metric, fontsize=10)
        ax.legend(fontsize=7)
    plot = _svg(fig)
    head = (
        "<th>slice</th><th>count</th>"
        + "".join(f"<th>{html.escape(s)} recall@10</th>" for s in scorers_r)
        + "".join(f"<th>{html.escape(s)} rmse</th>" for s in scorers_e)
    )
    rows = []
    for label, entry in slices.items():
        base = f"slices/{family}/{label}"
        cells = _cell(f"{base}/count", "count", entry["count"])
        for scorer, metric in [(s, "recall@10") for s in scorers_r] + [
            (s, "rmse") for s in scorers_e
        ]:
            value = entry.get(scorer, {}).get(metric)
            cells += _cell(f"{base}/{scorer}/{metric}", metric, value)
        rows.append(f"<tr><td>{html.escape(label)}</td>{cells}</tr>")
    table = f"<table><tr>{head}</tr>{''.join(rows)}</table>"
    return f"<h3>{html.escape(family)}</h3><div class='slice'>{plot}{table}</div>"


def _history_plot(history: dict) -> str:
    losses = {k: v for k, v in history.items() if "loss" in k}
    others = {k: v for k, v in history.items() if "loss" not in k}
    panels = [p for p in (losses, others) if p]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.2), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for name, values in panel.items():
            ax.plot(range(1, len(values) + 1), values, marker=".", label=name)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return _svg(fig)


def render_report(result: dict) -> str:
    """The report of one ``metrics.json`` dict as a self-contained HTML page."""
    blessed = bool(result.get("blessed"))
    verdict = "BLESSED" if blessed else "NOT BLESSED"
    split = result.get("split") or {}
    facts = ", ".join(f"{html.escape(str(k))}: {html.escape(str(v))}" for k, v in split.items())
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>movierec evaluation</title><style>{_STYLE}</style></head><body>",
        "<h1>movierec evaluation</h1>",
        f"<p>Split: {facts or 'unknown'}. Train ratings: {result.get('num_train', '-')}, "
        f"eval ratings: {result.get('num_eval', '-')}, catalogue: "
        f"{result.get('num_catalogue', '-')} movies.</p>",
        f"<h2 class='{'blessed' if blessed else 'not-blessed'}'>{verdict}</h2>",
        "<ul class='reasons'>"
        + "".join(f"<li>{html.escape(r)}</li>" for r in result.get("reasons", []))
        + "</ul>",
        "<h2>Metrics</h2>",
        "<p>recall/ndcg/map: each user's train movies excluded from the candidates; "
        "top_k_accuracy_incl_seen: the TFRS FactorizedTopK accuracy (seen movies kept).</p>",
        _metrics_table(result),
    ]
    if result.get("curves"):
        parts += ["<h2>Recall@K</h2>", _curve_plot(result["curves"])]
    if result.get("slices"):
        parts.append("<h2>Slices</h2>")
        parts += [_slice_section(f, s) for f, s in result["slices"].items() if s]
    if result.get("training_history"):
        parts += ["<h2>Training</h2>", _history_plot(result["training_history"])]
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result: dict, path: str) -> str:
    """Writes :func:`render_report` to ``path`` and returns the path."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(render_report(result))
    return path
