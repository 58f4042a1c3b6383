"""Tests of data.sources.registry: the one table every reader of kinds goes through."""

import pytest

from data import data_home
from data.records import Reject
from data.sources import (
    DATASET_NAMES,
    KINDS,
    SPAN_LAYOUTS,
    TABLE,
    DatasetSpec,
    DirectorySpec,
    Source,
    SpansSpec,
    SyntheticSpec,
    TableSpec,
    dataset_spec,
    kind_of,
    make_source,
    registry,
)
from data.sources.latest import MovieLensLatestSource
from data.sources.ml100k import MovieLens100kSource
from data.sources.netflix import NetflixSource
from data.sources.spans import SpansSource
from data.sources.synthetic import SyntheticSource
from data.sources.table import TableSource

COLUMNS = {"user": "u", "item": "i", "rating": "r"}
# One spec of every kind.
SPECS = {
    "ml-100k": DatasetSpec(kind="ml-100k", path="/d/ml-100k"),
    "movielens-latest": DatasetSpec(kind="movielens-latest", path="/d/ml-25m"),
    "netflix": DatasetSpec(kind="netflix", path="/d/netflix"),
    "table": DatasetSpec(kind="table", path="/t/r.csv", columns=COLUMNS),
    "synthetic": DatasetSpec(kind="synthetic", num_movies=20),
    "spans": DatasetSpec(
        kind="spans", path="/r", span_layout="ml-100k", window=1, spans=("span-1",)
    ),
}


def test_the_table_lists_every_kind_with_its_source_and_spec():
    assert KINDS == ("ml-100k", "movielens-latest", "netflix", "table", "synthetic", "spans")
    assert {name: (kind.source, kind.spec) for name, kind in TABLE.items()} == {
        "ml-100k": (MovieLens100kSource, DirectorySpec),
        "movielens-latest": (MovieLensLatestSource, DirectorySpec),
        "netflix": (NetflixSource, DirectorySpec),
        "table": (TableSource, TableSpec),
        "synthetic": (SyntheticSource, SyntheticSpec),
        "spans": (SpansSource, SpansSpec),
    }
    assert set(SPECS) == set(KINDS)


def test_dataset_names_and_data_home_files_are_the_tables():
    assert DATASET_NAMES == (
        "ml-100k",
        "ml-latest-small",
        "ml-latest",
        "ml-20m",
        "ml-25m",
        "ml-32m",
        "netflix",
        "table",
        "synthetic",
    )
    assert {name: kind.name for name, kind in registry.DATASETS.items()} == {
        "ml-100k": "ml-100k",
        **dict.fromkeys(registry.MOVIELENS_LATEST_NAMES, "movielens-latest"),
        "netflix": "netflix",
        "table": "table",
        "synthetic": "synthetic",
    }
    latest = ("ratings.csv", "movies.csv")
    assert data_home.DATASET_FILES is registry.DATASET_FILES
    assert data_home.DATASET_FILES == {
        "ml-100k": ("u.data", "u.item", "u.user"),
        "ml-latest-small": latest,
        "ml-latest": latest,
        "ml-20m": latest,
        "ml-25m": latest,
        "ml-32m": latest,
        "netflix": ("Netflix_Dataset_Rating.csv", "Netflix_Dataset_Movie.csv"),
    }
    assert data_home.DOWNLOADABLE == registry.DOWNLOADABLE
    assert data_home.DOWNLOADABLE == (
        "ml-100k",
        "ml-latest-small",
        "ml-latest",
        "ml-20m",
        "ml-25m",
        "ml-32m",
    )


@pytest.mark.parametrize("kind", KINDS)
def test_make_source_opens_every_kind_with_its_row_and_describe_names_it(kind, tmp_path):
    spec = SPECS[kind]
    if kind == "spans":  # the spans source reads its spans' catalogues when opened
        spec = DatasetSpec(kind, SpansSpec(str(tmp_path), "ml-100k", 1, ("span-1",)))
    source = make_source(spec)
    assert type(source) is TABLE[kind].source
    assert kind_of(source) == kind
    described = source.describe()
    assert (described["name"], described["kind"]) == (source.name, kind)
    assert described.get("path") == spec.options.to_dict().get("path")


@pytest.mark.parametrize("layout", SPAN_LAYOUTS)
def test_spans_read_each_span_with_its_layouts_source(layout, tmp_path):
    source = SpansSource(tmp_path, layout, ("span-1", "span-2"))
    assert [type(s) for s in source._sources] == [TABLE[layout].source] * 2
    assert [s.directory for s in source._sources] == [
        str(tmp_path / "span-1"),
        str(tmp_path / "span-2"),
    ]
    assert TABLE[layout].spec is DirectorySpec


@pytest.mark.parametrize("name", ["ml-100k", "ml-latest-small", "ml-32m", "netflix"])
def test_data_home_datasets_have_their_directory_as_path(name):
    spec = dataset_spec(name, "/data")
    assert spec.kind == registry.DATASETS[name].name
    assert spec.options == DirectorySpec(f"/data/{name}")


class _Unlisted(Source):
    name = "unlisted"

    def read_movies(self, rejects: list[Reject]):
        return {}

    def rating_shards(self):
        return []

    def read_ratings(self, shard, movies, users):
        return iter(())


def test_a_source_outside_the_table_describes_itself_without_a_kind():
    assert kind_of(_Unlisted()) is None
    assert _Unlisted().describe() == {"name": "unlisted"}

    class Mine(MovieLens100kSource):
        name = "mine"

    assert Mine("/d").describe() == {"name": "mine", "kind": "ml-100k", "path": "/d"}
