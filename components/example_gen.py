"""MovieRecExampleGen: the TFX component over ``data.examples.write_examples``.

``pipeline.pipeline`` puts it first in the pipeline; it unpacks its artifacts and parameters,
calls ``data.examples.write_examples`` (any dataset source -> rating and catalogue
tf.Examples, the ratings streamed through Beam on the pipeline's Beam runner) and records the
counts as custom properties.
"""

import json

import apache_beam as beam
from tfx.dsl.component.experimental.annotations import (
    BeamComponentParameter,
    OutputArtifact,
    Parameter,
)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import Examples

from data import ingest, splits
from data.examples import write_examples
from data.sources import DatasetSpec, make_source
from trainer import features

SPLIT_PROPERTY = "split_config"
DATASET_PROPERTY = "dataset"
# The split defaults are SplitConfig's (the pipeline passes its config's split).
_SPLIT = splits.SplitConfig()


@component(use_beam=True)
def MovieRecExampleGen(
    dataset: Parameter[str],
    examples: OutputArtifact[Examples],
    catalogue: OutputArtifact[Examples],
    seed: Parameter[int] = _SPLIT.seed,
    eval_fraction: Parameter[float] = _SPLIT.eval_fraction,
    split_kind: Parameter[str] = _SPLIT.kind,
    leave_last_n: Parameter[int] = _SPLIT.leave_last_n,
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
):
    """Reads a dataset into rating examples and catalogue examples.

    Args:
      dataset: ``DatasetSpec.to_json()`` of the source (kind, path, options).
      examples: rating examples, splits ``train`` and ``eval``; custom properties
        ``num_train``, ``num_eval``, ``num_rows`` (rating rows read),
        ``num_below_implicit_threshold``, ``num_rejects``, ``num_rejects_<reason>``,
        ``split_config`` (JSON of the split used, as in ``<uri>/split.json``) and ``dataset``.
      catalogue: one example per movie, split ``catalogue``; custom property ``num_catalogue``.
      seed: seed of the random split.
      eval_fraction: expected share (random) or timestamp quantile (time) of the eval split.
      split_kind: ``"random"``, ``"time"`` or ``"leave_last_n"``; see ``splits.SplitConfig``.
      leave_last_n: ratings held out per user by the leave_last_n split.
      beam_pipeline: supplied by TFX from the pipeline's Beam args.
    """
    spec = DatasetSpec.from_json(dataset)
    split = splits.SplitConfig(
        kind=split_kind, seed=seed, eval_fraction=eval_fraction, leave_last_n=leave_last_n
    )
    stats = write_examples(
        make_source(spec),
        examples.uri,
        catalogue.uri,
        split=split,
        implicit_threshold=spec.implicit_threshold,
        beam_pipeline=beam_pipeline,
    )
    examples.split_names = artifact_utils.encode_split_names(list(ingest.RATING_SPLITS))
    catalogue.split_names = artifact_utils.encode_split_names([features.CATALOGUE_SPLIT])
    for key in ("num_train", "num_eval", "num_rows", "num_below_implicit_threshold"):
        examples.set_int_custom_property(key, stats[key])
    examples.set_int_custom_property("num_rejects", sum(stats["rejects"].values()))
    examples.set_string_custom_property(SPLIT_PROPERTY, json.dumps(stats["split"]))
    examples.set_string_custom_property(DATASET_PROPERTY, json.dumps(stats["dataset"]))
    for reason, count in stats["rejects"].items():
        examples.set_int_custom_property(f"num_rejects_{reason}", count)
    catalogue.set_int_custom_property("num_catalogue", stats["num_catalogue"])
