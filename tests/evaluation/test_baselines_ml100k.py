"""The baselines reproduce the figures measured on MovieLens 100k (DEVELOPERS.md), ±0.01.

Default split (random 80/20, seed 42); the same code path the Evaluator uses.
"""

import os

import numpy as np
import pytest

from data import data_home, records, splits
from evaluation import baselines, evaluation_data, metrics
from trainer import features

# Measured figures: top-100 incl. seen (TFRS metric), recall@10 and @100 excl. seen, RMSE.
EXPECTED = {
    "popularity": {"top_k_accuracy_incl_seen@100": 0.301, "recall@10": 0.090, "recall@100": 0.415},
    "ease": {"top_k_accuracy_incl_seen@100": 0.277, "recall@10": 0.177, "recall@100": 0.630},
}
BIAS_RMSE = 0.948


@pytest.fixture(scope="module")
def ml100k():
    data_dir = data_home.ensure_ml100k(data_home.resolve_data_home(os.environ))
    ratings = [
        r for r in records.iter_ratings(data_dir / "u.data") if isinstance(r, records.Rating)
    ]
    split = [splits.split_of(r.user_id, r.movie_id, 42, 0.2) for r in ratings]

    def columns(name):
        rows = [r for r, s in zip(ratings, split, strict=True) if s == name]
        return {
            features.USER_ID: np.array([r.user_id for r in rows], dtype=object),
            features.MOVIE_ID: np.array([r.movie_id for r in rows], dtype=object),
            features.RATING: np.array([r.rating for r in rows]),
        }

    catalogue = np.array(list(records.read_movies(data_dir / "u.item")), dtype=object)
    return evaluation_data.EvaluationData.from_columns(
        columns(features.TRAIN_SPLIT), columns(features.EVAL_SPLIT), catalogue
    )


@pytest.mark.parametrize("name", ["popularity", "ease"])
def test_top_k_baselines_match_the_measured_figures(ml100k, name):
    d = ml100k
    score = (
        baselines.popularity_scores(d.train_counts)
        if name == "popularity"
        else baselines.ease_scores(d.seen, baselines.fit_ease(d.seen))
    )
    ranks = metrics.rank_eval_pairs(score, d.eval_users, d.eval_movies, d.seen, len(d.movie_ids))
    got = metrics.ranking_metrics(ranks, d.eval_users, d.train_counts)
    for key, value in EXPECTED[name].items():
        assert got[key] == pytest.approx(value, abs=0.01), (name, key, got[key])


def test_bias_baseline_rmse(ml100k):
    d = ml100k
    fit = baselines.fit_biases(
        d.train_users, d.train_movies, d.train_ratings, len(d.user_ids), len(d.movie_ids)
    )
    got = metrics.rating_metrics(
        baselines.predict_biases(fit, d.eval_users, d.eval_movies), d.eval_ratings
    )
    assert got["rmse"] == pytest.approx(BIAS_RMSE, abs=0.01)
