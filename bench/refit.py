"""Refit on every ingested rating, measured the way production meets it
(``make bench ARGS=refit``).

MovieLens 100k: a hashed 10% of the ratings is the future, never given to the pipeline. The
rest is split 80/20 as ExampleGen splits it; the model is trained and chosen on train as the
Trainer does; then both candidates for the push are built and pushed the way the Pusher
pushes (servables with the seen data of every ingested rating):

- ``evaluated``: the model the Evaluator measured (trained on the train split);
- ``refit``: the same choices trained again on train and eval (``trainer.run.fit_with``),
  as the pipeline's refit Trainer does.

Each serves every user with future ratings through ``serving.recommender``; printed: the
served recall@10 and NDCG@10 of the future ratings, per seed and their mean.
"""

import os
import statistics
import tempfile

import numpy as np

from bench.quality import SHAPES, _columns, _vocabulary, _write_examples
from data import splits
from publish import servables
from serving import loading, names, recommender
from trainer import export, features, run
from trainer.config import TrainerConfig

SEEDS = (42, 7)
FUTURE_FRACTION = 0.1
_FUTURE_SEED = 1000


def _served(workdir: str, trained: str, examples: str, catalogue: str) -> recommender.Recommender:
    out = os.path.join(workdir, "servables")
    servables.build_servables(trained, examples, catalogue, out)
    pushed = servables.push_servables(
        out, os.path.join(workdir, "staging"), os.path.join(workdir, "serving")
    )
    import tensorflow as tf

    return recommender.Recommender.from_saved_models(
        loading.load_saved_model(pushed[names.RETRIEVAL]["path"]),
        tf.saved_model.load(pushed[names.RANKING]["path"]),
    )


def _score(rec: recommender.Recommender, future: np.ndarray) -> dict:
    users = sorted(set(future[:, 0]))
    lists = {}
    for lo in range(0, len(users), 256):
        batch = users[lo : lo + 256]
        served = rec.recommend(batch, 10)
        for row, user in enumerate(batch):
            lists[user] = list(served.movie_ids[row])
    position = np.array(
        [lists[u].index(m) if m in lists[u] else 10**6 for u, m in future[:, :2]], np.float64
    )
    hit = position < 10
    return {
        "recall@10": float(hit.mean()),
        "ndcg@10": float(np.where(hit, 1.0 / np.log2(position + 2.0), 0.0).mean()),
    }


def run_one(ratings, catalogue, seed: int, workdir: str) -> dict:
    rows = np.array(ratings, dtype=object)
    is_future = np.array(
        [
            splits.split_of(u, m, _FUTURE_SEED, FUTURE_FRACTION) == features.EVAL_SPLIT
            for u, m, _ in ratings
        ]
    )
    future, ingested = rows[is_future], rows[~is_future]
    is_eval = np.array(
        [splits.split_of(u, m, seed, 0.2) == features.EVAL_SPLIT for u, m, _ in ingested]
    )
    parts = {features.TRAIN_SPLIT: ingested[~is_eval], features.EVAL_SPLIT: ingested[is_eval]}
    examples, cat_uri = _write_examples(workdir, parts, catalogue, ratings)
    vocab = _vocabulary(parts[features.TRAIN_SPLIT])  # Transform analyses the train split
    config = TrainerConfig(seed=seed)
    results = {}
    model, summary = run.train(_columns(parts[features.TRAIN_SPLIT], vocab), vocab, config)
    choices = run.Choices.from_dict(summary["chosen"])
    for name, part in (("evaluated", parts[features.TRAIN_SPLIT]), ("refit", ingested)):
        if name == "refit":
            model, _ = run.fit_with(_columns(part, vocab), vocab, config, choices)
        trained = os.path.join(workdir, f"trained-{name}")
        export.export_serving_model(
            model, vocab, export.Histories.from_ids(part[:, 0], part[:, 1]), trained
        )
        rec = _served(os.path.join(workdir, name), trained, examples, cat_uri)
        results[name] = _score(rec, future)
    return results


def bench_refit(seeds=SEEDS) -> dict:
    ratings, catalogue = SHAPES["ml-100k"]()
    table = {"evaluated": [], "refit": []}
    print(
        f"\nRefit on every ingested rating, ml-100k, {FUTURE_FRACTION:.0%} future ratings held out:"
    )
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            result = run_one(ratings, catalogue, seed, tmp)
        for name, metrics in result.items():
            table[name].append(metrics)
        print(
            f"  seed {seed}: future recall@10 evaluated {result['evaluated']['recall@10']:.4f}, "
            f"refit {result['refit']['recall@10']:.4f}; ndcg@10 "
            f"{result['evaluated']['ndcg@10']:.4f} vs {result['refit']['ndcg@10']:.4f}",
            flush=True,
        )
    for key in ("recall@10", "ndcg@10"):
        means = {n: statistics.fmean(m[key] for m in runs) for n, runs in table.items()}
        print(f"  mean {key}: evaluated {means['evaluated']:.4f}, refit {means['refit']:.4f}")
    return table
