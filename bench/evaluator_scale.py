"""The Evaluator at the 20M shape: ``make bench ARGS="evaluator_scale [--evaluator-ratings N]"``.

What the pipeline's Evaluator does (``components/evaluator.py``: read ExampleGen's splits
and catalogue, serve every eval user through the ``/v1/recommend`` code path, rank the
popularity and EASE baselines, fit the bias baseline, slices, the HTML report), timed on
synthetic ratings of the scale benchmark's shapes (``bench.scale.SHAPES``; the default, 20M
ratings over 138k users x 27k movies) with a quarter of the pairs held out: about 5M eval
pairs over 27k movies, the issue's target shape (at most 10 minutes and 8 GB).

Two child processes, so each peak (VmHWM) is its own: the first makes the inputs (the
ratings, a model trained one autoencoder step and one rating epoch with fixed choices,
exported, and its servables: what the Evaluator reads, not what it measures; the served
quality of this model says nothing), the second is the Evaluator's work alone. Nothing is
asserted.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import json
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench import proc, scale

DEFAULT_RATINGS = 20_000_000
EVAL_FRACTION = 0.25
_CHILD = "bench.evaluator_scale"


def _by_frequency(indices: np.ndarray, size: int) -> np.ndarray:
    """The indices that occur, most frequent first (ties: smaller first), as Transform's
    frequency-ordered vocabulary lists them."""
    counts = np.bincount(indices, minlength=size)
    order = np.lexsort((np.arange(size), -counts))
    return order[counts[order] > 0]


def _positions(order: np.ndarray, size: int) -> np.ndarray:
    """``[size]`` position of each index in ``order``; absent: ``len(order)`` (the OOV row)."""
    pos = np.full(size, len(order), np.int64)
    pos[order] = np.arange(len(order))
    return pos


def prepare(workdir: str, ratings: int, eval_fraction: float = EVAL_FRACTION) -> dict:
    """Writes ``examples``, ``catalogue`` and ``servables`` under ``workdir``."""
    from data import examples_io
    from data.sources.synthetic import SyntheticSource
    from publish import servables
    from trainer import data, export, features, run
    from trainer.config import TrainerConfig
    from trainer.model import NUM_RERANK_FEATURES

    start = time.perf_counter()
    num_users, num_movies = scale.shape_of(ratings)
    source = SyntheticSource(num_users=num_users, num_movies=num_movies, num_ratings=ratings)
    users, movies, values, _ = source.rating_arrays()
    held = np.random.default_rng(0).random(len(users)) < eval_fraction
    tu, tm = users[~held], movies[~held]
    user_order, movie_order = _by_frequency(tu, num_users), _by_frequency(tm, num_movies)
    vocab = data.Vocabularies([str(u + 1) for u in user_order], [str(m + 1) for m in movie_order])
    columns = {
        features.USER_IDX: _positions(user_order, num_users)[tu],
        features.MOVIE_IDX: _positions(movie_order, num_movies)[tm],
        features.RATING: values[~held].astype(np.float32),
    }
    choices = run.Choices(
        retrieval_epochs=0,
        retrieval_steps=1,
        ease_lambda=300.0,
        blend_weight=0.5,
        rating_epochs=1,
        use_reranker=False,
        reranker_weights=[np.zeros((NUM_RERANK_FEATURES, 1)), np.zeros(1)],
    )
    model, _ = run.fit_with(columns, vocab, TrainerConfig(), choices)
    trained = os.path.join(workdir, "trained")
    history = export.Histories.from_indices(
        columns[features.USER_IDX], columns[features.MOVIE_IDX], vocab
    )
    export.export_serving_model(model, vocab, history, trained, choices=choices.to_dict())
    examples, catalogue = os.path.join(workdir, "examples"), os.path.join(workdir, "catalogue")
    for split, rows in ((features.TRAIN_SPLIT, ~held), (features.EVAL_SPLIT, held)):
        examples_io.write_columns(
            examples,
            split,
            {
                features.USER_ID: users[rows] + 1,
                features.MOVIE_ID: movies[rows] + 1,
                features.RATING: values[rows],
            },
        )
    ids = np.arange(1, num_movies + 1)
    examples_io.write_columns(
        catalogue,
        features.CATALOGUE_SPLIT,
        {features.MOVIE_ID: ids, features.MOVIE_TITLE: [f"Movie {i}" for i in ids]},
    )
    servables.build_servables(trained, examples, catalogue, os.path.join(workdir, "servables"))
    return {
        "users": num_users,
        "movies": num_movies,
        "train_pairs": int((~held).sum()),
        "eval_pairs": int(held.sum()),
        "prepare_seconds": time.perf_counter() - start,
    }


def evaluate(workdir: str) -> dict:
    """The Evaluator's work on ``prepare``'s outputs: seconds of each part."""
    from evaluation import evaluation_data, report
    from evaluation.evaluate import evaluate as evaluate_served
    from pipeline.config import DEFAULT_THRESHOLDS

    start = time.perf_counter()
    data = evaluation_data.EvaluationData.read(
        os.path.join(workdir, "examples"), os.path.join(workdir, "catalogue")
    )
    read = time.perf_counter()
    result = evaluate_served(os.path.join(workdir, "servables"), data, DEFAULT_THRESHOLDS)
    scored = time.perf_counter()
    report.write_report(result, os.path.join(workdir, "report.html"))
    done = time.perf_counter()
    return {
        "read_seconds": read - start,
        "evaluate_seconds": scored - read,
        "report_seconds": done - scored,
        "seconds": done - start,
        "num_eval": result["num_eval"],
        "num_catalogue": result["num_catalogue"],
    }


def _child(*args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", _CHILD, *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"evaluator benchmark {args[0]} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_bench(out, ratings: int = DEFAULT_RATINGS) -> dict:
    """Prints and returns ``{"inputs": prepare's figures, "evaluator": evaluate's + peak_mb}``."""
    with tempfile.TemporaryDirectory() as workdir:
        inputs = _child("prepare", workdir, str(ratings))
        out.write(
            f"\nThe Evaluator at the {ratings:,}-rating shape ({inputs['users']:,} users x "
            f"{inputs['movies']:,} movies): {inputs['eval_pairs']:,} eval pairs, "
            f"{inputs['train_pairs']:,} train (inputs made in {inputs['prepare_seconds']:.0f} s, "
            f"peak {inputs['peak_mb'] / 1024:.1f} GB)\n"
        )
        ev = _child("evaluate", workdir)
    out.write(
        f"  reading the splits {ev['read_seconds']:7.1f} s\n"
        f"  serving, baselines {ev['evaluate_seconds']:7.1f} s\n"
        f"  the report         {ev['report_seconds']:7.1f} s\n"
        f"  the Evaluator      {ev['seconds']:7.1f} s, peak {ev['peak_mb'] / 1024:.2f} GB "
        f"(targets <= 600 s, <= 8 GB), {ev['num_eval'] / ev['seconds']:,.0f} eval pairs/s\n"
    )
    out.flush()
    return {"inputs": inputs, "evaluator": ev}


def _main(argv: list[str]) -> None:
    what, workdir = argv[0], argv[1]
    result = prepare(workdir, int(argv[2])) if what == "prepare" else evaluate(workdir)
    result["peak_mb"] = proc.own_peak_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    _main(sys.argv[1:])
