"""``make bench``: pipeline wall time, Trainer throughput against the tutorial, evaluation,
ingestion.

Usage: python -m bench [pipeline] [trainer] [evaluation] [ingest] [serving] [retrieval_scale]
    [runner_modes] [retrain] [quality] [refit] [http_servers] [soak] [scale] [trainer_steps]
    [rating_steps] [evaluator_scale] [--repeats N] [--evaluator-ratings N] [--trainer-config JSON]
    [--ingest-ratings N] [--soak-seconds S] [--scale-ratings N,N,..] [--beam-workers N]

Figures are printed (medians over repeats, ratios within one run); nothing is asserted.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import tensorflow as tf

from bench import (
    evaluator_scale,
    http_servers,
    quality,
    rating_steps,
    refit,
    retrain,
    retrieval_scale,
    runner_modes,
    scale,
    serving,
    soak,
    trainer_steps,
)
from bench.evaluation import bench_evaluation
from bench.ingest import bench_ingest
from bench.tutorial import train_tutorial
from data import data_home, records, splits
from evaluation import metrics
from pipeline import flags
from trainer import data, features, run, selection
from trainer.config import TrainerConfig
from trainer.run import train

_SPLIT = splits.SplitConfig()  # ExampleGen's default split


def load_ml100k(seed: int = _SPLIT.seed, eval_fraction: float = _SPLIT.eval_fraction):
    """MovieLens 100k split as ExampleGen splits it, as vocabulary-index columns."""
    data_dir = data_home.ensure_ml100k(data_home.resolve_data_home(os.environ))
    ratings = list(records.iter_ratings(data_dir / "u.data"))
    ratings = [r for r in ratings if not isinstance(r, records.Reject)]
    is_eval = np.array(
        [
            splits.split_of(r.user_id, r.movie_id, seed, eval_fraction) == features.EVAL_SPLIT
            for r in ratings
        ]
    )
    train_rows = [r for r, e in zip(ratings, is_eval, strict=True) if not e]
    eval_rows = [r for r, e in zip(ratings, is_eval, strict=True) if e]
    users = [u for u, _ in Counter(r.user_id for r in train_rows).most_common()]
    movies = [m for m, _ in Counter(r.movie_id for r in train_rows).most_common()]
    uidx = {u: i for i, u in enumerate(users)}
    midx = {m: i for i, m in enumerate(movies)}

    def columns(rows):
        return {
            features.USER_IDX: np.array([uidx.get(r.user_id, len(users)) for r in rows]),
            features.MOVIE_IDX: np.array([midx.get(r.movie_id, len(movies)) for r in rows]),
            features.RATING: np.array([r.rating for r in rows], np.float32),
        }

    return columns(train_rows), columns(eval_rows), data.Vocabularies(users, movies)


def _quality(score_fn, predict, train_cols, eval_cols, num_users, num_movies):
    """RMSE and TFRS top-100 accuracy (seen kept, all movies) of a trained model.

    ``score_fn``: ``[batch]`` user rows -> ``[batch, num_movies + 1]`` retrieval scores.
    """
    seen = metrics.seen_matrix(
        train_cols[features.USER_IDX], train_cols[features.MOVIE_IDX], num_users + 1, num_movies + 1
    )
    eval_users = eval_cols[features.USER_IDX]
    ranks = metrics.rank_eval_pairs(
        score_fn,
        eval_users,
        eval_cols[features.MOVIE_IDX],
        seen,
        num_movies + 1,
    )
    counts = np.bincount(train_cols[features.MOVIE_IDX], minlength=num_movies + 1)
    top = metrics.ranking_metrics(ranks, eval_users, counts, ks=(10, 100), tfrs_ks=(100,))
    pred = predict(
        tf.constant(eval_cols[features.USER_IDX]), tf.constant(eval_cols[features.MOVIE_IDX])
    ).numpy()
    top.update(metrics.rating_metrics(pred, eval_cols[features.RATING]))
    return top


def bench_trainer(repeats: int) -> None:
    train_cols, eval_cols, vocab = load_ml100k()
    nu, nm, n = len(vocab.users), len(vocab.movies), len(train_cols[features.RATING])
    config = TrainerConfig()
    rows = {"tutorial": [], "movierec": []}
    for r in range(repeats):
        start = time.perf_counter()
        tut = train_tutorial(train_cols, nu, nm, epochs=3, seed=42 + r)
        secs = time.perf_counter() - start
        ue = tut.user_model(tf.range(nu + 1)).numpy()
        me = tut.movie_model(tf.range(nm + 1)).numpy()
        q = _quality(
            metrics.factorized_scores(ue, me), tut.predict_rating, train_cols, eval_cols, nu, nm
        )
        rows["tutorial"].append({"eps": n * 3 / secs, "seconds": secs, **q})
        start = time.perf_counter()
        model, summary = train(train_cols, vocab, dataclasses.replace(config, seed=42 + r))
        secs = time.perf_counter() - start
        x = selection.interactions(
            train_cols[features.USER_IDX], train_cols[features.MOVIE_IDX], (nu + 1, nm + 1)
        )
        q = _quality(
            lambda rows, m=model, h=x: run.retrieval_scores(m, h[rows]),
            model.predict_rating,
            train_cols,
            eval_cols,
            nu,
            nm,
        )
        # Ratings seen per second over both rounds (choosing on the cut, then the refit).
        rows["movierec"].append({"eps": summary["examples_per_second"], "seconds": secs, **q})
    print(f"\nTrainer on MovieLens 100k ({n} train ratings), medians of {repeats} runs:")
    print(
        f"  {'model':<10}{'examples/s':>12}{'seconds':>9}{'RMSE':>8}"
        f"{'top100 incl':>13}{'recall@10':>11}{'recall@100':>12}"
    )
    med = {}
    for name, runs in rows.items():
        med[name] = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        m = med[name]
        print(
            f"  {name:<10}{m['eps']:>12.0f}{m['seconds']:>9.1f}{m['rmse']:>8.3f}"
            f"{m['top_k_accuracy_incl_seen@100']:>13.3f}{m['recall@10']:>11.3f}{m['recall@100']:>12.3f}"
        )
    ratio = med["movierec"]["eps"] / med["tutorial"]["eps"]
    print(f"  throughput ratio movierec/tutorial: {ratio:.1f}x (target >= 5x)")
    print(f"  config: {json.dumps(config.to_dict())}")


def bench_pipeline() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "run"],
            env={**os.environ, "MOVIEREC_WORKDIR": workdir},
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            print(proc.stdout, proc.stderr)
            raise SystemExit("pipeline run failed")
        summary = json.loads(next(Path(workdir).glob("runs/*/summary.json")).read_text())
    print("\n`movierec run` on MovieLens 100k (one run):")
    for name, secs in summary["seconds_per_component"].items():
        print(f"  {name:<30}{secs:7.1f} s")
    print(f"  {'pipeline total':<30}{summary['seconds_total']:7.1f} s")
    print(f"  {'command wall time':<30}{wall:7.1f} s (target <= 180 s)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", nargs="*", default=["pipeline", "trainer", "evaluation", "ingest"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--ingest-ratings", type=int, default=20_000_000, help="synthetic ratings ingested"
    )
    parser.add_argument("--soak-seconds", type=float, default=600.0, help="length of the soak")
    parser.add_argument(
        "--soak-recycle",
        type=int,
        default=1,
        help="serve's --recycle-after-reloads in the soak (0: one process reloading in place)",
    )
    parser.add_argument(
        "--scale-ratings",
        default=",".join(str(n) for n in scale.DEFAULT_SIZES),
        help="sizes of the scale benchmark, e.g. 1M,5M,20M",
    )
    parser.add_argument("--beam-workers", type=int, default=1, help="scale: movierec run's")
    parser.add_argument(
        "--evaluator-ratings",
        type=int,
        default=evaluator_scale.DEFAULT_RATINGS,
        help="evaluator_scale: synthetic ratings (a quarter held out)",
    )
    parser.add_argument(
        "--trainer-config",
        default=None,
        help='quality: the Trainer\'s config as a JSON object, e.g. {"precision": "float32"}',
    )
    args = parser.parse_args(argv)
    if "pipeline" in args.what:
        bench_pipeline()
    if "trainer" in args.what:
        bench_trainer(args.repeats)
    if "evaluation" in args.what:
        bench_evaluation()
    if "ingest" in args.what:
        bench_ingest(args.ingest_ratings, args.repeats)
    if "serving" in args.what:
        serving.run(sys.stdout)
    if "retrieval_scale" in args.what:
        retrieval_scale.run(sys.stdout)
    if "retrain" in args.what:
        retrain.run(sys.stdout)
    if "quality" in args.what:  # 9 trainings (3 shapes x 3 seeds): not in the default set
        overrides = flags.trainer_json(args.trainer_config)
        quality.bench_quality(config=TrainerConfig.from_custom_config(overrides))
    if "refit" in args.what:  # 4 trainings: not in the default set
        refit.bench_refit()
    if "http_servers" in args.what:  # stdlib server vs uvicorn: not in the default set
        http_servers.run(sys.stdout)
    if "soak" in args.what:  # 10 minutes: not in the default set
        soak.run(sys.stdout, seconds=args.soak_seconds, recycle_after_reloads=args.soak_recycle)
    if "scale" in args.what:  # hours at 20M: not in the default set
        scale.run(sys.stdout, scale.parse_sizes(args.scale_ratings), args.beam_workers)
    if "trainer_steps" in args.what:  # three catalogue sizes x three batch sizes
        trainer_steps.run_bench(sys.stdout, repeats=args.repeats)
    if "rating_steps" in args.what:  # three shapes' speed, three datasets' quality
        rating_steps.run_bench(sys.stdout, repeats=args.repeats)
    if "evaluator_scale" in args.what:  # about 5M eval pairs: not in the default set
        evaluator_scale.run_bench(sys.stdout, args.evaluator_ratings)
    if "runner_modes" in args.what:  # two full pipeline runs per mode: not in the default set
        runner_modes.run(sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
