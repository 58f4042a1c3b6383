"""The one table of dataset kinds: each kind's Source class, spec dataclass, files and names.

Everything that knows about kinds reads :data:`TABLE`:

- :func:`make_source` opens a spec with its kind's Source class (``Source.from_spec``);
- ``data.sources.spec.DatasetSpec`` builds and checks a kind's fields with its spec
  dataclass;
- :func:`dataset_spec` and ``movierec run --dataset`` take the user-facing names
  (:data:`DATASET_NAMES`);
- ``data.data_home`` fetches and checks the files of the data-home datasets
  (:data:`DATASET_FILES`, :data:`DOWNLOADABLE`);
- the spans source reads each span with its layout's Source class;
- ``Source.describe`` records the kind of a source (:func:`kind_of`).

A new kind is a Source class, a spec dataclass in ``data.sources.spec`` and a row here.
"""

import dataclasses
import os
from pathlib import Path

from data.sources.base import Source
from data.sources.latest import FILES as LATEST_FILES
from data.sources.latest import MovieLensLatestSource
from data.sources.ml100k import FILES as ML100K_FILES
from data.sources.ml100k import MovieLens100kSource
from data.sources.netflix import FILES as NETFLIX_FILES
from data.sources.netflix import NetflixSource
from data.sources.spans import SpansSource
from data.sources.spec import (
    SPAN_LAYOUTS,
    DatasetSpec,
    DirectorySpec,
    KindSpec,
    SpansSpec,
    SyntheticSpec,
    TableSpec,
)
from data.sources.synthetic import SyntheticSource
from data.sources.table import TableSource


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of dataset: a row of :data:`TABLE`.

    Attributes:
      name: the kind, as ``DatasetSpec.kind`` and the JSON's ``"kind"`` spell it.
      source: its Source class; ``source.from_spec(options)`` opens a dataset of the kind.
      spec: its spec dataclass (``data.sources.spec``): the fields the kind takes.
      datasets: its user-facing dataset names (``movierec run --dataset``).
      files: what each of its datasets needs in ``<data home>/<dataset name>/``, where they
        live; empty: its datasets are not in the data home (``path`` is theirs to give).
      no_download: why ``data.data_home`` cannot download its datasets (it fetches them
        from GroupLens when empty).
    """

    name: str
    source: type[Source]
    spec: type[KindSpec]
    datasets: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    no_download: str = ""


TABLE: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("ml-100k", MovieLens100kSource, DirectorySpec, ("ml-100k",), ML100K_FILES),
        Kind(
            "movielens-latest",
            MovieLensLatestSource,
            DirectorySpec,
            ("ml-latest-small", "ml-latest", "ml-20m", "ml-25m", "ml-32m"),
            LATEST_FILES,
        ),
        Kind(
            "netflix",
            NetflixSource,
            DirectorySpec,
            ("netflix",),
            NETFLIX_FILES,
            no_download="Kaggle needs an account",
        ),
        Kind("table", TableSource, TableSpec, ("table",)),
        Kind("synthetic", SyntheticSource, SyntheticSpec, ("synthetic",)),
        Kind("spans", SpansSource, SpansSpec),
    )
}
KINDS = tuple(TABLE)
# Dataset name -> its kind, in the order of TABLE.
DATASETS: dict[str, Kind] = {name: kind for kind in TABLE.values() for name in kind.datasets}
DATASET_NAMES = tuple(DATASETS)
MOVIELENS_LATEST_NAMES = TABLE["movielens-latest"].datasets
# The files each data-home dataset needs in <data home>/<name>/.
DATASET_FILES: dict[str, tuple[str, ...]] = {
    name: kind.files for name, kind in DATASETS.items() if kind.files
}
DOWNLOADABLE = tuple(name for name in DATASET_FILES if not DATASETS[name].no_download)
_KIND_OF_CLASS = {kind.source: kind.name for kind in TABLE.values()}


def _check_table() -> None:
    if len(DATASETS) != sum(len(kind.datasets) for kind in TABLE.values()):
        raise AssertionError(f"a dataset name is in two rows of {list(TABLE)}")
    if len(_KIND_OF_CLASS) != len(TABLE):
        raise AssertionError("a Source class is the source of two kinds")
    for layout in SPAN_LAYOUTS:  # a span is one directory of its layout
        if layout not in TABLE or TABLE[layout].spec is not DirectorySpec:
            raise AssertionError(f"span layout {layout!r} is not a directory kind")


_check_table()


def kind_of(source: Source) -> str | None:
    """The kind whose Source class ``source`` is an instance of; None when there is none."""
    for cls in type(source).__mro__:
        if cls in _KIND_OF_CLASS:
            return _KIND_OF_CLASS[cls]
    return None


def make_source(spec: DatasetSpec) -> Source:
    """The source that reads ``spec``'s dataset (no file is opened yet)."""
    return TABLE[spec.kind].source.from_spec(spec.options)


def dataset_spec(name: str, data_home: str | os.PathLike, **options) -> DatasetSpec:
    """The spec of a dataset by its user-facing name.

    Args:
      name: one of ``DATASET_NAMES``. A dataset with files in the registry lives in
        ``<data_home>/<name>`` (ml-100k; ml-latest-small, ml-latest, ml-20m, ml-25m and
        ml-32m in the "latest" layout; netflix); ``"table"`` needs ``path`` and ``columns``
        in ``options``; ``"synthetic"`` takes its sizes there.
      data_home: the data home (``data.data_home.resolve_data_home``).
      **options: the fields of the kind's spec, and ``implicit_threshold``, e.g.
        ``implicit_threshold=3.5``.

    Returns:
      the spec.

    Raises:
      ValueError: for an unknown name (listing the valid ones) or option, or a bad value.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}")
    kind = DATASETS[name]
    fields = {"kind": kind.name, **options}
    if kind.files:
        if "path" in options:
            raise ValueError(f"path: dataset {name!r} lives in the data home, not at a path")
        fields["path"] = str(Path(data_home) / name)
    return DatasetSpec.from_dict(fields)
