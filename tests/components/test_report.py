"""The HTML report: every number on the page equals metrics.json, in a real browser too."""

import html.parser
import shutil
import subprocess

import pytest

from components import report

KS = [1, 5, 10, 20, 50, 100]


def _result(full: bool = True, blessed: bool = True) -> dict:
    model = {
        "recall@10": 0.14621,
        "recall@100": 0.59953,
        "ndcg@10": 0.07131,
        "rmse": 0.92019,
        "mae": 0.72561,
        "top_k_accuracy_incl_seen@100": 0.37362,
        "coverage@10": 0.47622,
        "popularity_percentile@10": 89.63591,
    }
    pop = {
        "recall@10": 0.08801,
        "recall@100": 0.41137,
        "ndcg@10": 0.04271,
        "top_k_accuracy_incl_seen@100": 0.29734,
        "coverage@10": 0.02735,
        "popularity_percentile@10": 99.46752,
    }
    result = {
        "split": {"kind": "random", "seed": 42, "eval_fraction": 0.2},
        "num_train": 80057,
        "num_eval": 19943,
        "num_catalogue": 1682,
        "model": model,
        "baselines": {"popularity": pop},
        "ratios": {"popularity/recall@10": model["recall@10"] / pop["recall@10"]},
        "blessed": blessed,
        "reasons": ["pass: recall@10 0.1462 >= 1.1 x popularity 0.0880 = 0.0968"]
        if blessed
        else ["FAIL: rmse 0.9800 <= 1 x bias 0.9394 = 0.9394"],
    }
    if full:
        result["baselines"]["ease"] = {"recall@10": 0.17262, "recall@100": 0.62749}
        result["baselines"]["bias"] = {"rmse": 0.93936, "mae": 0.74403}
        result["ratios"]["bias/rmse"] = model["rmse"] / 0.93936
        result["previous_model"] = {"uri": "/x", "metrics": dict(model, **{"recall@10": 0.1401})}
        result["curves"] = {
            "ks": KS,
            "recall": {
                "model": [0.01, 0.07, 0.146, 0.23, 0.42, 0.6],
                "popularity": [0.0, 0.04, 0.088, 0.15, 0.27, 0.41],
            },
        }
        result["slices"] = {
            "user_history": {
                "<=20": {
                    "count": 500,
                    "model": {"recall@10": 0.21, "rmse": 1.01},
                    "popularity": {"recall@10": 0.2},
                    "bias": {"rmse": 1.02},
                },
                ">100": {
                    "count": 19443,
                    "model": {"recall@10": 0.14, "rmse": 0.91},
                    "popularity": {"recall@10": 0.08},
                    "bias": {"rmse": 0.93},
                },
            },
            "gender": {
                "F": {"count": 5000, "model": {"recall@10": 0.15, "rmse": 0.93}},
                "M": {"count": 14943, "model": {"recall@10": 0.145, "rmse": 0.91}},
            },
        }
        result["training_history"] = {
            "epoch_loss": [900.0, 870.0, 860.0],
            "val_epoch_loss": [880.0, 875.0, 874.0],
            "rmse": [1.0, 0.95, 0.93],
        }
    return result


class _Cells(html.parser.HTMLParser):
    """Collects the text of every element that has a data-key attribute."""

    def __init__(self):
        super().__init__()
        self.cells, self._key, self.svgs, self.external = {}, None, 0, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "svg":
            self.svgs += 1
        for name in ("src", "href"):
            if str(attrs.get(name, "")).startswith(("http", "//")):
                self.external.append((tag, attrs[name]))
        if tag in ("link", "script") and ("src" in attrs or "href" in attrs):
            self.external.append((tag, attrs))
        if "data-key" in attrs:
            self._key = attrs["data-key"]
            self.cells[self._key] = ""

    def handle_data(self, data):
        if self._key is not None:
            self.cells[self._key] += data

    def handle_endtag(self, tag):
        if tag == "td":
            self._key = None


def _lookup(result: dict, key: str):
    """Value at a data-key path such as baselines/popularity/recall@10 or ratios/bias/rmse."""
    if key.startswith("ratios/"):
        return result["ratios"][key[len("ratios/") :]]
    node, parts = result, key.split("/")
    if parts[0] == "slices":  # slice labels may contain "/"? not ours; metric is last
        family, label, rest = parts[1], parts[2], parts[3:]
        node = result["slices"][family][label]
        for p in rest:
            node = node[p]
        return node
    for p in parts:
        node = node[p]
    return node


def _expected_text(key: str, value) -> str:
    metric = key.rsplit("/", 1)[-1]
    return report.fmt("count" if metric == "count" else metric, value)


def _check_cells(cells: dict, result: dict) -> None:
    assert cells, "no data-key cells on the page"
    for key, text in cells.items():
        assert text.strip() == _expected_text(key, _lookup(result, key)), key


def test_every_number_matches_the_metrics_and_nothing_is_external(tmp_path):
    result = _result()
    page = report.render_report(result)
    parser = _Cells()
    parser.feed(page)
    _check_cells(parser.cells, result)
    # curves + 2 slice families + training history
    assert parser.svgs == 4
    assert parser.external == []
    for key in (
        "model/recall@10",
        "baselines/ease/recall@100",
        "previous_model/metrics/recall@10",
        "ratios/popularity/recall@10",
        "slices/user_history/<=20/bias/rmse",
        "slices/gender/M/count",
    ):
        assert key in parser.cells, key
    assert parser.cells["model/popularity_percentile@10"] == "89.6"
    assert parser.cells["model/recall@10"] == "0.1462"
    assert "BLESSED" in page and "NOT BLESSED" not in page


def test_minimal_result_and_not_blessed():
    result = _result(full=False, blessed=False)
    page = report.render_report(result)
    parser = _Cells()
    parser.feed(page)
    _check_cells(parser.cells, result)
    assert parser.svgs == 0
    assert "NOT BLESSED" in page
    assert "FAIL: rmse 0.9800 &lt;= 1 x bias 0.9394 = 0.9394" in page


def _chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is needed for the report test: apt-get install chromium")
    return path


_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_headless_chromium_shows_the_same_numbers(tmp_path):
    result = _result()
    path = report.write_report(result, str(tmp_path / "report.html"))
    browser = _chromium()
    dom = subprocess.run(
        [
            browser,
            *_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            f"file://{path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    parser = _Cells()
    parser.feed(dom)
    _check_cells(parser.cells, result)
    assert parser.svgs == 4
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            *_FLAGS,
            f"--user-data-dir={tmp_path / 'profile2'}",
            f"--screenshot={shot}",
            "--window-size=1200,3000",
            f"file://{path}",
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000
