"""publish.embeddings: the newest pushed ranking model's embeddings, ids and titles as files."""

import argparse
import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from publish import embeddings, push, retrieval
from serving import names
from trainer import data, export, features, run, selection
from trainer.config import TrainerConfig
from trainer.run import train

NUM_USERS, NUM_MOVIES = 30, 60
HIDDEN, RANK = 8, 4
DIM = HIDDEN + 1 + RANK  # the retrieval embedding: [encoder output, 1, EASE factors]
# Vocabulary order differs from the numeric order of the ids, so a sorted export would fail.
USERS = [f"u{i}" for i in reversed(range(NUM_USERS))]
MOVIES = [f"m{(7 * i) % NUM_MOVIES}" for i in range(NUM_MOVIES)]
# The catalogue also holds 5 movies nobody rated (not in the vocabulary, not exported), and
# one title with a tab, which must stay a single TSV field.
CATALOGUE = [f"m{i}" for i in range(NUM_MOVIES + 5)]
TITLES = {m: f"Title {m[1:]}" for m in CATALOGUE} | {"m3": "Tab\tin title"}


def _trained(seed: int):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, NUM_USERS, 1500)
    cols = {
        features.USER_IDX: users.astype(np.int64),
        features.MOVIE_IDX: ((users % 3) + 3 * rng.integers(0, NUM_MOVIES // 3, 1500)),
        features.RATING: rng.choice([2.0, 4.0], 1500).astype(np.float32),
    }
    config = TrainerConfig(
        hidden_dim=HIDDEN,
        ease_rank=RANK,
        epochs=2,
        validate_every=1,
        batch_size=16,
        rating_epochs=1,
        candidates=5,
        seed=seed,
    )
    model, _ = train(cols, data.Vocabularies(users=USERS, movies=MOVIES), config)
    return model, cols


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """A serving dir holding ranking v1 and v2 (different models) and one retrieval model."""
    tmp = tmp_path_factory.mktemp("embeddings")
    serving = tmp / "serving"
    towers = {}
    for version, seed in ((1, 1), (2, 2)):
        model, cols = _trained(seed)
        vocab = data.Vocabularies(USERS, MOVIES)
        histories = export.Histories.from_indices(
            cols[features.USER_IDX], cols[features.MOVIE_IDX], vocab
        )
        staged = str(tmp / f"trained-{version}")
        export.export_serving_model(model, vocab, histories, staged)
        assert push.push_atomically(Path(staged), serving / names.RANKING)[0] == version
        # Rows in vocabulary order, from the Keras model, not through the SavedModel.
        x = selection.interactions(
            cols[features.USER_IDX], cols[features.MOVIE_IDX], (NUM_USERS + 1, NUM_MOVIES + 1)
        )
        towers[version] = {
            "users": model.user_vectors(run._sparse(x[:NUM_USERS])).numpy(),
            "movies": model.movie_vectors(tf.range(NUM_MOVIES, dtype=tf.int64)).numpy(),
        }
    brute_force = str(tmp / "retrieval")
    retrieval.export_retrieval_model(
        staged,
        np.array(CATALOGUE, dtype=object),
        np.array([TITLES[m] for m in CATALOGUE], dtype=object),
        np.ones(len(CATALOGUE), np.int64),
        histories.max_length(),
        brute_force,
        index_kind="brute_force",
        k=5,
    )
    push.push_atomically(Path(brute_force), serving / names.RETRIEVAL_BRUTE_FORCE)
    push.write_models_config(
        serving, {n: serving / n for n in (names.RANKING, names.RETRIEVAL_BRUTE_FORCE)}
    )
    return serving, towers


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def test_npy_holds_the_newest_models_embeddings_in_vocabulary_order(pushed, tmp_path):
    serving, towers = pushed
    result = embeddings.export_embeddings(serving, tmp_path, "npy")

    assert result["model"] == str(serving / names.RANKING / "2")
    for kind, ids in (("users", USERS), ("movies", MOVIES)):
        vectors = np.load(tmp_path / kind / "embeddings.npy")
        assert vectors.dtype == np.float32 and vectors.shape == (len(ids), DIM)
        assert _lines(tmp_path / kind / "ids.txt") == ids
        # Row i of a tower's table is vocabulary index i, so this reference does not go
        # through the SavedModel's lookup tables or signatures at all.
        np.testing.assert_allclose(vectors, towers[2][kind], rtol=1e-5, atol=1e-6)
        assert not np.allclose(vectors, towers[1][kind])
    assert _lines(tmp_path / "movies" / "titles.txt") == [
        TITLES[m].replace("\t", " ") for m in MOVIES
    ]
    assert not (tmp_path / "users" / "titles.txt").exists()
    assert not (tmp_path / "movies" / "vectors.tsv").exists()


def test_tsv_is_the_projector_format_and_reads_back_exactly(pushed, tmp_path):
    serving, towers = pushed
    embeddings.export_embeddings(serving, tmp_path, "both")

    for kind in ("users", "movies"):
        vectors = np.loadtxt(tmp_path / kind / "vectors.tsv", delimiter="\t", dtype=np.float32)
        np.testing.assert_array_equal(vectors, np.load(tmp_path / kind / "embeddings.npy"))
        np.testing.assert_allclose(vectors, towers[2][kind], rtol=1e-5, atol=1e-6)
    # One column (users): no header. Two columns (movies): a header, then id<TAB>title.
    assert _lines(tmp_path / "users" / "metadata.tsv") == USERS
    movies = _lines(tmp_path / "movies" / "metadata.tsv")
    assert movies[0] == "movie_id\ttitle"
    assert [row.split("\t") for row in movies[1:]] == [
        [m, TITLES[m].replace("\t", " ")] for m in MOVIES
    ]


def test_a_bare_saved_model_gives_ids_without_titles(pushed, tmp_path):
    serving, towers = pushed
    result = embeddings.export_embeddings(serving / names.RANKING / "1", tmp_path, "tsv")

    assert result["titles_from"] is None
    assert _lines(tmp_path / "movies" / "metadata.tsv") == MOVIES
    vectors = np.loadtxt(tmp_path / "movies" / "vectors.tsv", delimiter="\t", dtype=np.float32)
    np.testing.assert_allclose(vectors, towers[1]["movies"], rtol=1e-5, atol=1e-6)


def test_bad_arguments(pushed, tmp_path):
    serving, _ = pushed
    with pytest.raises(ValueError, match="'csv'"):
        embeddings.export_embeddings(serving, tmp_path, "csv")
    with pytest.raises(FileNotFoundError, match="neither a SavedModel nor a serving directory"):
        embeddings.export_embeddings(tmp_path, tmp_path / "out", "npy")


def test_command_writes_under_the_serving_dir_by_default(pushed, capsys):
    serving, towers = pushed
    parser = argparse.ArgumentParser()
    embeddings.add_export_embeddings_command(parser.add_subparsers(dest="command"))
    env = argparse.Namespace(workdir=Path("/nonexistent"))

    args = parser.parse_args(["export-embeddings", "--serving-dir", str(serving)])
    printed = io.StringIO()
    assert embeddings.cmd_export_embeddings(args, env, printed) == 0

    out = serving / "embeddings" / "ranking-2"
    np.testing.assert_allclose(
        np.load(out / "users" / "embeddings.npy"), towers[2]["users"], rtol=1e-5, atol=1e-6
    )
    assert f"movies{NUM_MOVIES:>10,} x {DIM}" in printed.getvalue()
    bare = parser.parse_args(["export-embeddings", "--serving-dir", str(serving / "ranking/1")])
    assert embeddings.cmd_export_embeddings(bare, env) == 2
    assert "--out is required" in capsys.readouterr().err
