"""The checks that stop a run before training when the data is not fit to train on.

``components.validation``'s ``DataValidationGate`` runs them and raises
:class:`DataValidationError` listing every problem, each with a message a person can act on:

* :func:`describe_anomalies`: schema anomalies ExampleValidator found in any split (the
  curated schema in ``pipeline/schema/schema.pbtxt`` against StatisticsGen's statistics);
* :func:`check_examples`: too many rejected rating rows: ExampleGen quarantines bad rows
  (``rejects.csv``), which is right for a few stray lines and wrong when, say, a third of a
  file no longer parses.
"""

import os

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2

from data import records

ANOMALIES_FILE = "SchemaDiff.pb"


class DataValidationError(ValueError):
    """The examples failed validation; the message lists every problem found."""


def describe_anomalies(anomalies_uri: str, split_names: list[str]) -> list[str]:
    """One line per anomaly ExampleValidator recorded, e.g.
    ``"split train: feature 'rating': Unexpected string values: ..."``; [] when clean."""
    lines = []
    for split in split_names:
        path = os.path.join(anomalies_uri, f"Split-{split}", ANOMALIES_FILE)
        if not tf.io.gfile.exists(path):
            continue
        with tf.io.gfile.GFile(path, "rb") as f:
            anomalies = anomalies_pb2.Anomalies.FromString(f.read())
        for feature, info in sorted(anomalies.anomaly_info.items()):
            lines.append(f"split {split}: feature '{feature}': {_describe(info)}")
        if anomalies.HasField("dataset_anomaly_info"):
            lines.append(f"split {split}: dataset: {_describe(anomalies.dataset_anomaly_info)}")
    return lines


def _describe(info: anomalies_pb2.AnomalyInfo) -> str:
    if info.short_description and info.description:
        return f"{info.short_description}: {info.description}"
    return info.short_description or info.description


def check_examples(properties: dict[str, int], max_reject_fraction: float) -> list[str]:
    """The reject-rate problem of one ExampleGen output, if any.

    Args:
      properties: ExampleGen's integer custom properties (``num_rows``, ``num_train``,
        ``num_eval``, ``num_below_implicit_threshold``, ``num_rejects_<reason>``).
      max_reject_fraction: the largest tolerated share of rating rows rejected for being
        malformed or invalid. Duplicates do not count: keeping the latest is routine.

    Returns:
      ``[]``, or one line naming the share and each reason's count.
    """
    rows = properties.get("num_rows", 0)
    kept = sum(properties.get(k, 0) for k in ("num_train", "num_eval"))
    kept += properties.get("num_below_implicit_threshold", 0)
    duplicates = properties.get(f"num_rejects_{records.DUPLICATE}", 0)
    bad = rows - kept - duplicates
    if rows == 0 or bad / rows <= max_reject_fraction:
        return []
    reasons = ", ".join(
        f"{reason} {properties[f'num_rejects_{reason}']:,}"
        for reason in records.REJECT_REASONS
        if reason != records.DUPLICATE and properties.get(f"num_rejects_{reason}", 0)
    )
    return [
        f"{bad:,} of {rows:,} rating rows ({bad / rows:.1%}) were rejected, more than "
        f"max_reject_fraction {max_reject_fraction:.1%}: {reasons}"
    ]
