"""Typed configuration of a pipeline run, and its JSON form; the home of its defaults.

Light on purpose (no TFX import): ``pipeline.flags`` builds the one :class:`PipelineConfig`
of ``movierec run``, ``retrain`` and ``compile`` from their shared flags (whose defaults it
reads from here, and the split's from ``data.splits.SplitConfig``), ``pipeline.launch``
writes it as JSON for the runner process, and ``pipeline.pipeline.create_pipeline`` wires
components from it.
"""

import dataclasses
import json
from collections.abc import Sequence

from data.sources import DatasetSpec
from data.splits import SplitConfig
from evaluation.blessing import Threshold
from serving import names
from trainer.config import TrainerConfig

# The ML-Metadata pipeline name of local runs (``movierec run`` and ``retrain``) and the
# default of ``movierec compile --pipeline-name``.
PIPELINE_NAME = "movierec"

# Where the Trainer's initial weights come from: a fresh initialisation, or the latest
# blessed model in ML-Metadata (rows of ids it knows carried over; see trainer.warm_start).
WARM_START_SOURCES = ("none", "latest_blessed")


# Measured by `make bench ARGS=refit` (see the README).
REFIT_BY_DEFAULT = True

# Blessing by default: beat popularity's recall@10 by 10% and the bias baseline's RMSE.
DEFAULT_THRESHOLDS = (
    Threshold(metric="recall@10", direction="min", value=1.1, baseline="popularity"),
    Threshold(metric="rmse", direction="max", value=1.0, baseline="bias"),
)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """What a run trains on and where its outputs go.

    Attributes:
      pipeline_name: the ML-Metadata pipeline context name.
      pipeline_root: directory for every component's artifacts.
      dataset: what ExampleGen reads (``data.sources.DatasetSpec``).
      schema_path: the curated schema.pbtxt of the raw examples.
      serving_dir: TF Serving directory the Pusher writes into.
      trainer: Trainer hyperparameters.
      split: how ExampleGen splits the ratings into train and eval
        (``data.splits.SplitConfig``: kind, seed, eval_fraction, leave_last_n).
      thresholds: blessing conditions of the Evaluator.
      max_relative_regression: tolerated relative regression of the thresholded metrics
        against the latest blessed model.
      max_reject_fraction: largest share of rating rows ExampleGen may reject (malformed or
        invalid) before the run stops ahead of training.
      index_kind: retrieval index of the pushed model, one of ``serving.names.INDEX_KINDS``.
      retrieval_k: movies the retrieval model returns per user.
      warm_start_from: one of ``WARM_START_SOURCES``: ``"latest_blessed"`` gives the
        Trainer the latest blessed model as its base model to warm-start from.
      refit: after the Evaluator, train the evaluated model's recipe again on every
        ingested rating (train and eval) and push that when the evaluated model is blessed
        (``make bench ARGS=refit`` measures it on ratings the pipeline never saw).

    Raises:
      ValueError: naming the field, when ``warm_start_from`` or ``index_kind`` is unknown.
    """

    pipeline_name: str
    pipeline_root: str
    dataset: DatasetSpec
    schema_path: str
    serving_dir: str
    trainer: TrainerConfig = TrainerConfig()
    split: SplitConfig = SplitConfig()
    thresholds: Sequence[Threshold] = DEFAULT_THRESHOLDS
    max_relative_regression: float = 0.01
    max_reject_fraction: float = 0.05
    index_kind: str = names.INDEX_SCANN
    retrieval_k: int = names.DEFAULT_RETRIEVAL_K
    warm_start_from: str = "none"
    refit: bool = REFIT_BY_DEFAULT

    def __post_init__(self):
        for name, allowed in (
            ("warm_start_from", WARM_START_SOURCES),
            ("index_kind", names.INDEX_KINDS),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name}: {getattr(self, name)!r} is not one of {', '.join(allowed)}"
                )


def default(field: str, cls=None):
    """The default of a field of :class:`PipelineConfig` (or of the dataclass ``cls``):
    flags read their defaults from the dataclasses, which write each one once."""
    return next(f.default for f in dataclasses.fields(cls or PipelineConfig) if f.name == field)


def config_to_dict(config: PipelineConfig) -> dict:
    """A JSON-friendly form of the config (inverse of :func:`config_from_dict`)."""
    d = dataclasses.asdict(config)
    d["trainer"] = config.trainer.to_dict()
    d["split"] = json.loads(config.split.to_json())
    d["thresholds"] = [dataclasses.asdict(t) for t in config.thresholds]
    d["dataset"] = json.loads(config.dataset.to_json())
    return d


def config_from_dict(d: dict) -> PipelineConfig:
    """Rebuilds a PipelineConfig written by :func:`config_to_dict`."""
    d = dict(d)
    d["trainer"] = TrainerConfig.from_custom_config(d.get("trainer", {}))
    d["split"] = SplitConfig.from_json(json.dumps(d.get("split", {})))
    d["thresholds"] = tuple(Threshold(**t) for t in d.get("thresholds", []))
    d["dataset"] = DatasetSpec.from_json(json.dumps(d["dataset"]))
    return PipelineConfig(**d)
