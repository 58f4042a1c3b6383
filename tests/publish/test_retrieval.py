"""The retrieval SavedModel: exact top-k of unseen movies, titles, unknown users."""

import numpy as np
import pytest
import tensorflow as tf

from publish import index as index_lib
from publish import retrieval
from serving import loading
from trainer import data, export, features, run, selection
from trainer.config import TrainerConfig
from trainer.run import train

NUM_USERS, NUM_MOVIES = 30, 60


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    rng = np.random.default_rng(0)
    users = rng.integers(0, NUM_USERS, 1500)
    movies = (users % 3) + 3 * rng.integers(0, NUM_MOVIES // 3, 1500)
    cols = {
        features.USER_IDX: users.astype(np.int64),
        features.MOVIE_IDX: movies.astype(np.int64),
        features.RATING: rng.choice([2.0, 4.0], 1500).astype(np.float32),
    }
    vocab = data.Vocabularies(
        users=[f"u{i}" for i in range(NUM_USERS)], movies=[f"m{i}" for i in range(NUM_MOVIES)]
    )
    config = TrainerConfig(
        hidden_dim=16, epochs=6, validate_every=3, batch_size=16, ease_rank=8, candidates=10
    )
    model, _ = train(cols, vocab, config)
    path = str(tmp_path_factory.mktemp("trained") / "model")
    # The seen data the model carries: the first 300 ratings only.
    histories = export.Histories.from_indices(users[:300], movies[:300], vocab)
    export.export_serving_model(model, vocab, histories, path)
    seen = sorted({(f"u{u}", f"m{m}") for u, m in zip(users[:300], movies[:300], strict=True)})
    x = selection.interactions(users[:300], movies[:300], (NUM_USERS + 1, NUM_MOVIES + 1))
    return model, path, seen, histories, x


@pytest.mark.parametrize("kind", [index_lib.BRUTE_FORCE, index_lib.SCANN])
def test_top_k_of_unseen_movies_equals_numpy(trained, tmp_path, kind):
    model, path, seen, histories, x = trained
    # The catalogue has 5 movies nobody rated (m60..m64): they get the OOV embedding.
    ids = np.array([f"m{i}" for i in range(NUM_MOVIES + 5)], dtype=object)
    titles = np.array([f"Title {i}" for i in range(NUM_MOVIES + 5)], dtype=object)
    out_dir = str(tmp_path / kind)
    retrieval.export_retrieval_model(
        path,
        ids,
        titles,
        np.ones(len(ids), np.int64),
        histories.max_length(),
        out_dir,
        index_kind=kind,
        k=10,
    )
    loaded = loading.load_saved_model(out_dir)
    queries = ["u0", "u1", "u7", "stranger"]
    out = loaded.signatures["serving_default"](user_id=tf.constant(queries))
    assert out["movie_ids"].shape == (4, 10)
    assert out["known_user"].numpy().tolist() == [True, True, True, False]
    movie_idx = np.array([i if i < NUM_MOVIES else NUM_MOVIES for i in range(len(ids))])
    movie_emb = model.movie_vectors(tf.constant(movie_idx)).numpy()
    for row, user in enumerate(queries):
        u = int(user[1:]) if user != "stranger" else NUM_USERS  # the OOV row has no history
        scores = movie_emb @ model.user_vectors(run._sparse(x[u : u + 1])).numpy()[0]
        seen_here = {m for su, m in seen if su == user}
        candidates = [j for j in range(len(ids)) if ids[j] not in seen_here]
        expected = sorted(candidates, key=lambda j: -scores[j])[:10]
        got = [m.decode() for m in out["movie_ids"][row].numpy()]
        assert not seen_here & set(got)
        np.testing.assert_allclose(out["scores"][row], scores[expected], rtol=1e-5, atol=1e-6)
        # Ids must match wherever the score is not tied with a neighbour.
        for pos, j in enumerate(expected):
            if np.sum(np.isclose(scores[candidates], scores[j], atol=1e-6)) == 1:
                assert got[pos] == ids[j]
        titles_out = [t.decode() for t in out["titles"][row].numpy()]
        assert titles_out == [f"Title {m[1:]}" for m in got]
