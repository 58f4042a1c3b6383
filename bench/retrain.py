"""Scheduled retraining on MovieLens 100k cut into spans by time: warm start against cold.

``python -m bench.retrain`` (``bench/__main__.py`` may call :func:`run`). MovieLens 100k
(``MOVIEREC_DATA_HOME``) is cut by timestamp into ``NUM_SPANS`` spans of equal size, written
as MovieLens "latest" CSVs (``ratings.csv``, ``movies.csv``) into a temporary span root.
Two measurements, on a window of ``WINDOW`` spans:

1. ``movierec retrain`` on the last window after a blessed retrain on the window before it:
   wall time, per-component seconds and recall@10 with the warm start, without
   (``--warm-start none``) and warm-started with 1 epoch instead of 5, each from its own
   copy of the same ML-Metadata and serving directory, so all compare against the same
   blessed model.
2. Epochs to reach the cold model's recall@10: ``trainer.run.train`` on the last window, cold
   and warm-started from the model of the previous window (exported and read back as the
   Trainer does), recall@10 after every epoch.

Figures are printed; nothing is asserted.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from data import data_home, records, splits
from trainer import data, export, features, warm_start
from trainer.config import TrainerConfig
from trainer.run import train

NUM_SPANS = 4
WINDOW = 3
MAX_EPOCHS = 100
_ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def write_spans(root: Path, num_spans: int = NUM_SPANS) -> list[list[records.Rating]]:
    """Writes ml-100k as ``span-1`` .. ``span-<num_spans>`` of equal size, oldest first.

    Every span holds the whole catalogue in its movies.csv, as a real drop of the "latest"
    layout does. Returns the ratings of each span.
    """
    ml100k = data_home.ensure_ml100k(data_home.resolve_data_home(os.environ))
    ratings = [r for r in records.iter_ratings(ml100k / "u.data") if isinstance(r, records.Rating)]
    ratings.sort(key=lambda r: (r.timestamp, int(r.user_id), int(r.movie_id)))
    movies = records.read_movies(ml100k / "u.item")
    bounds = np.linspace(0, len(ratings), num_spans + 1).astype(int)
    spans = [ratings[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    for i, rows in enumerate(spans, 1):
        span = root / f"span-{i}"
        span.mkdir(parents=True)
        with open(span / "ratings.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["userId", "movieId", "rating", "timestamp"])
            writer.writerows((r.user_id, r.movie_id, r.rating, r.timestamp) for r in rows)
        with open(span / "movies.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["movieId", "title", "genres"])
            for m in movies.values():
                writer.writerow([m.movie_id, m.title, "|".join(m.genres) or "(no genres listed)"])
    return spans


def _retrain(root: Path, workdir: Path, *flags: str) -> dict:
    """One ``movierec retrain`` on the latest WINDOW spans; its summary plus wall seconds."""
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "retrain",
            "--spans",
            str(root),
            "--window",
            str(WINDOW),
            *flags,
        ],
        env={**_ENV, "MOVIEREC_WORKDIR": str(workdir)},
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"retrain failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}")
    latest = max(workdir.glob("runs/*/summary.json"), key=os.path.getmtime)
    return {**json.loads(latest.read_text()), "wall_seconds": wall}


def bench_pipeline(tmp: Path, out) -> None:
    root = tmp / "spans"
    root.mkdir(parents=True)
    spans = write_spans(tmp / "all")
    for i in range(1, NUM_SPANS):
        os.rename(tmp / "all" / f"span-{i}", root / f"span-{i}")
    first = _retrain(root, tmp / "warm")
    # The other runs start from the same state: ML-Metadata (whose artifact URIs point into
    # the first workdir, read-only here) and the serving directory.
    variants = {
        "warm": (),
        "cold": ("--warm-start", "none"),
        "warm, 1 epoch": ("--trainer-config", '{"epochs": 1}'),
    }
    workdirs = {name: tmp / f"run-{i}" for i, name in enumerate(variants)}
    workdirs["warm"] = tmp / "warm"  # the first run's: ML-Metadata holds its paths
    for name, workdir in workdirs.items():
        if name != "warm":
            workdir.mkdir()
            shutil.copy2(workdirs["warm"] / "metadata.sqlite", workdir / "metadata.sqlite")
            shutil.copytree(workdirs["warm"] / "serving", workdir / "serving", symlinks=True)
    os.rename(tmp / "all" / f"span-{NUM_SPANS}", root / f"span-{NUM_SPANS}")
    runs = {name: _retrain(root, workdirs[name], *flags) for name, flags in variants.items()}
    sizes = ", ".join(f"{len(s):,}" for s in spans)
    print(
        f"\n`movierec retrain` on MovieLens 100k in {NUM_SPANS} spans by time ({sizes} ratings),"
        f" window {WINDOW}:",
        file=out,
    )
    print(
        f"  first run, spans {', '.join(first['spans'])}: {first['wall_seconds']:.1f} s, "
        f"recall@10 {first['evaluation']['model']['recall@10']:.4f}, blessed {first['blessed']}",
        file=out,
    )
    names = ["MovieRecExampleGen", "StatisticsGen", "Transform", "Trainer", "MovieRecEvaluator"]
    print(f"  retrain on {', '.join(runs['warm']['spans'])}:", file=out)
    print(
        f"    {'':<14}{'wall s':>8}"
        + "".join(f"{n.replace('MovieRec', ''):>14}" for n in names)
        + f"{'recall@10':>11}{'rmse':>8}  blessed",
        file=out,
    )
    for name, r in runs.items():
        seconds = "".join(f"{r['seconds_per_component'].get(n, 0.0):>14.1f}" for n in names)
        model = r["evaluation"]["model"]
        print(
            f"    {name:<14}{r['wall_seconds']:>8.1f}{seconds}{model['recall@10']:>11.4f}"
            f"{model['rmse']:>8.3f}  {r['blessed']}",
            file=out,
        )
    carried = runs["warm"]["warm_start"]
    print(
        f"    warm start carried over {carried['rows_carried_over']['users']} users and "
        f"{carried['rows_carried_over']['movies']} movies ({carried['rows_new']['users']} "
        f"users, {carried['rows_new']['movies']} movies new)",
        file=out,
    )


_SPLIT = splits.SplitConfig()  # ExampleGen's default split


def window_columns(
    rows: list[records.Rating], seed: int = _SPLIT.seed, eval_fraction: float = _SPLIT.eval_fraction
):
    """The window's ratings split and indexed as ExampleGen and Transform do (random split,
    vocabularies of the train split by frequency, unknown ids -> the OOV row)."""
    is_eval = [
        splits.split_of(r.user_id, r.movie_id, seed, eval_fraction) == features.EVAL_SPLIT
        for r in rows
    ]
    train_rows = [r for r, e in zip(rows, is_eval, strict=True) if not e]
    eval_rows = [r for r, e in zip(rows, is_eval, strict=True) if e]
    vocab = data.Vocabularies(
        users=[u for u, _ in Counter(r.user_id for r in train_rows).most_common()],
        movies=[m for m, _ in Counter(r.movie_id for r in train_rows).most_common()],
    )
    users = {u: i for i, u in enumerate(vocab.users)}
    movies = {m: i for i, m in enumerate(vocab.movies)}

    def columns(part):
        return {
            features.USER_IDX: np.array([users.get(r.user_id, len(users)) for r in part]),
            features.MOVIE_IDX: np.array([movies.get(r.movie_id, len(movies)) for r in part]),
            features.RATING: np.array([r.rating for r in part], np.float32),
        }

    return columns(train_rows), columns(eval_rows), vocab


def _first_check_reaching(curve: list, target: float) -> int | None:
    return next((epochs for epochs, value in curve if value >= target), None)


def bench_epochs(spans: list[list[records.Rating]], tmp: Path, out) -> None:
    """Validation NDCG@100 of the retrieval model by epochs, cold and warm-started, on the
    last window (the Trainer's own validation cut; ``training.json`` reports the same)."""
    config = TrainerConfig(epochs=MAX_EPOCHS, validate_every=10)
    before = [r for span in spans[-WINDOW - 1 : -1] for r in span]
    after = [r for span in spans[-WINDOW:] for r in span]
    old_train, _, old_vocab = window_columns(before)
    previous_model, summary = train(old_train, old_vocab, config)
    histories = export.Histories.from_indices(
        old_train[features.USER_IDX], old_train[features.MOVIE_IDX], old_vocab
    )
    export.export_serving_model(
        previous_model, old_vocab, histories, str(tmp / "previous"), choices=summary["chosen"]
    )
    previous = warm_start.read_previous_model(str(tmp / "previous"))
    train_cols, _, vocab = window_columns(after)
    curves, seconds = {}, {}
    for name, start_from in (("cold", None), ("warm", previous)):
        _, summary = train(train_cols, vocab, config, previous=start_from)
        curves[name] = summary["validation"]["retrieval_ndcg@100_by_epochs"]
        seconds[name] = summary["choose_seconds"] + summary["train_seconds"]
    target = max(v for _, v in curves["cold"])
    print(
        f"\nValidation NDCG@100 of the retrieval model by epochs on the last window "
        f"({len(train_cols[features.RATING]):,} train ratings; warm: from the previous "
        f"window's model); the cold model's best is {target:.4f}:",
        file=out,
    )
    warm = dict(curves["warm"])
    print(f"  {'epochs':>6}{'cold':>9}{'warm':>9}", file=out)
    for epochs, value in curves["cold"]:
        cell = f"{warm[epochs]:>9.4f}" if epochs in warm else f"{'-':>9}"
        print(f"  {epochs:>6}{value:>9.4f}{cell}", file=out)
    for name in ("cold", "warm"):
        reached = _first_check_reaching(curves[name], target)
        print(
            f"  {name}: reaches it at {reached or f'> {MAX_EPOCHS}'} epochs "
            f"(Trainer {seconds[name]:.0f} s)",
            file=out,
        )


def run(out=sys.stdout, what=("pipeline", "epochs")) -> None:
    """The measurements named in ``what`` (``"pipeline"``, ``"epochs"``), printed to ``out``."""
    with tempfile.TemporaryDirectory(prefix="movierec-retrain-") as tmp:
        tmp = Path(tmp)
        if "pipeline" in what:
            bench_pipeline(tmp / "pipeline", out)
        if "epochs" in what:
            bench_epochs(write_spans(tmp / "epochs" / "spans"), tmp / "epochs", out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", nargs="*", default=["pipeline", "epochs"])
    run(sys.stdout, parser.parse_args(argv).what)
    return 0


if __name__ == "__main__":
    sys.exit(main())
