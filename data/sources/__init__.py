"""Dataset sources for ExampleGen: a spec says which dataset, make_source opens it.

One table, ``data.sources.registry``, lists every kind of dataset: its
:class:`~data.sources.base.Source` class, its spec dataclass (``data.sources.spec``), the
files it needs in the data home and its user-facing names. Runners map a dataset name to a
:class:`DatasetSpec` (a kind and that kind's spec) with :func:`dataset_spec` (after
``data.data_home.ensure_dataset`` has put the files in place); ExampleGen receives the
spec as JSON and reads it through :func:`make_source` and the Source interface.
"""

from data.sources.base import Shard, Source
from data.sources.registry import (
    DATASET_FILES,
    DATASET_NAMES,
    DOWNLOADABLE,
    KINDS,
    MOVIELENS_LATEST_NAMES,
    TABLE,
    Kind,
    dataset_spec,
    kind_of,
    make_source,
)
from data.sources.spec import (
    FORMATS,
    SPAN_LAYOUTS,
    SYNTHETIC_DEFAULTS,
    DatasetSpec,
    DirectorySpec,
    KindSpec,
    SpansSpec,
    SyntheticSpec,
    TableColumns,
    TableSpec,
)

__all__ = [
    "DATASET_FILES",
    "DATASET_NAMES",
    "DOWNLOADABLE",
    "FORMATS",
    "KINDS",
    "MOVIELENS_LATEST_NAMES",
    "SPAN_LAYOUTS",
    "SYNTHETIC_DEFAULTS",
    "TABLE",
    "DatasetSpec",
    "DirectorySpec",
    "Kind",
    "KindSpec",
    "Shard",
    "Source",
    "SpansSpec",
    "SyntheticSpec",
    "TableColumns",
    "TableSpec",
    "dataset_spec",
    "kind_of",
    "make_source",
]
