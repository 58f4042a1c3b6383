"""Dataset sources for ExampleGen: a spec says which dataset, make_source opens it.

Runners map a dataset name to a :class:`DatasetSpec` with :func:`dataset_spec` (after
``components.data_home.ensure_dataset`` has put the files in place); ExampleGen receives the
spec as JSON and reads it through :func:`make_source` and the
:class:`~components.sources.base.Source` interface.
"""

import os
from pathlib import Path

from components.sources.base import Shard, Source
from components.sources.latest import MovieLensLatestSource
from components.sources.ml100k import MovieLens100kSource
from components.sources.netflix import NetflixSource
from components.sources.spans import SpansSource
from components.sources.spec import (
    FORMATS,
    KINDS,
    SPAN_LAYOUTS,
    SYNTHETIC_DEFAULTS,
    DatasetSpec,
    TableColumns,
)
from components.sources.synthetic import SyntheticSource
from components.sources.table import TableSource

__all__ = [
    "DATASET_NAMES",
    "FORMATS",
    "KINDS",
    "MOVIELENS_LATEST_NAMES",
    "SPAN_LAYOUTS",
    "SYNTHETIC_DEFAULTS",
    "DatasetSpec",
    "Shard",
    "Source",
    "TableColumns",
    "dataset_spec",
    "make_source",
]

MOVIELENS_LATEST_NAMES = ("ml-latest-small", "ml-latest", "ml-20m", "ml-25m", "ml-32m")
DATASET_NAMES = ("ml-100k", *MOVIELENS_LATEST_NAMES, "netflix", "table", "synthetic")


def dataset_spec(name: str, data_home: str | os.PathLike, **options) -> DatasetSpec:
    """The spec of a dataset by its user-facing name.

    Args:
      name: one of ``DATASET_NAMES``. MovieLens sets live in ``<data_home>/<name>`` (all but
        ml-100k in the "latest" layout), Netflix in ``<data_home>/netflix``; ``"table"`` needs
        ``path`` and ``columns`` in ``options``; ``"synthetic"`` takes its sizes there.
      data_home: the data home (``components.data_home.resolve_data_home``).
      **options: further :class:`DatasetSpec` fields, e.g. ``implicit_threshold=3.5``.

    Returns:
      the spec.

    Raises:
      ValueError: for an unknown name (listing the valid ones) or option, or a bad value.
    """
    kinds = {
        "ml-100k": "ml-100k",
        **dict.fromkeys(MOVIELENS_LATEST_NAMES, "movielens-latest"),
        "netflix": "netflix",
        "table": "table",
        "synthetic": "synthetic",
    }
    if name not in kinds:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    fields = {"kind": kinds[name], **options}
    if kinds[name] in ("ml-100k", "movielens-latest", "netflix"):
        if "path" in options:
            raise ValueError(f"path: dataset {name!r} lives in the data home, not at a path")
        fields["path"] = str(Path(data_home) / name)
    return DatasetSpec.from_dict(fields)


def make_source(spec: DatasetSpec) -> Source:
    """The source that reads ``spec``'s dataset (no file is opened yet)."""
    if spec.kind == "ml-100k":
        return MovieLens100kSource(spec.path)
    if spec.kind == "movielens-latest":
        return MovieLensLatestSource(spec.path)
    if spec.kind == "netflix":
        return NetflixSource(spec.path)
    if spec.kind == "spans":
        return SpansSource(spec.path, spec.span_layout, spec.spans, spec.window)
    if spec.kind == "table":
        return TableSource(
            spec.path,
            spec.columns,
            format=spec.format,
            delimiter=spec.delimiter,
            min_rating=spec.min_rating,
            max_rating=spec.max_rating,
        )
    return SyntheticSource(
        num_users=spec.num_users,
        num_movies=spec.num_movies,
        num_ratings=spec.num_ratings,
        seed=spec.seed,
        num_clusters=spec.num_clusters,
    )
