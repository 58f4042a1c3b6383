"""One training run of the real model on a synthetic fixture, under a strategy; for
``test_distribute.py``, which starts it as a process (a strategy is set up at program start).

    python tests/trainer/distributed_run.py OUT.json STRATEGY [LOGICAL_CPUS]

``STRATEGY`` is ``TrainerConfig.strategy`` (``TF_CONFIG`` comes from the environment);
``LOGICAL_CPUS`` > 1 splits the CPU into that many devices first (what ``mirrored`` then
mirrors over). Writes per-user hits of the eval split in the top 10 (retrieval order, train
movies excluded), per-rating squared errors of the predicted eval ratings, the training
summary's ``distribution`` and whether this task is the chief.
"""

import json
import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

NUM_USERS, NUM_MOVIES, RANK = 300, 120, 4


def fixture(seed: int = 0):
    """Train and eval columns: low-rank tastes, power-law popularity, 20-60 movies a user,
    ratings that follow the tastes; 80/20 random split of the ratings."""
    rng = np.random.default_rng(seed)
    tastes = rng.normal(size=(NUM_USERS, RANK)) @ rng.normal(size=(RANK, NUM_MOVIES)) / 2
    popularity = np.log(1.0 / np.arange(1, NUM_MOVIES + 1) ** 0.8)
    users, movies = [], []
    for u in range(NUM_USERS):
        gumbel = rng.gumbel(size=NUM_MOVIES)
        n = int(rng.integers(20, 61))
        chosen = np.argsort(-(tastes[u] + popularity + gumbel))[:n]
        users += [u] * n
        movies += chosen.tolist()
    users, movies = np.asarray(users, np.int64), np.asarray(movies, np.int64)
    noise = rng.normal(scale=0.5, size=len(users))
    ratings = np.clip(np.round(3.5 + 0.6 * tastes[users, movies] + noise), 1, 5)
    test = rng.random(len(users)) < 0.2
    columns = {"user_idx": users, "movie_idx": movies, "rating": ratings.astype(np.float32)}
    return {k: v[~test] for k, v in columns.items()}, {k: v[test] for k, v in columns.items()}


def main(out_path: str, strategy_name: str, logical_cpus: int = 1) -> None:
    import tensorflow as tf

    if logical_cpus > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus
        )
    from trainer import data, distribute, run, selection
    from trainer.config import TrainerConfig

    strategy = distribute.make_strategy(strategy_name)  # first: before any other op
    train, test = fixture()
    config = TrainerConfig(
        hidden_dim=32,
        epochs=20,
        validate_every=5,
        batch_size=32,
        learning_rate=0.005,
        ease_lambdas=(30.0, 100.0),
        ease_rank=16,
        blend_weights=(0.5, 1.0),
        embedding_dim=8,
        rating_epochs=5,
        candidates=50,
        strategy=strategy_name,
    )
    vocabularies = data.Vocabularies(
        users=[f"u{i}" for i in range(NUM_USERS)], movies=[f"m{i}" for i in range(NUM_MOVIES)]
    )
    model, summary = run.train(train, vocabularies, config, strategy=strategy)
    shape = (NUM_USERS + 1, NUM_MOVIES + 1)
    seen = selection.interactions(train["user_idx"], train["movie_idx"], shape)
    held = selection.interactions(test["user_idx"], test["movie_idx"], shape)
    top = selection.top_unseen(run.retrieval_scores(model, seen), seen, 10)
    hits = [int(held[u, top[u]].sum()) for u in range(NUM_USERS)]
    predicted = model.predict_rating(
        tf.constant(test["user_idx"]), tf.constant(test["movie_idx"])
    ).numpy()
    result = {
        "hits": hits,
        "held_out": [int(v) for v in np.diff(held.indptr)[:NUM_USERS]],
        "squared_errors": ((predicted - test["rating"]) ** 2).tolist(),
        "distribution": summary["distribution"],
        "chief": distribute.is_chief(strategy),
        "chosen_retrieval_epochs": summary["chosen"]["retrieval_epochs"],
    }
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
