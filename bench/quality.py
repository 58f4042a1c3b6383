"""Served quality across dataset shapes and split seeds (``make bench ARGS=quality``).

For each shape and seed: the random 80/20 split ExampleGen makes, the Trainer's ``train``
with the default config, the servable models (``components.servables``) and the Evaluator's
``evaluate``: the served list users get, through ``serving.recommender``. Printed as mean ±
standard deviation over the seeds, for the model, popularity, EASE and the bias model.

Shapes: MovieLens 100k (from the data home), the MovieLens latest-small shape (610 users,
9,700 movies, 100k ratings) and a Netflix-like shape (14,000 users, 100 movies, 100k
ratings, a few ratings per user), both from the synthetic source.
"""

import os
import statistics
import tempfile
from collections import Counter

import numpy as np

from data import data_home, examples_io, records, splits
from data.sources.synthetic import SyntheticSource
from evaluation import evaluation_data
from evaluation.evaluate import evaluate
from pipeline.config import DEFAULT_THRESHOLDS
from publish import servables
from trainer import data, export, features
from trainer.config import TrainerConfig, retrieval_length
from trainer.run import train

SEEDS = (42, 7, 123)


def _ml100k():
    path = data_home.ensure_ml100k(data_home.resolve_data_home(os.environ)) / "u.data"
    rows = [r for r in records.iter_ratings(path) if isinstance(r, records.Rating)]
    return [(r.user_id, r.movie_id, r.rating) for r in rows], None


def _synthetic(**kwargs):
    def load():
        source = SyntheticSource(seed=0, **kwargs)
        movies = source.read_movies([])
        latest = {}
        for shard in source.rating_shards():
            for r in source.read_ratings(shard, movies, None):
                if isinstance(r, records.Rating):
                    latest[(r.user_id, r.movie_id)] = r.rating
        return [(u, m, x) for (u, m), x in latest.items()], list(movies)

    return load


SHAPES = {
    "ml-100k": _ml100k,
    "latest-small shape": _synthetic(num_users=610, num_movies=9_700, num_ratings=100_000),
    "netflix-like shape": _synthetic(num_users=14_000, num_movies=100, num_ratings=100_000),
}


def _vocabulary(train_rows: np.ndarray) -> data.Vocabularies:
    """Users and movies of the train rows by frequency, as Transform orders them."""
    return data.Vocabularies(
        [u for u, _ in Counter(train_rows[:, 0]).most_common()],
        [m for m, _ in Counter(train_rows[:, 1]).most_common()],
    )


def _columns(rows: np.ndarray, vocab: data.Vocabularies) -> dict[str, np.ndarray]:
    """Transformed columns of ``[n, 3]`` (user, movie, rating) rows (unknown ids: OOV)."""
    uidx = {u: i for i, u in enumerate(vocab.users)}
    midx = {m: i for i, m in enumerate(vocab.movies)}
    return {
        features.USER_IDX: np.array([uidx.get(u, len(uidx)) for u in rows[:, 0]], np.int64),
        features.MOVIE_IDX: np.array([midx.get(m, len(midx)) for m in rows[:, 1]], np.int64),
        features.RATING: rows[:, 2].astype(np.float32),
    }


def _write_examples(workdir: str, parts: dict, catalogue, ratings) -> tuple[str, str]:
    """ExampleGen's two outputs: the rating splits and the catalogue."""
    examples, cat_uri = os.path.join(workdir, "examples"), os.path.join(workdir, "catalogue")
    for split, part in parts.items():
        examples_io.write_columns(
            examples,
            split,
            {
                features.USER_ID: part[:, 0],
                features.MOVIE_ID: part[:, 1],
                features.RATING: part[:, 2].astype(np.float32),
            },
        )
    movie_ids = catalogue or sorted({m for _, m, _ in ratings}, key=str)
    examples_io.write_columns(
        cat_uri,
        features.CATALOGUE_SPLIT,
        {features.MOVIE_ID: movie_ids, features.MOVIE_TITLE: [f"Movie {m}" for m in movie_ids]},
    )
    return examples, cat_uri


def run_one(
    ratings, catalogue, seed: int, workdir: str, config: TrainerConfig | None = None
) -> dict:
    """Trains, builds the servables and evaluates one split; returns ``metrics.json``."""
    rows = np.array(ratings, dtype=object)
    is_eval = np.array(
        [splits.split_of(u, m, seed, 0.2) == features.EVAL_SPLIT for u, m, _ in ratings]
    )
    parts = {features.TRAIN_SPLIT: rows[~is_eval], features.EVAL_SPLIT: rows[is_eval]}
    train_rows = parts[features.TRAIN_SPLIT]
    vocab = _vocabulary(train_rows)
    model, summary = train(_columns(train_rows, vocab), vocab, config or TrainerConfig())
    trained = os.path.join(workdir, "trained")
    histories = export.Histories.from_ids(train_rows[:, 0], train_rows[:, 1])
    export.export_serving_model(model, vocab, histories, trained)
    examples, cat_uri = _write_examples(workdir, parts, catalogue, ratings)
    out = os.path.join(workdir, "servables")
    servables.build_servables(trained, examples, cat_uri, out)
    ev = evaluation_data.EvaluationData.read(examples, cat_uri)
    result = evaluate(out, ev, DEFAULT_THRESHOLDS)
    result["chosen"] = summary["chosen"]
    result["train_seconds"] = summary["choose_seconds"] + summary["train_seconds"]
    return result


_ROWS = (
    ("served recall@10", "recall@10", ("model", "popularity", "ease")),
    ("served ndcg@10", "ndcg@10", ("model", "popularity", "ease")),
    ("candidate recall@100", "recall@100", ("model", "popularity", "ease")),
    ("rmse", "rmse", ("model", "bias")),
)


def _spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.4f} ± {sd:.4f}"


def bench_quality(shapes=tuple(SHAPES), seeds=SEEDS, config: TrainerConfig | None = None) -> dict:
    """Prints and returns the table: shape -> metric -> scorer -> [value per seed].

    ``config``: the Trainer's (None: the default).
    """
    table = {}
    for shape in shapes:
        ratings, catalogue = SHAPES[shape]()
        results = []
        for seed in seeds:
            with tempfile.TemporaryDirectory() as tmp:
                result = run_one(ratings, catalogue, seed, tmp, config)
            results.append(result)
            print(
                f"  {shape}, seed {seed}: served recall@10 {result['model']['recall@10']:.4f} "
                f"(EASE {result['baselines']['ease']['recall@10']:.4f}, popularity "
                f"{result['baselines']['popularity']['recall@10']:.4f}), blessed "
                f"{result['blessed']}; chosen: blend weight {result['chosen']['blend_weight']}, "
                f"{retrieval_length(result['chosen'])}, re-ranker served "
                f"{result['chosen']['use_reranker']}; trained in {result['train_seconds']:.0f} s",
                flush=True,
            )
        table[shape] = {}
        for title, key, scorers in _ROWS:
            table[shape][title] = {}
            for scorer in scorers:
                source = (
                    (lambda r: r["model"])
                    if scorer == "model"
                    else (lambda r, s=scorer: r["baselines"][s])
                )
                table[shape][title][scorer] = [source(r)[key] for r in results]
        table[shape]["blessed"] = [r["blessed"] for r in results]
        _print_shape(shape, table[shape])
    print(f"\nServed quality, mean ± sd over seeds {', '.join(map(str, seeds))}:")
    for shape, rows in table.items():
        _print_shape(shape, rows)
    return table


def _print_shape(shape: str, rows: dict) -> None:
    print(f"\n  {shape} (blessed: {sum(rows['blessed'])}/{len(rows['blessed'])})")
    print(f"    {'metric':<22}{'model':>18}{'popularity':>18}{'EASE':>18}{'bias':>18}")
    for title, _, _ in _ROWS:
        cells = "".join(
            f"{_spread(rows[title][s]) if s in rows[title] else '-':>18}"
            for s in ("model", "popularity", "ease", "bias")
        )
        print(f"    {title:<22}{cells}", flush=True)
