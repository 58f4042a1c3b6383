"""Evaluation benchmark: the Evaluator's ranking code on MovieLens 100k and at scale.

Run by ``python -m bench evaluation``; each measurement runs in a child process so its peak
memory (VmHWM) is its own. Prints wall times and peak memory.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import json
import subprocess
import sys
import time

import numpy as np

from bench import proc

_CHILD = "bench.evaluation"


def _synthetic(num_users, num_movies, train_per_user, eval_per_user, dim, seed=0):
    from evaluation import metrics

    rng = np.random.default_rng(seed)
    pop = 1.0 / np.arange(1, num_movies + 1) ** 0.8  # power-law popularity
    pop /= pop.sum()
    n_train, n_eval = num_users * train_per_user, num_users * eval_per_user
    train_users = np.repeat(np.arange(num_users), train_per_user)
    train_movies = rng.choice(num_movies, n_train, p=pop)
    eval_users = np.repeat(np.arange(num_users), eval_per_user)
    eval_movies = rng.choice(num_movies, n_eval, p=pop)
    seen = metrics.seen_matrix(train_users, train_movies, num_users, num_movies)
    user_emb = rng.normal(size=(num_users, dim)).astype(np.float32)
    movie_emb = rng.normal(size=(num_movies, dim)).astype(np.float32)
    return seen, train_movies, eval_users, eval_movies, user_emb, movie_emb


def _run_scale(num_users, num_movies):
    from evaluation import baselines, metrics

    seen, train_movies, eval_users, eval_movies, ue, me = _synthetic(
        num_users, num_movies, 20, 2, 32
    )
    counts = np.bincount(train_movies, minlength=num_movies)
    out = {}
    start = time.perf_counter()
    ranks = metrics.rank_eval_pairs(
        metrics.factorized_scores(ue, me), eval_users, eval_movies, seen, num_movies
    )
    metrics.ranking_metrics(ranks, eval_users, counts)
    out["model_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    ranks = metrics.rank_eval_pairs(
        baselines.popularity_scores(counts), eval_users, eval_movies, seen, num_movies
    )
    metrics.ranking_metrics(ranks, eval_users, counts)
    out["popularity_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    ease = baselines.fit_ease(seen)
    ranks = metrics.rank_eval_pairs(
        baselines.ease_scores(seen, ease), eval_users, eval_movies, seen, num_movies
    )
    metrics.ranking_metrics(ranks, eval_users, counts)
    out["ease_seconds"] = time.perf_counter() - start
    out["eval_pairs"] = len(eval_users)
    return out


def _run_ml100k():
    from data import data_home, records, splits
    from evaluation import baselines, evaluation_data, metrics
    from trainer import features

    data_dir = data_home.ensure_ml100k(data_home.resolve_data_home(os.environ))
    start = time.perf_counter()
    rows = [r for r in records.iter_ratings(data_dir / "u.data") if isinstance(r, records.Rating)]
    default = splits.SplitConfig()  # ExampleGen's default split
    split = [
        splits.split_of(r.user_id, r.movie_id, default.seed, default.eval_fraction) for r in rows
    ]

    def cols(name):
        part = [r for r, s in zip(rows, split, strict=True) if s == name]
        return {
            features.USER_ID: np.array([r.user_id for r in part], dtype=object),
            features.MOVIE_ID: np.array([r.movie_id for r in part], dtype=object),
            features.RATING: np.array([r.rating for r in part]),
        }

    movies = records.read_movies(data_dir / "u.item")
    data = evaluation_data.EvaluationData.from_columns(
        cols(features.TRAIN_SPLIT), cols(features.EVAL_SPLIT), np.array(list(movies), dtype=object)
    )
    read = time.perf_counter() - start
    rng = np.random.default_rng(0)
    ue = rng.normal(size=(len(data.user_ids), 16)).astype(np.float32)
    me = rng.normal(size=(len(data.movie_ids), 16)).astype(np.float32)
    start = time.perf_counter()
    for score_fn in (
        metrics.factorized_scores(ue, me),
        baselines.popularity_scores(data.train_counts),
        baselines.ease_scores(data.seen, baselines.fit_ease(data.seen)),
    ):
        ranks = metrics.rank_eval_pairs(
            score_fn, data.eval_users, data.eval_movies, data.seen, len(data.movie_ids)
        )
        metrics.ranking_metrics(ranks, data.eval_users, data.train_counts)
    return {"read_seconds": read, "rank_seconds": time.perf_counter() - start}


def _child(what: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", _CHILD, what], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"evaluation benchmark {what} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_evaluation() -> None:
    ml = _child("ml100k")
    print("\nEvaluation, MovieLens 100k (model + popularity + EASE rankings, 19.9k eval pairs):")
    print(f"  ranking and metrics {ml['rank_seconds']:6.1f} s  (target <= 10 s)")
    print(f"  reading the splits  {ml['read_seconds']:6.1f} s  peak memory {ml['peak_mb']:.0f} MB")
    big = _child("scale")
    print("\nEvaluation, synthetic 100k users x 50k movies (2M train, 200k eval pairs):")
    for key in ("model", "popularity", "ease"):
        print(f"  {key:<11}{big[key + '_seconds']:7.1f} s")
    print(f"  peak memory {big['peak_mb']:.0f} MB (target <= 4096 MB)")


def _main(what: str) -> None:
    out = _run_ml100k() if what == "ml100k" else _run_scale(100_000, 50_000)
    out["peak_mb"] = proc.own_peak_mb()
    print(json.dumps(out))


if __name__ == "__main__":
    _main(sys.argv[1])
