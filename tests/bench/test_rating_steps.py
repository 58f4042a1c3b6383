"""The rating-steps benchmark on a tiny shape: real epochs, every figure filled in."""

import dataclasses
import io

from bench import rating_steps, scale
from trainer import features, run
from trainer.config import TrainerConfig

TINY = 50_000


def test_the_sample_is_the_shapes_first_users_with_the_whole_tables():
    columns, users, movies, train = rating_steps.sample(TINY, sample_ratings=3_000)
    assert (users, movies) == scale.shape_of(TINY)
    assert train == int(TINY * rating_steps.TRAIN_SHARE)
    assert len(columns[features.RATING]) == 3_000
    assert columns[features.USER_IDX].max() < users and columns[features.MOVIE_IDX].max() < movies
    assert 0.5 <= columns[features.RATING].min() and columns[features.RATING].max() <= 5.0


def test_the_default_row_is_the_trainers_config():
    config = TrainerConfig()
    d = rating_steps.DEFAULT
    assert (d.optimizer, d.input) == ("lazy", "lean")
    assert (d.batch, d.lr, d.l2, d.epochs) == (
        config.rating_batch_size,
        config.rating_learning_rate,
        config.rating_l2,
        config.rating_epochs,
    )
    assert d.steps_per_execution == run._RATING_STEPS_PER_EXECUTION > 1
    assert rating_steps.SETTINGS[0].optimizer == "adam"
    assert rating_steps.SETTINGS[0].input == "per-rating"


def test_speed_rows_for_each_setting_and_ratio_to_the_first():
    settings = (
        rating_steps.SETTINGS[0],
        dataclasses.replace(rating_steps.DEFAULT, steps_per_execution=4),
    )
    out = io.StringIO()
    table = rating_steps.bench_speed(
        out, sizes=(TINY,), settings=settings, repeats=1, sample_ratings=4_000
    )
    rows = table[TINY]
    assert [r["setting"] for r in rows] == ["before", "default"]
    assert rows[0]["ratio"] == 1.0
    for r in rows:
        assert r["seconds"] > 0 and r["ratings_per_second"] > 0
        assert abs(r["shape_seconds"] - r["seconds"] * 40_000 / 4_000) < 1e-9
    assert abs(rows[1]["ratio"] - rows[0]["seconds"] / rows[1]["seconds"]) < 1e-9
    text = out.getvalue()
    assert "the 50,000-rating shape (350 users x 671 movies; 4,000 of its 40,000" in text
    assert "before" in text and "1.00x" in text


def test_quality_follows_the_trainers_protocol_and_beats_the_mean():
    train, test, users, movies = rating_steps._synthetic_split(TINY)
    assert len(train[features.RATING]) + len(test[features.RATING]) > 40_000
    settings = (dataclasses.replace(rating_steps.DEFAULT, epochs=3),)
    out = io.StringIO()
    table = rating_steps.bench_quality(
        out,
        datasets=("tiny",),
        settings=settings,
        loaders={"tiny": lambda: (train, test, users, movies)},
    )
    (row,) = table["tiny"]
    assert 1 <= row["epochs"] <= 3 and row["seconds"] > 0
    spread = float(test[features.RATING].std())  # RMSE of predicting the mean
    assert 0.3 < row["rmse"] < spread
    assert "Rating model quality, tiny" in out.getvalue()
