"""The scale benchmark's arithmetic: sizes, shapes, the scaling exponent and the peak reset."""

import io
import math
import os

import pytest

from bench import proc, scale


def test_sizes_parse_with_suffixes_and_bad_items_are_named():
    assert scale.parse_sizes("1M, 5000000,20m") == (1_000_000, 5_000_000, 20_000_000)
    assert scale.parse_sizes("250k") == (250_000,)
    with pytest.raises(ValueError, match="'TEN' is not a number"):
        scale.parse_sizes("1M,ten")
    with pytest.raises(ValueError, match="'1.5' must be a whole number >= 1000"):
        scale.parse_sizes("1.5")


def test_shapes_are_the_tables_and_scale_from_the_nearest():
    assert scale.shape_of(20_000_000) == (138_000, 27_000)
    users, movies = scale.shape_of(2_000_000)  # from 1M: users double, movies by sqrt(2)
    assert (users, movies) == (14_000, round(3_000 * math.sqrt(2)))


def test_the_exponent_is_one_for_linear_time_and_two_for_quadratic():
    assert scale.exponent(10.0, 50.0, 1_000_000, 5_000_000) == pytest.approx(1.0)
    assert scale.exponent(10.0, 250.0, 1_000_000, 5_000_000) == pytest.approx(2.0)
    assert math.isnan(scale.exponent(0.0, 5.0, 1, 2))


def test_the_high_water_mark_resets_to_the_current_resident_size():
    pid = os.getpid()
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"\1" * len(block[::4096])  # touch every page
    del block
    before = proc.status_kb(pid, "VmHWM")
    proc.reset_peak(pid)
    after = proc.status_kb(pid, "VmHWM")
    assert after < before - 32 * 1024
    assert abs(after - proc.status_kb(pid, "VmRSS")) < 16 * 1024
    assert proc.tree(pid)[0] == pid


def _result(ratings, seconds):
    return {
        "ratings": ratings,
        "users": ratings // 100,
        "movies": 50,
        "wall_seconds": sum(seconds.values()) + 5,
        "components": {n: {"seconds": s, "peak_mb": 2048.0} for n, s in seconds.items()},
        "largest_process_mb": 3072.0,
        "num_train": ratings * 8 // 10,
        "num_eval": ratings // 5,
        "num_catalogue": 50,
        "trainer": {
            "train_seconds": 10.0,
            "choose_seconds": 20.0,
            "examples_per_second": 123_456.0,
            "chosen": {"retrieval_epochs": 40, "rating_epochs": 3},
        },
        "recall@10": {"served": 0.2, "popularity": 0.1, "ease": 0.15},
    }


def test_the_report_prints_rates_per_component_and_the_exponents_between_sizes():
    small = _result(1_000_000, {"Transform": 10.0, "Trainer": 40.0, "Gate": 0.1})
    large = _result(4_000_000, {"Transform": 40.0, "Trainer": 640.0, "Gate": 0.1})
    out = io.StringIO()
    scale.report([large, small], out)
    text = out.getvalue()
    assert text.index("1,000,000 ratings") < text.index("4,000,000 ratings")
    assert "  Transform                        10.0     2.00     100,000  ratings" in text
    assert "  Trainer                          40.0     2.00      20,000  train ratings" in text
    assert "  Gate                              0.1     2.00\n" in text  # no rate below 0.5 s
    assert "123,456 ratings/s per epoch (autoencoder 40 epochs and 3 rating epochs chosen)" in text
    assert "served recall@10 0.2000  popularity 0.1000  EASE 0.1500" in text
    assert "  Transform                     1.00" in text  # 4x the ratings, 4x the time
    assert "  Trainer                       2.00" in text  # 4x the ratings, 16x the time
