"""Tests of data.records (the ml-100k readers, their rejects, the deduplication rule) and of
data.splits."""

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data import splits
from data.records import (
    BAD_RATING,
    BAD_VALUE,
    BLANK_LINE,
    DUPLICATE,
    FIELD_COUNT,
    UNKNOWN_MOVIE,
    UNKNOWN_USER,
    MalformedLineError,
    Movie,
    Rating,
    Reject,
    User,
    iter_ratings,
    latest_per_pair,
    read_movies,
    read_users,
)
from trainer import features

ZEROS = "|".join(["0"] * 19)


def _flags(*indices: int) -> str:
    return "|".join("1" if i in indices else "0" for i in range(19))


def _write(path, lines, encoding="latin-1"):
    path.write_bytes("".join(line + "\n" for line in lines).encode(encoding))
    return path


def test_read_movies_parses_fields_and_rejects(tmp_path):
    lines = [
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{_flags(3, 4, 5)}",
        f"246|Chasing Amy (1997)|01-Jan-1997||http://x|{_flags(5, 8, 14)}",
        f"268|Chasing Amy (1997)|4-Feb-1997||http://x|{_flags(8)}",
        f"267|unknown||||{_flags(0)}",
        f"543|Misérables, Les (1995)|||http://x|{_flags(8, 12)}",
        "9|Too few fields|01-Jan-1990",
        "",
        f"10|Bad date (1990)|1990-01-01||http://x|{ZEROS}",
        f"11|Bad flag (1990)|01-Jan-1990||http://x|{ZEROS[:-1]}2",
        f"1|Toy Story again (1995)|01-Jan-1995||http://x|{ZEROS}",
    ]
    rejects = []
    movies = read_movies(_write(tmp_path / "u.item", lines), rejects)
    assert movies == {
        "1": Movie("1", "Toy Story (1995)", ("Animation", "Children's", "Comedy"), 1995),
        "246": Movie("246", "Chasing Amy (1997)", ("Comedy", "Drama", "Romance"), 1997),
        "268": Movie("268", "Chasing Amy (1997)", ("Drama",), 1997),
        "267": Movie("267", "unknown", (), 0),  # no date, no "(year)" in the title
        "543": Movie("543", "Misérables, Les (1995)", ("Drama", "Musical"), 1995),
    }
    assert list(movies) == ["1", "246", "268", "267", "543"]
    assert rejects == [
        Reject("u.item", 6, FIELD_COUNT, lines[5]),
        Reject("u.item", 7, BLANK_LINE, ""),
        Reject("u.item", 8, BAD_VALUE, lines[7]),
        Reject("u.item", 9, BAD_VALUE, lines[8]),
        Reject("u.item", 10, DUPLICATE, lines[9]),
    ]


def test_strict_reader_raises_on_first_bad_line(tmp_path):
    path = _write(tmp_path / "u.user", ["1|24|M|technician|85711", "2|old|F|other|94043"])
    with pytest.raises(MalformedLineError, match="u.user line 2: bad_value") as e:
        read_users(path)
    assert e.value.reject == Reject("u.user", 2, BAD_VALUE, "2|old|F|other|94043")


def test_read_users(tmp_path):
    lines = ["1|24|M|technician|85711", "2||F|other|94043", "3|30|M|writer", "1|50|F|x|1"]
    rejects = []
    users = read_users(_write(tmp_path / "u.user", lines), rejects)
    assert users == {"1": User("1", 24, "M", "technician"), "2": User("2", 0, "F", "other")}
    assert [(r.line_number, r.reason) for r in rejects] == [
        (3, FIELD_COUNT),
        (4, DUPLICATE),
    ]


def test_iter_ratings_rejects_and_keeps_latest_duplicate(tmp_path):
    movies = {"1": Movie("1", "A", (), 0), "2": Movie("2", "B", (), 0)}
    users = {"7": User("7", 20, "F", "x")}
    lines = [
        "7\t1\t3\t100",  # 1: older than line 3 -> duplicate
        "7\t2\t4\t100",  # 2: kept
        "7\t1\t5\t200",  # 3: latest of (7, 1) -> kept
        "7\t2\t2\t100",  # 4: same timestamp as line 2; the later line wins -> kept
        "7\t1\t4.5",  # 5
        "  ",  # 6
        "7\t1\tnan\t300",  # 7
        "7\t1\t5.5\t300",  # 8
        "7\t1\t\t300",  # 9
        "7\t3\t4\t300",  # 10
        "8\t1\t4\t300",  # 11
        "7\tx\t4\t300",  # 12
        "7\t1\t1.0\t300",  # 13: latest of (7, 1) now, so line 3 becomes a duplicate
    ]
    records = list(iter_ratings(_write(tmp_path / "u.data", lines), movies, users))
    assert records == [
        Reject("u.data", 1, DUPLICATE, lines[0]),
        Reject("u.data", 2, DUPLICATE, lines[1]),
        Reject("u.data", 3, DUPLICATE, lines[2]),
        Rating("7", "2", 2.0, 100),
        Reject("u.data", 5, FIELD_COUNT, lines[4]),
        Reject("u.data", 6, BLANK_LINE, lines[5]),
        Reject("u.data", 7, BAD_RATING, lines[6]),
        Reject("u.data", 8, BAD_RATING, lines[7]),
        Reject("u.data", 9, BAD_RATING, lines[8]),
        Reject("u.data", 10, UNKNOWN_MOVIE, lines[9]),
        Reject("u.data", 11, UNKNOWN_USER, lines[10]),
        Reject("u.data", 12, BAD_VALUE, lines[11]),
        Rating("7", "1", 1.0, 300),
    ]


def test_iter_ratings_without_catalogue_checks_nothing_else(tmp_path):
    path = _write(tmp_path / "u.data", ["5\t9\t1\t10", "5\t9\t5\t9", "6\t9\t0\t10"])
    assert list(iter_ratings(path)) == [
        Rating("5", "9", 1.0, 10),
        Reject("u.data", 2, DUPLICATE, "5\t9\t5\t9"),
        Reject("u.data", 3, BAD_RATING, "6\t9\t0\t10"),
    ]


def test_split_of_fraction_and_seed():
    pairs = [(str(u), str(m)) for u in range(200) for m in range(100)]
    for fraction in (0.0, 0.1, 0.2, 0.5, 1.0):
        assigned = [splits.split_of(u, m, 42, fraction) for u, m in pairs]
        n_eval = assigned.count(features.EVAL_SPLIT)
        # Binomial(20000, p): 5 standard deviations is at most 0.018 of the pairs.
        assert abs(n_eval / len(pairs) - fraction) <= 0.018
    splits_42 = [splits.split_of(u, m, 42, 0.5) for u, m in pairs[:500]]
    splits_43 = [splits.split_of(u, m, 43, 0.5) for u, m in pairs[:500]]
    assert set(splits_42) == {features.TRAIN_SPLIT, features.EVAL_SPLIT}
    assert splits_42 != splits_43
    with pytest.raises(ValueError, match="eval_fraction"):
        splits.split_of("1", "1", 42, 1.5)


def test_split_of_is_the_same_in_another_process():
    pairs = [(str(u), str(m)) for u in range(1, 30) for m in range(1, 30)]
    code = (
        "from data import splits;"
        f"print(''.join(splits.split_of(u, m, 7, 0.3)[0] for u, m in {pairs!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "PYTHONHASHSEED": "123",
            "TF_USE_LEGACY_KERAS": "1",  # data.splits imports trainer, which checks it
        },
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == "".join(splits.split_of(u, m, 7, 0.3)[0] for u, m in pairs)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"kind": "temporal"}, "kind"),
        ({"kind": None}, "kind"),
        ({"seed": 1.5}, "seed"),
        ({"seed": "42"}, "seed"),
        ({"eval_fraction": -0.1}, "eval_fraction"),
        ({"eval_fraction": 1.5}, "eval_fraction"),
        ({"eval_fraction": float("nan")}, "eval_fraction"),
        ({"eval_fraction": "0.2"}, "eval_fraction"),
        ({"eval_fraction": True}, "eval_fraction"),
        ({"leave_last_n": 0}, "leave_last_n"),
        ({"leave_last_n": 2.0}, "leave_last_n"),
        ({"leave_last_n": True}, "leave_last_n"),
    ],
)
def test_split_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field} must be") as e:
        splits.SplitConfig(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(e.value)


def test_split_config_json_round_trip():
    config = splits.SplitConfig(kind="leave_last_n", seed=7, eval_fraction=1, leave_last_n=3)
    assert config.eval_fraction == 1.0 and isinstance(config.eval_fraction, float)
    text = config.to_json()
    assert text == '{"kind": "leave_last_n", "seed": 7, "eval_fraction": 1.0, "leave_last_n": 3}'
    assert splits.SplitConfig.from_json(text) == config
    assert splits.SplitConfig.from_json("{}") == splits.SplitConfig()
    # A recorded split: the cutoff is data, not config.
    recorded = '{"kind": "time", "seed": 1, "eval_fraction": 0.3, "leave_last_n": 1, '
    recorded += '"cutoff_timestamp": 300}'
    assert splits.SplitConfig.from_json(recorded) == splits.SplitConfig("time", 1, 0.3, 1)
    with pytest.raises(ValueError, match=r"unknown SplitConfig fields \['cutoff', 'n'\]"):
        splits.SplitConfig.from_json('{"n": 2, "cutoff": 3}')
    with pytest.raises(ValueError, match="JSON object"):
        splits.SplitConfig.from_json("[1]")
    with pytest.raises(ValueError, match="^kind must be"):
        splits.SplitConfig.from_json('{"kind": "by_user"}')


def _time_plan(timestamps, eval_fraction):
    config = splits.SplitConfig(kind="time", eval_fraction=eval_fraction)
    return splits.plan_split(config, [(str(i), "1", t) for i, t in enumerate(timestamps)])


def test_time_cutoff_hand_worked():
    ten = list(range(1, 11))
    # Rank ceil((1 - f) * N): 0.7 of 10 is rank 3 (float arithmetic gives 3.0000000000000004).
    assert _time_plan(ten, 0.7).cutoff_timestamp == 3
    assert _time_plan(ten, 0.2).cutoff_timestamp == 8
    assert _time_plan(ten, 0.25).cutoff_timestamp == 8  # rank ceil(7.5) = 8
    assert _time_plan(ten, 0.0).cutoff_timestamp == 10  # nothing after the last rating
    assert _time_plan(ten, 1.0).cutoff_timestamp == 1  # rank is at least 1
    # 5, 5, 5, 9: rank ceil(0.5 * 4) = 2 -> 5; the ties stay in train, so 1 of 4 is eval.
    plan = _time_plan([9, 5, 5, 5], 0.5)
    assert plan.cutoff_timestamp == 5
    assigned = [plan.split_of(Rating("u", "1", 3.0, t)) for t in (4, 5, 6, 9)]
    assert assigned == [features.TRAIN_SPLIT, features.TRAIN_SPLIT] + [features.EVAL_SPLIT] * 2
    assert _time_plan([], 0.2).cutoff_timestamp is None
    assert plan.to_dict() == {
        "kind": "time",
        "seed": 42,
        "eval_fraction": 0.5,
        "leave_last_n": 1,
        "cutoff_timestamp": 5,
    }


def test_time_cutoff_matches_numpy_inverted_cdf():
    rng = np.random.default_rng(0)
    for n in range(1, 41):
        timestamps = [int(t) for t in rng.integers(0, 15, size=n)]
        for k in range(17):  # multiples of 1/16 are exact floats, so numpy's q is exact too
            reference = np.quantile(timestamps, 1 - k / 16, method="inverted_cdf")
            assert _time_plan(timestamps, k / 16).cutoff_timestamp == reference, (timestamps, k)


def _leave_last_n_reference(ratings, n):
    """Sort everything once; each user's last n, if the user has more than n ratings."""
    ordered = sorted(ratings, key=lambda r: (r[0], r[2], int(r[1])))
    by_user = {}
    for user_id, movie_id, _ in ordered:
        by_user.setdefault(user_id, []).append(movie_id)
    return {(u, m) for u, movies in by_user.items() if len(movies) > n for m in movies[-n:]}


def test_leave_last_n_plan():
    # User a: 9 and 10 tie at t=300; 10 > 9 as numbers (not as strings), so 10 is latest.
    ratings = [
        ("a", "1", 100),
        ("a", "9", 300),
        ("a", "10", 300),
        ("a", "4", 200),
        ("b", "1", 400),
        ("b", "2", 150),
        ("c", "5", 500),
    ]
    expected = {
        1: {("a", "10"), ("b", "1")},
        2: {("a", "10"), ("a", "9")},  # b has only 2 ratings, c only 1
        3: {("a", "10"), ("a", "9"), ("a", "4")},
        4: set(),
    }
    for n, pairs in expected.items():
        config = splits.SplitConfig(kind="leave_last_n", leave_last_n=n)
        plan = splits.plan_split(config, ratings)
        assert plan.eval_pairs == pairs
        assert plan.cutoff_timestamp is None
        assigned = {(u, m): plan.split_of(Rating(u, m, 1.0, t)) for u, m, t in ratings}
        assert {pair for pair, split in assigned.items() if split == features.EVAL_SPLIT} == pairs


def test_leave_last_n_matches_sorting_reference():
    rng = random.Random(0)
    ratings = list(
        {
            (str(u), str(m)): rng.randrange(20)  # few timestamps: many ties
            for u in range(30)
            for m in rng.sample(range(1, 200), rng.randrange(1, 12))
        }.items()
    )
    rows = [(u, m, t) for (u, m), t in ratings]
    for n in (1, 2, 3, 5):
        config = splits.SplitConfig(kind="leave_last_n", leave_last_n=n)
        assert splits.plan_split(config, rows).eval_pairs == _leave_last_n_reference(rows, n)


def test_latest_per_pair_keeps_the_latest_then_the_row_read_later():
    rows = [
        ("u", "1", 100, 0, 1),  # 0: older than 2
        ("u", "2", 300, 1, 1),  # 1: kept: same timestamp as 3, in a later shard
        ("u", "1", 200, 0, 2),  # 2: kept
        ("u", "2", 300, 0, 9),  # 3: later line, earlier shard
        ("v", "2", 300, 0, 5),  # 4: kept: same timestamp as 5, later line
        ("v", "2", 300, 0, 4),  # 5
        ("w", "1", 1, 0, 1),  # 6: kept, rated once
    ]
    assert latest_per_pair(rows) == {("u", "1"): 2, ("u", "2"): 1, ("v", "2"): 4, ("w", "1"): 6}
    assert latest_per_pair(reversed(rows)) == {
        ("u", "1"): 4,
        ("u", "2"): 5,
        ("v", "2"): 2,
        ("w", "1"): 0,
    }  # any order: the same rows are kept
    assert latest_per_pair([]) == {}


def test_plan_applies_each_split_rule_over_columns_as_split_of_does():
    ratings = [("5", "9", 10), ("6", "9", 20), ("5", "1", 30), ("6", "1", 5), ("6", "2", 7)]
    users, movies, timestamps = (list(column) for column in zip(*ratings, strict=True))
    for config in (
        splits.SplitConfig(seed=3),
        splits.SplitConfig(seed=3, eval_fraction=0.5),
        splits.SplitConfig(kind="time", eval_fraction=0.5),
        splits.SplitConfig(kind="leave_last_n", leave_last_n=1),
    ):
        plan = splits.plan_split(config, ratings)
        mask = plan.eval_mask(users, movies, timestamps)
        assert mask.dtype == bool and mask.shape == (len(ratings),)
        assigned = [plan.split_of(Rating(u, m, 1.0, t)) for u, m, t in ratings]
        assert assigned == [features.EVAL_SPLIT if e else features.TRAIN_SPLIT for e in mask]
    assert plan.eval_mask([], [], []).shape == (0,)
    random_plan = splits.plan_split(splits.SplitConfig(seed=3), ratings)
    assert random_plan.split_of(Rating("5", "9", 1.0, 10)) == splits.split_of("5", "9", 3, 0.2)
