"""Tests of data.validation (the checks of components.validation's DataValidationGate): real
TFDV anomalies against the curated schema, and the reject-rate check."""

import importlib.resources

import pandas as pd
import tensorflow_data_validation as tfdv
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from data import validation


def _schema() -> schema_pb2.Schema:
    with open(importlib.resources.files("pipeline") / "schema" / "schema.pbtxt") as f:
        return text_format.Parse(f.read(), schema_pb2.Schema())


def _frame(ratings, years) -> pd.DataFrame:
    n = len(ratings)
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "movie_id": [f"m{i}" for i in range(n)],
            "movie_title": ["t"] * n,
            "rating": ratings,
            "timestamp": [1] * n,
            "release_year": years,
            "user_age": [0] * n,
            "user_gender": [""] * n,
        }
    )


def _write_anomalies(tmp_path, split: str, frame: pd.DataFrame) -> None:
    stats = tfdv.generate_statistics_from_dataframe(frame)
    anomalies = tfdv.validate_statistics(stats, _schema())
    directory = tmp_path / f"Split-{split}"
    directory.mkdir(parents=True)
    (directory / validation.ANOMALIES_FILE).write_bytes(anomalies.SerializeToString())


def test_clean_statistics_have_no_anomalies(tmp_path):
    _write_anomalies(tmp_path, "train", _frame([1.0, 4.5, 5.0], [1995, 0, 2001]))
    assert validation.describe_anomalies(str(tmp_path), ["train", "eval"]) == []


def test_anomalies_are_named_by_split_and_feature(tmp_path):
    # A 0-100 rating scale and a year from the far future break the curated domains.
    _write_anomalies(tmp_path, "train", _frame([1.0, 55.0, 100.0], [1995, 1996, 1997]))
    _write_anomalies(tmp_path, "eval", _frame([1.0, 2.0, 3.0], [1995, 9999, 1997]))
    lines = validation.describe_anomalies(str(tmp_path), ["train", "eval"])
    assert len(lines) == 2, lines
    assert lines[0].startswith("split train: feature 'rating': Out-of-range values")
    assert lines[1].startswith("split eval: feature 'release_year': Out-of-range values")


# ExampleGen's custom properties for 1,000 rating rows.
CLEAN = {"num_rows": 1000, "num_train": 790, "num_eval": 200, "num_rejects_duplicate": 10}


def test_duplicates_and_implicit_filtering_are_not_rejects():
    props = {**CLEAN, "num_train": 390, "num_below_implicit_threshold": 400}
    assert validation.check_examples(props, 0.0) == []


def test_reject_rate_above_the_limit_names_share_and_reasons():
    # 300 of 1,000 rows bad: 250 bad ratings, 50 unknown movies.
    props = {
        **CLEAN,
        "num_train": 550,
        "num_eval": 140,
        "num_rejects_bad_rating": 250,
        "num_rejects_unknown_movie": 50,
    }
    assert validation.check_examples(props, 0.05) == [
        "300 of 1,000 rating rows (30.0%) were rejected, more than max_reject_fraction 5.0%: "
        "bad_rating 250, unknown_movie 50"
    ]
    assert validation.check_examples(props, 0.3) == []
