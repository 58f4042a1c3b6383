"""The HTML report: every number on the page equals metrics.json, in a real browser too."""

import html.parser
import re
import shutil
import subprocess

import numpy as np
import pytest

from evaluation import report

KS = (10, 50, 100)
CURVE_KS = [1, 5, 10, 20, 50, 100]
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def _top_k(recall10: float) -> dict:
    """Top-K metrics of one scorer, shaped like ``metrics.ranking_metrics`` output.

    Besides recall@10 and the popularity percentile (checked by hand below) every value gets
    its own jitter, so a number shown in the wrong row or column cannot match by chance.
    """
    rng = np.random.default_rng(round(recall10 * 1e5))
    out = {"num_eval_pairs": 19943.0}
    for k in KS:
        recall = min(1.0, recall10 * (k / 10) ** 0.6)
        out[f"recall@{k}"] = recall if k == 10 else recall * rng.uniform(0.9, 1.1)
        for name, scale in (("ndcg", 0.48), ("map", 0.31)):
            out[f"{name}@{k}"] = recall * scale * rng.uniform(0.9, 1.1)
            out[f"user_{name}@{k}"] = recall * scale * rng.uniform(1.0, 1.2)
        out[f"user_recall@{k}"] = recall * rng.uniform(1.0, 1.2)
    for k in (1, 10, 100):
        out[f"top_k_accuracy_incl_seen@{k}"] = recall10 * 0.35 * k**0.5 * rng.uniform(0.9, 1.1)
    out["coverage@10"] = recall10 * 3.1 * rng.uniform(0.9, 1.1)
    out["popularity_percentile@10"] = 99.46752 - recall10 * 60
    return out


def _slice(count: int, recall: float, rmse: float) -> dict:
    return {
        "count": count,
        "model": {"recall@10": recall, "rmse": rmse},
        "previous_model": {"recall@10": recall * 0.97, "rmse": rmse + 0.004},
        "popularity": {"recall@10": recall * 0.6},
        "ease": {"recall@10": recall * 1.15},
        "bias": {"rmse": rmse + 0.021},
    }


def _result(full: bool = True, blessed: bool = True) -> dict:
    """A metrics.json as the Evaluator writes it; ``full=False``: only model and popularity."""
    model = dict(_top_k(0.14621), rmse=0.92019, mae=0.72561)
    baselines = {"popularity": _top_k(0.08801)}
    if full:
        baselines["ease"] = _top_k(0.17262)
        baselines["bias"] = {"rmse": 0.93936, "mae": 0.74403}
    ratios = {
        f"{name}/{key}": model[key] / value
        for name, metrics in baselines.items()
        for key, value in metrics.items()
        if key != "num_eval_pairs"
    }
    result = {
        "split": {"kind": "random", "seed": 42, "eval_fraction": 0.2},
        "num_train": 80057,
        "num_eval": 19943,
        "num_catalogue": 1682,
        "model": model,
        "baselines": baselines,
        "previous_model": None,
        "ratios": ratios,
        "curves": None,
        "slices": None,
        "training_history": None,
        "blessed": blessed,
        "reasons": [
            "pass: recall@10 0.1462 >= 1.1 x popularity 0.0880 = 0.0968",
            "pass: rmse 0.9202 <= 1 x bias 0.9394 = 0.9394"
            if blessed
            else "FAIL: rmse 0.9800 <= 1 x bias 0.9394 = 0.9394",
        ],
    }
    if not full:
        return result
    result["previous_model"] = {
        "uri": "/pipeline/Trainer/model/7/Format-Serving",
        "metrics": dict(_top_k(0.14012), rmse=0.92544, mae=0.72903),
    }
    result["curves"] = {
        "ks": CURVE_KS,
        "recall": {
            "model": [0.0187, 0.0811, 0.14621, 0.2307, 0.4213, 0.5995],
            "previous_model": [0.0179, 0.0790, 0.14012, 0.2251, 0.4150, 0.5921],
            "popularity": [0.0094, 0.0452, 0.08801, 0.1512, 0.2733, 0.4114],
            "ease": [0.0231, 0.0962, 0.17262, 0.2701, 0.4592, 0.6275],
        },
    }
    ages = ("unknown", "<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
    result["slices"] = {
        "user_history": {
            "<=20": _slice(412, 0.2113, 1.0412),
            "21-100": _slice(6120, 0.1702, 0.9534),
            ">100": _slice(13411, 0.1301, 0.9011),
        },
        "age": {
            a: _slice(900 + 310 * i, 0.12 + 0.006 * i, 0.97 - 0.01 * i) for i, a in enumerate(ages)
        },
        "gender": {"F": _slice(5012, 0.1507, 0.9344), "M": _slice(14931, 0.1447, 0.9155)},
        "movie_popularity_decile": {
            str(d): _slice(100 * d * d, 0.01 * d * d / 5, 1.2 - 0.03 * d) for d in range(1, 11)
        },
    }
    result["training_history"] = {
        "epoch_loss": [912.4, 871.2, 858.9, 852.3, 849.0],
        "val_epoch_loss": [884.1, 876.3, 874.8, 874.9, 875.6],
        "retrieval_loss": [911.3, 870.4, 858.1, 851.6, 848.3],
        "ranking_loss": [1.08, 0.89, 0.84, 0.82, 0.81],
        "rmse": [1.04, 0.944, 0.917, 0.905, 0.899],
        "val_rmse": [0.961, 0.934, 0.926, 0.923, 0.922],
    }
    return result


class _Page(html.parser.HTMLParser):
    """Table rows, ``data-key`` cells, SVG sizes, reasons, verdict and external references.

    ``rows`` maps each data-key to the first cell of its table row (metric or slice label).
    """

    def __init__(self, text: str):
        super().__init__()
        self.cells, self.rows, self.svg_widths, self.reasons, self.external = {}, {}, [], [], []
        self.verdict = None
        self._text = None  # text of the open <td>, <li> or verdict <p>
        self._key = None
        self._row: list[tuple[str | None, str]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg":
            self.svg_widths.append(attrs.get("width"))
        if tag in ("link", "script", "iframe", "img", "object", "embed"):
            self.external.append((tag, attrs))
        for name in ("src", "href", "xlink:href"):
            if (attrs.get(name) or "").lower().startswith(("http", "//", "file:")):
                self.external.append((tag, attrs))
        if tag == "tr":
            self._row = []
        if tag in ("td", "li") or (tag == "p" and "verdict" in (attrs.get("class") or "")):
            self._text, self._key = "", attrs.get("data-key")

    def handle_data(self, data):
        if self._text is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "td":
            self._row.append((self._key, self._text))
        elif tag == "li":
            self.reasons.append(self._text)
        elif tag == "p" and self._text is not None:
            self.verdict = self._text
        elif tag == "tr":
            for key, text in self._row:
                if key is not None:
                    self.cells[key], self.rows[key] = text, self._row[0][1]
        if tag in ("td", "li", "p"):
            self._text = self._key = None


def _numbers(result: dict) -> dict:
    """data-key -> value of every number the page must show, walked from the dict itself."""
    out = {}

    def walk(prefix, node):
        for key, value in node.items():
            path = f"{prefix}/{key}" if prefix else key
            if isinstance(value, dict):
                walk(path, value)
            elif isinstance(value, int | float) and not isinstance(value, bool):
                out[path] = value

    walk("model", result["model"])
    walk("baselines", result["baselines"])
    if result["previous_model"]:
        walk("previous_model/metrics", result["previous_model"]["metrics"])
    walk("slices", result["slices"] or {})
    out.update({f"ratios/{k}": v for k, v in result["ratios"].items()})
    return out


def _expected_text(key: str, value) -> str:
    """The agreed format: counts as integers, percentiles 1 decimal, the rest (ratios too) 4."""
    if key.endswith(("/count", "/num_eval_pairs")):
        return f"{value:.0f}"
    if "popularity_percentile" in key and not key.startswith("ratios/"):
        return f"{value:.1f}"
    return f"{value:.4f}"


def _expected_plots(result: dict) -> int:
    families = [f for f, entries in (result["slices"] or {}).items() if entries]
    return bool(result["curves"]) + len(families) + bool(result["training_history"])


def _check_page(page: _Page, result: dict) -> None:
    expected = {k: _expected_text(k, v) for k, v in _numbers(result).items()}
    assert page.cells == expected
    for key, row in page.rows.items():
        # Metrics table rows are named by the metric, slice table rows by the slice label.
        parts = key.split("/")
        assert row == (parts[2] if parts[0] == "slices" else parts[-1]), (key, row)
    assert len(page.svg_widths) == _expected_plots(result)
    assert set(page.svg_widths) <= {str(report.PLOT_WIDTH_PX)}
    assert page.external == []


def _assert_self_contained(text: str) -> None:
    for needle in ('src="http', 'href="http', "<link", "<script", "@import"):
        assert needle not in text.lower(), needle
    # The SVG clip paths are url(#id) references inside the page; nothing else may be.
    assert re.findall(r"url\((?!#)", text) == []


def test_full_report_shows_every_number_of_the_metrics(tmp_path):
    result = _result()
    path = report.write_report(result, str(tmp_path / "report.html"))
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text == report.render_report(result)  # same metrics, same bytes
    page = _Page(text)
    _check_page(page, result)
    assert len(page.svg_widths) == 6  # curves, 4 slice families, training history
    _assert_self_contained(text)
    # Hand-checked: 0.14621 -> "0.1462"; 99.46752 - 0.14621 * 60 = 90.69 -> "90.7";
    # 0.14621 / 0.08801 = 1.66129 -> "1.6613"; 0.92019 / 0.93936 = 0.97959 -> "0.9796".
    assert page.cells["model/recall@10"] == "0.1462"
    assert page.cells["model/popularity_percentile@10"] == "90.7"
    assert page.cells["ratios/popularity/recall@10"] == "1.6613"
    assert page.cells["ratios/bias/rmse"] == "0.9796"
    assert page.cells["slices/user_history/<=20/bias/rmse"] == "1.0622"
    assert page.cells["model/num_eval_pairs"] == "19943"
    assert 'data-key="slices/user_history/&lt;=20/model/recall@10"' in text
    assert page.verdict == "BLESSED"
    assert page.reasons == result["reasons"]
    assert "/pipeline/Trainer/model/7/Format-Serving" in text


def test_minimal_report_has_model_and_popularity_and_no_plots(tmp_path):
    result = _result(full=False)
    with open(report.write_report(result, str(tmp_path / "report.html")), encoding="utf-8") as f:
        text = f.read()
    page = _Page(text)
    _check_page(page, result)
    assert page.svg_widths == []
    assert {k.split("/")[0] for k in page.cells} == {"model", "baselines", "ratios"}
    assert not any(k.startswith("baselines/ease") for k in page.cells)
    _assert_self_contained(text)


def test_not_blessed_report_shows_the_verdict_and_the_failing_reason():
    result = _result(full=False, blessed=False)
    text = report.render_report(result)
    page = _Page(text)
    assert page.verdict == "NOT BLESSED"
    assert "FAIL: rmse 0.9800 <= 1 x bias 0.9394 = 0.9394" in page.reasons
    assert "FAIL: rmse 0.9800 &lt;= 1 x bias 0.9394 = 0.9394" in text
    assert "BLESSED" not in text.replace("NOT BLESSED", "")


def _chromium(*args: str, profile) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail(
            "the report test renders the page in Debian's headless chromium, which is missing: "
            "apt-get install chromium"
        )
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_headless_chromium_shows_the_same_numbers_and_draws_the_page(tmp_path):
    result = _result()
    path = report.write_report(result, str(tmp_path / "report.html"))
    dom = _chromium("--dump-dom", f"file://{path}", profile=tmp_path / "profile-dom").stdout
    page = _Page(dom)
    _check_page(page, result)
    assert page.verdict == "BLESSED"
    shot = tmp_path / "report.png"
    _chromium(
        f"--screenshot={shot}",
        "--window-size=1200,3000",
        f"file://{path}",
        profile=tmp_path / "profile-shot",
    )
    with open(shot, "rb") as f:
        png = f.read()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    # A blank 1200x3000 page compresses to a few kB; tables and six plots do not.
    assert len(png) > 20_000
