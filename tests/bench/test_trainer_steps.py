"""The autoencoder-steps benchmark on a tiny shape: real epochs, every figure filled in."""

import io

from bench import scale, trainer_steps
from trainer import features


def test_histories_are_the_synthetic_sources_first_users_at_the_shapes_catalogue():
    x, users = trainer_steps.histories(50_000, sample_users=300)
    assert users == scale.shape_of(50_000)[0] == 350
    assert x.shape == (300, scale.shape_of(50_000)[1] + features.NUM_OOV_BUCKETS)
    counts = x.getnnz(axis=1)
    assert counts.min() >= 1 and x.nnz > 300 * 20
    assert set(x.data.tolist()) == {1.0}


def test_each_setting_gets_an_epochs_seconds_rate_and_ratio_to_the_first():
    out = io.StringIO()
    table = trainer_steps.run_bench(
        out,
        sizes=(50_000,),
        settings=((32, 1e-3, "float32"), (128, 2e-3, "bfloat16")),
        repeats=1,
        sample_users=300,
    )
    rows = table[50_000]
    assert [(r["batch"], r["lr"], r["precision"]) for r in rows] == [
        (32, 1e-3, "float32"),
        (128, 2e-3, "bfloat16"),
    ]
    assert rows[0]["ratio"] == 1.0
    for r in rows:
        assert r["seconds"] > 0 and r["ratings_per_second"] > 0
    assert abs(rows[1]["ratio"] - rows[0]["seconds"] / rows[1]["seconds"]) < 1e-9
    text = out.getvalue()
    assert "the 50,000-rating shape (350 users x 671 movies), 300 users sampled" in text
    assert "   32 users a step, Adam 0.001, float32 :" in text and "1.00x" in text
