"""``create_pipeline``: the movierec TFX pipeline, free of I/O and environment reads.

Runners (``pipeline.local_runner`` today) build the typed arguments and pass them in; the
factory only wires components:

    MovieLensExampleGen -> ImportSchemaGen -> Transform -> Trainer -> MovieRecEvaluator
    -> MovieRecPusher

The Evaluator also receives the latest blessed model (a Resolver over ML-Metadata), so a new
model must not regress against what is serving.
"""

import dataclasses
import json
from collections.abc import Sequence

from tfx import v1 as tfx
from tfx.proto import transform_pb2

from components.evaluator import MovieRecEvaluator, Threshold
from components.example_gen import MovieLensExampleGen
from components.pusher import MovieRecPusher
from trainer import features
from trainer.config import TrainerConfig

PREPROCESSING_FN = "trainer.preprocessing.preprocessing_fn"
RUN_FN = "trainer.run.run_fn"

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
      data_dir: directory holding the dataset files (e.g. ``<data home>/ml-100k``).
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
      index_kind: retrieval index of the pushed model, ``"scann"`` or ``"brute_force"``.
      retrieval_k: movies the retrieval model returns per user.
    """

    pipeline_name: str
    pipeline_root: str
    data_dir: str
    schema_path: str
    serving_dir: str
    trainer: TrainerConfig = TrainerConfig()
    thresholds: Sequence[Threshold] = DEFAULT_THRESHOLDS
    split_kind: str = "random"
    split_seed: int = 42
    eval_fraction: float = 0.2
    leave_last_n: int = 1
    max_relative_regression: float = 0.01
    index_kind: str = "scann"
    retrieval_k: int = 100


def create_components(config: PipelineConfig) -> list:
    """The pipeline's components, wired, in topological order."""
    example_gen = MovieLensExampleGen(
        data_dir=config.data_dir,
        split_kind=config.split_kind,
        seed=config.split_seed,
        eval_fraction=config.eval_fraction,
        leave_last_n=config.leave_last_n,
    )
    schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_path)
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=transform_pb2.SplitsConfig(
            analyze=[features.TRAIN_SPLIT],
            transform=[features.TRAIN_SPLIT, features.EVAL_SPLIT],
        ),
    )
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        train_args=tfx.proto.TrainArgs(splits=[features.TRAIN_SPLIT]),
        eval_args=tfx.proto.EvalArgs(splits=[features.EVAL_SPLIT]),
        custom_config=config.trainer.to_dict(),
    )
    latest_blessed = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    evaluator = MovieRecEvaluator(
        examples=example_gen.outputs["examples"],
        catalogue=example_gen.outputs["catalogue"],
        model=trainer.outputs["model"],
        model_run=trainer.outputs["model_run"],
        baseline_model=latest_blessed.outputs["model"],
        thresholds=json.dumps([dataclasses.asdict(t) for t in config.thresholds]),
        max_relative_regression=config.max_relative_regression,
    )
    pusher = MovieRecPusher(
        model=trainer.outputs["model"],
        catalogue=example_gen.outputs["catalogue"],
        model_blessing=evaluator.outputs["blessing"],
        serving_dir=config.serving_dir,
        index_kind=config.index_kind,
        retrieval_k=config.retrieval_k,
    )
    return [example_gen, schema_gen, transform, trainer, latest_blessed, evaluator, pusher]


def create_pipeline(
    config: PipelineConfig,
    beam_pipeline_args: Sequence[str] = (),
    metadata_connection_config=None,
    enable_cache: bool = False,
) -> tfx.dsl.Pipeline:
    """Builds the TFX pipeline.

    Args:
      config: what to train and where outputs go.
      beam_pipeline_args: Beam options of the Beam-powered components (Transform).
      metadata_connection_config: ML-Metadata connection (None lets the orchestrator choose).
      enable_cache: reuse outputs of components whose inputs and parameters are unchanged.
    """
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=create_components(config),
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )
