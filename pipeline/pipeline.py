"""``create_pipeline``: the movierec TFX pipeline, free of I/O and environment reads.

Runners (``pipeline.local_runner``, ``pipeline.kubeflow_v2_runner``) pass in the typed
config (``pipeline.config.PipelineConfig``); the factory only wires components:

    MovieRecExampleGen -> StatisticsGen -> ExampleValidator (curated schema, ImportSchemaGen)
    -> DataValidationGate -> Transform -> Trainer -> MovieRecServables -> MovieRecEvaluator
    -> MovieRecPusher

The servable builder makes the SavedModels users are served (retrieval index over the whole
catalogue, ranking model) before the Evaluator measures them through the serving code; the
Pusher only copies what was blessed. With ``config.refit`` a second Trainer trains the
evaluated model's recipe on every ingested rating after the Evaluator, a second builder
makes its servables, and the Pusher pushes those when the evaluated model was blessed
(ML-Metadata records the evaluated model as the refit Trainer's base model).

The gate stops the run before Transform when ExampleValidator finds anomalies or too many
rating rows were rejected, so bad data never reaches training or serving.

The Evaluator also receives the latest blessed model (a Resolver over ML-Metadata), so a new
model must not regress against what is serving. With ``warm_start_from="latest_blessed"`` the
Trainer receives it too, as its base model (``fn_args.base_model``) to warm-start from.
"""

import dataclasses
import json
from collections.abc import Sequence

from tfx import v1 as tfx
from tfx.proto import transform_pb2

from components.evaluator import MovieRecEvaluator
from components.example_gen import MovieRecExampleGen
from components.pusher import MovieRecPusher
from components.servables import MovieRecServables
from components.validation import DataValidationGate
from pipeline.config import PipelineConfig
from trainer import features

PREPROCESSING_FN = "trainer.preprocessing.preprocessing_fn"
REFIT_TRAINER = "RefitTrainer"
REFIT_SERVABLES = "RefitServables"
RUN_FN = "trainer.run.run_fn"


def create_components(config: PipelineConfig) -> list:
    """The pipeline's components, wired, in topological order."""
    example_gen = MovieRecExampleGen(
        dataset=config.dataset.to_json(),
        split_kind=config.split.kind,
        seed=config.split.seed,
        eval_fraction=config.split.eval_fraction,
        leave_last_n=config.split.leave_last_n,
    )
    schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_path)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"],
        schema=schema_gen.outputs["schema"],
    )
    gate = DataValidationGate(
        examples=example_gen.outputs["examples"],
        anomalies=example_validator.outputs["anomalies"],
        max_reject_fraction=config.max_reject_fraction,
    )
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        splits_config=transform_pb2.SplitsConfig(
            analyze=[features.TRAIN_SPLIT],
            transform=[features.TRAIN_SPLIT, features.EVAL_SPLIT],
        ),
        # TFDV statistics of the raw and the transformed examples, which nothing reads
        # (StatisticsGen's are the ones validated): two more passes over the data.
        disable_statistics=True,
    )
    transform.add_upstream_node(gate)
    latest_blessed = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    base_models = {"none": None, "latest_blessed": latest_blessed.outputs["model"]}
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        base_model=base_models[config.warm_start_from],
        train_args=tfx.proto.TrainArgs(splits=[features.TRAIN_SPLIT]),
        eval_args=tfx.proto.EvalArgs(splits=[features.EVAL_SPLIT]),
        # The re-ranker is trained on as many candidates as the retrieval model serves.
        custom_config=dataclasses.replace(config.trainer, candidates=config.retrieval_k).to_dict(),
    )

    def servables_of(model):
        return MovieRecServables(
            model=model,
            examples=example_gen.outputs["examples"],
            catalogue=example_gen.outputs["catalogue"],
            index_kind=config.index_kind,
            retrieval_k=config.retrieval_k,
        )

    servables = servables_of(trainer.outputs["model"])
    evaluator = MovieRecEvaluator(
        examples=example_gen.outputs["examples"],
        catalogue=example_gen.outputs["catalogue"],
        servables=servables.outputs["servables"],
        model_run=trainer.outputs["model_run"],
        baseline_model=latest_blessed.outputs["model"],
        thresholds=json.dumps([dataclasses.asdict(t) for t in config.thresholds]),
        max_relative_regression=config.max_relative_regression,
        index_kind=config.index_kind,
        retrieval_k=config.retrieval_k,
    )
    components = [trainer, servables, evaluator]
    pushed = servables
    if config.refit:
        # The evaluated model's recipe (its choices, read from it as the base model) on
        # every ingested rating; after the Evaluator, which blessed the recipe.
        refit_trainer = tfx.components.Trainer(
            run_fn=RUN_FN,
            examples=transform.outputs["transformed_examples"],
            transform_graph=transform.outputs["transform_graph"],
            base_model=trainer.outputs["model"],
            train_args=tfx.proto.TrainArgs(splits=[features.TRAIN_SPLIT, features.EVAL_SPLIT]),
            eval_args=tfx.proto.EvalArgs(splits=[features.EVAL_SPLIT]),
            custom_config=dataclasses.replace(
                config.trainer, candidates=config.retrieval_k, refit=True
            ).to_dict(),
        ).with_id(REFIT_TRAINER)
        refit_trainer.add_upstream_node(evaluator)
        pushed = servables_of(refit_trainer.outputs["model"]).with_id(REFIT_SERVABLES)
        components += [refit_trainer, pushed]
    pusher = MovieRecPusher(
        servables=pushed.outputs["servables"],
        model_blessing=evaluator.outputs["blessing"],
        serving_dir=config.serving_dir,
        evaluated_servables=servables.outputs["servables"],
    )
    return [
        example_gen,
        schema_gen,
        statistics_gen,
        example_validator,
        gate,
        transform,
        latest_blessed,
        *components,
        pusher,
    ]


def create_pipeline(
    config: PipelineConfig,
    beam_pipeline_args: Sequence[str] = (),
    metadata_connection_config=None,
    enable_cache: bool = False,
) -> tfx.dsl.Pipeline:
    """Builds the TFX pipeline.

    Args:
      config: what to train and where outputs go.
      beam_pipeline_args: Beam options of the Beam-powered components (ExampleGen,
        StatisticsGen, Transform).
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
