"""Tests of data.sources' DatasetSpec (a kind and its own spec), dataset_spec and make_source."""

import json
import pickle
from pathlib import Path

import pytest

from data import sources
from data.sources import (
    DatasetSpec,
    DirectorySpec,
    SpansSpec,
    SyntheticSpec,
    TableColumns,
    TableSpec,
)
from data.sources.latest import MovieLensLatestSource
from data.sources.ml100k import MovieLens100kSource
from data.sources.netflix import NetflixSource
from data.sources.synthetic import SyntheticSource
from data.sources.table import TableSource

COLUMNS = {"user": "uid", "item": "mid", "rating": "stars", "timestamp": "when"}


@pytest.mark.parametrize(
    "spec",
    [
        DatasetSpec(kind="ml-100k", path="/d/ml-100k"),
        DatasetSpec(kind="movielens-latest", path="/d/ml-25m", implicit_threshold=3.5),
        DatasetSpec(kind="netflix", path="/d/netflix"),
        DatasetSpec(kind="table", path="/t/r.tsv", columns=COLUMNS, delimiter=";"),
        DatasetSpec(kind="table", path="/t/r.bin", columns=COLUMNS, format="parquet"),
        DatasetSpec(kind="synthetic", num_users=5, seed=3),
    ],
)
def test_json_round_trip(spec):
    again = DatasetSpec.from_json(spec.to_json())
    assert again == spec
    assert again.to_json() == spec.to_json()
    assert pickle.loads(pickle.dumps(spec)) == spec


def test_json_shape_table_fills_rating_range():
    spec = DatasetSpec(kind="table", path="r.csv", columns=COLUMNS, implicit_threshold=4)
    assert spec.columns == TableColumns("uid", "mid", "stars", timestamp="when")
    assert json.loads(spec.to_json()) == {
        "kind": "table",
        "path": "r.csv",
        "columns": {"user": "uid", "item": "mid", "rating": "stars", "timestamp": "when"},
        "min_rating": 0.5,
        "max_rating": 5.0,
        "implicit_threshold": 4.0,
    }


def test_json_shape_synthetic_records_its_defaults():
    assert DatasetSpec(kind="synthetic", num_ratings=500).to_json() == (
        '{"kind": "synthetic", "num_clusters": 10, "num_movies": 1700, "num_ratings": 500, '
        '"num_users": 1000, "seed": 0}'
    )


def test_path_like_becomes_text():
    assert DatasetSpec(kind="netflix", path=Path("/d/netflix")).path == "/d/netflix"
    assert DirectorySpec(Path("/d/netflix")).path == "/d/netflix"


def test_a_spec_is_its_kind_and_the_kinds_own_spec():
    table = DatasetSpec(kind="table", path="r.csv", columns=COLUMNS, implicit_threshold=4)
    assert table.kind == "table" and table.implicit_threshold == 4.0
    assert table.options == TableSpec("r.csv", TableColumns("uid", "mid", "stars", "when"))
    assert table == DatasetSpec("table", table.options, implicit_threshold=4)
    # The kind's fields read through; a field the kind does not take is not there.
    assert (table.path, table.columns, table.min_rating) == ("r.csv", table.options.columns, 0.5)
    with pytest.raises(AttributeError, match="kind 'table' has no field 'num_users'"):
        table.num_users  # noqa: B018
    assert not hasattr(table, "spans")
    assert DatasetSpec(kind="ml-100k", path="/d").options == DirectorySpec("/d")
    assert DatasetSpec(kind="synthetic").options == SyntheticSpec()
    spans = DatasetSpec(kind="spans", path="/r", span_layout="ml-100k", window=2, spans=["span-1"])
    assert spans.options == SpansSpec("/r", "ml-100k", 2, ("span-1",))
    # A None field is one left out, as in the JSON (which has no nulls).
    assert DatasetSpec(kind="synthetic", seed=None, columns=None) == DatasetSpec(kind="synthetic")


def test_the_kinds_own_spec_must_fit_the_kind():
    with pytest.raises(ValueError, match="options: kind 'netflix' takes a DirectorySpec"):
        DatasetSpec("netflix", SyntheticSpec())
    with pytest.raises(ValueError, match="options: kind 'ml-100k' takes a DirectorySpec"):
        DatasetSpec("ml-100k", "/d")
    with pytest.raises(ValueError, match="path: give the options or their fields, not both"):
        DatasetSpec("netflix", DirectorySpec("/d"), path="/e")
    with pytest.raises(ValueError, match="num_users: must be >= 1"):
        SyntheticSpec(num_users=0)
    with pytest.raises(ValueError, match="columns: kind 'table' needs its column names"):
        TableSpec("r.csv", None)


def test_field_errors_say_which_kinds_take_the_field():
    with pytest.raises(ValueError) as e:
        DatasetSpec.from_dict({"kind": "ml-100k", "path": "/d", "min_rating": 1})
    assert str(e.value) == "min_rating: applies to kind 'table' only, not 'ml-100k'"
    with pytest.raises(ValueError) as e:
        DatasetSpec.from_dict({"kind": "synthetic", "path": "/d"})
    assert str(e.value) == (
        "path: applies to kinds 'ml-100k', 'movielens-latest', 'netflix', 'table', 'spans' "
        "only, not 'synthetic'"
    )
    with pytest.raises(ValueError) as e:
        DatasetSpec.from_dict({"kind": "ml-100k", "path": "/d", "colour": 1})
    assert str(e.value) == (
        "colour: unknown field (known for kind 'ml-100k': kind, path, implicit_threshold)"
    )
    with pytest.raises(ValueError) as e:
        DatasetSpec.from_dict({"kind": "table", "columns": COLUMNS})
    assert str(e.value) == "path: required by kind 'table'"


@pytest.mark.parametrize(
    "value, field",
    [
        ({"kind": "ml-1m", "path": "/d"}, "kind"),
        ({"path": "/d"}, "kind"),
        ({"kind": "ml-100k"}, "path"),
        ({"kind": "ml-100k", "path": ""}, "path"),
        ({"kind": "synthetic", "path": "/d"}, "path"),
        ({"kind": "ml-100k", "path": "/d", "colour": 1}, "colour"),
        ({"kind": "ml-100k", "path": "/d", "min_rating": 1}, "min_rating"),
        ({"kind": "netflix", "path": "/d", "num_users": 5}, "num_users"),
        ({"kind": "ml-100k", "path": "/d", "implicit_threshold": "4"}, "implicit_threshold"),
        ({"kind": "ml-100k", "path": "/d", "implicit_threshold": float("nan")}, "implicit"),
        ({"kind": "table", "path": "r.csv"}, "columns"),
        ({"kind": "table", "path": "r.csv", "columns": {"user": "u", "item": "i"}}, "rating"),
        ({"kind": "table", "path": "r.csv", "columns": {**COLUMNS, "genre": "g"}}, "genre"),
        ({"kind": "table", "path": "r.csv", "columns": {**COLUMNS, "user": ""}}, "user"),
        ({"kind": "table", "path": "r.csv", "columns": ["uid"]}, "columns"),
        ({"kind": "table", "path": "r.xlsx", "columns": COLUMNS}, "format"),
        ({"kind": "table", "path": "r.csv", "columns": COLUMNS, "format": "orc"}, "format"),
        ({"kind": "table", "path": "r.pq", "columns": COLUMNS, "delimiter": ";"}, "delimiter"),
        ({"kind": "table", "path": "r.csv", "columns": COLUMNS, "delimiter": ";;"}, "delimiter"),
        ({"kind": "table", "path": "r.csv", "columns": COLUMNS, "min_rating": 5}, "min_rating"),
        ({"kind": "synthetic", "num_users": 0}, "num_users"),
        ({"kind": "synthetic", "num_users": "10"}, "num_users"),
        ({"kind": "synthetic", "num_ratings": 10.0}, "num_ratings"),
        ({"kind": "synthetic", "seed": True}, "seed"),
        ({"kind": "synthetic", "seed": -1}, "seed"),
        ({"kind": "synthetic", "num_movies": 3, "num_clusters": 4}, "num_clusters"),
    ],
)
def test_bad_values_raise_naming_the_field(value, field):
    with pytest.raises(ValueError, match=field):
        DatasetSpec.from_json(json.dumps(value))


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '"ml-100k"'])
def test_from_json_needs_a_json_object(text):
    with pytest.raises(ValueError, match="dataset spec"):
        DatasetSpec.from_json(text)


@pytest.mark.parametrize(
    "name, kind",
    [
        ("ml-100k", "ml-100k"),
        ("ml-latest-small", "movielens-latest"),
        ("ml-latest", "movielens-latest"),
        ("ml-20m", "movielens-latest"),
        ("ml-25m", "movielens-latest"),
        ("ml-32m", "movielens-latest"),
        ("netflix", "netflix"),
    ],
)
def test_dataset_spec_puts_named_sets_in_the_data_home(name, kind):
    spec = sources.dataset_spec(name, Path("/data"), implicit_threshold=3)
    assert spec == DatasetSpec(kind=kind, path=f"/data/{name}", implicit_threshold=3.0)


def test_dataset_spec_table_and_synthetic_take_their_options():
    table = sources.dataset_spec("table", "/data", path="/t/r.parquet", columns=COLUMNS)
    assert table == DatasetSpec(kind="table", path="/t/r.parquet", columns=COLUMNS)
    synthetic = sources.dataset_spec("synthetic", "/data", num_users=7)
    assert synthetic == DatasetSpec(kind="synthetic", num_users=7)


def test_dataset_spec_errors():
    with pytest.raises(ValueError) as e:
        sources.dataset_spec("ml-1m", "/data")
    assert str(e.value) == (
        "unknown dataset 'ml-1m'; valid names: ml-100k, ml-latest-small, ml-latest, ml-20m, "
        "ml-25m, ml-32m, netflix, table, synthetic"
    )
    with pytest.raises(ValueError, match="path"):
        sources.dataset_spec("ml-25m", "/data", path="/elsewhere")
    with pytest.raises(ValueError, match="colour"):
        sources.dataset_spec("netflix", "/data", colour="red")


def test_make_source_passes_the_spec_on():
    ml100k = sources.make_source(DatasetSpec(kind="ml-100k", path="/d/ml-100k"))
    assert (type(ml100k), ml100k.directory) == (MovieLens100kSource, "/d/ml-100k")
    latest = sources.make_source(DatasetSpec(kind="movielens-latest", path="/d/ml-25m"))
    assert (type(latest), latest.directory, latest.name) == (
        MovieLensLatestSource,
        "/d/ml-25m",
        "ml-25m",
    )
    netflix = sources.make_source(DatasetSpec(kind="netflix", path="/d/netflix"))
    assert (type(netflix), netflix.directory, netflix.has_timestamps) == (
        NetflixSource,
        "/d/netflix",
        False,
    )
    table = sources.make_source(
        DatasetSpec(kind="table", path="/t/r.tsv", columns=COLUMNS, max_rating=10)
    )
    assert type(table) is TableSource
    assert (table.format, table.delimiter, table.min_rating, table.max_rating) == (
        "csv",
        "\t",
        0.5,
        10.0,
    )
    assert table.has_timestamps
    synthetic = sources.make_source(DatasetSpec(kind="synthetic", num_movies=20, seed=4))
    assert type(synthetic) is SyntheticSource
    assert synthetic.describe() == {
        "name": "synthetic",
        "kind": "synthetic",
        "num_users": 1000,
        "num_movies": 20,
        "num_ratings": 100_000,
        "seed": 4,
        "num_clusters": 10,
    }
