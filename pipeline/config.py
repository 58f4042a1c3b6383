"""Typed configuration of a pipeline run, and its JSON form.

Light on purpose (no TFX import): ``movierec`` builds a :class:`PipelineConfig` from its
flags, writes it as JSON for the runner process, and ``pipeline.pipeline.create_pipeline``
wires components from it.
"""

import dataclasses
import json
from collections.abc import Sequence

from components.blessing import Threshold
from components.sources import DatasetSpec
from trainer.config import TrainerConfig

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
      dataset: what ExampleGen reads (``components.sources.DatasetSpec``).
      schema_path: the curated schema.pbtxt of the raw examples.
      serving_dir: TF Serving directory the Pusher writes into.
      trainer: Trainer hyperparameters.
      thresholds: blessing conditions of the Evaluator.
      split_kind: ``"random"`` (hash of user and movie), ``"time"`` (global cutoff) or
        ``"leave_last_n"`` (each user's latest ratings).
      split_seed: seed of the random train/eval split.
      eval_fraction: share of ratings held out (random and time splits).
      leave_last_n: ratings held out per user (leave_last_n split).
      max_relative_regression: tolerated relative regression of the thresholded metrics
        against the latest blessed model.
      max_reject_fraction: largest share of rating rows ExampleGen may reject (malformed or
        invalid) before the run stops ahead of training.
      index_kind: retrieval index of the pushed model, ``"scann"`` or ``"brute_force"``.
      retrieval_k: movies the retrieval model returns per user.
      warm_start_from: one of ``WARM_START_SOURCES``: ``"latest_blessed"`` gives the
        Trainer the latest blessed model as its base model to warm-start from.
      refit: after the Evaluator, train the evaluated model's recipe again on every
        ingested rating (train and eval) and push that when the evaluated model is blessed
        (``make bench ARGS=refit`` measures it on ratings the pipeline never saw).
    """

    pipeline_name: str
    pipeline_root: str
    dataset: DatasetSpec
    schema_path: str
    serving_dir: str
    trainer: TrainerConfig = TrainerConfig()
    thresholds: Sequence[Threshold] = DEFAULT_THRESHOLDS
    split_kind: str = "random"
    split_seed: int = 42
    eval_fraction: float = 0.2
    leave_last_n: int = 1
    max_relative_regression: float = 0.01
    max_reject_fraction: float = 0.05
    index_kind: str = "scann"
    retrieval_k: int = 100
    warm_start_from: str = "none"
    refit: bool = REFIT_BY_DEFAULT

    def __post_init__(self):
        if self.warm_start_from not in WARM_START_SOURCES:
            raise ValueError(
                f"warm_start_from: {self.warm_start_from!r} is not one of "
                f"{', '.join(WARM_START_SOURCES)}"
            )


def config_to_dict(config: PipelineConfig) -> dict:
    """A JSON-friendly form of the config (inverse of :func:`config_from_dict`)."""
    d = dataclasses.asdict(config)
    d["trainer"] = config.trainer.to_dict()
    d["thresholds"] = [dataclasses.asdict(t) for t in config.thresholds]
    d["dataset"] = json.loads(config.dataset.to_json())
    return d


def config_from_dict(d: dict) -> PipelineConfig:
    """Rebuilds a PipelineConfig written by :func:`config_to_dict`."""
    d = dict(d)
    d["trainer"] = TrainerConfig.from_custom_config(d.get("trainer", {}))
    d["thresholds"] = tuple(Threshold(**t) for t in d.get("thresholds", []))
    d["dataset"] = DatasetSpec.from_json(json.dumps(d["dataset"]))
    return PipelineConfig(**d)
