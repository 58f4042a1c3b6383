"""Compiles the pipeline for Vertex AI Pipelines: KubeflowV2DagRunner, Dataflow, gs:// paths.

``movierec compile --target vertex`` calls :func:`cmd_compile` (the CLI adds the command
with :func:`add_compile_command`). The pipeline is the same ``create_pipeline`` the local
runner uses; only paths (gs://), the Beam args (Dataflow) and the runner differ, plus an
optional :class:`VertexTraining` that runs the Trainer as a Vertex AI Training job. Every
step runs in the image built from the repository's Dockerfile. Compiling needs the
``kubeflow`` extra (kfp-pipeline-spec); TFX is imported only when compiling, so the CLI
stays quick to start.
"""

import argparse
import dataclasses
import json
import os
import sys

from components.sources import SPAN_LAYOUTS, DatasetSpec
from pipeline.config import WARM_START_SOURCES, PipelineConfig
from trainer.config import TrainerConfig

# The Dockerfile's WORKDIR, holding the package sources; ImportSchemaGen reads the schema there.
IMAGE_WORKDIR = "/movierec"
IMAGE_SCHEMA_PATH = f"{IMAGE_WORKDIR}/pipeline/schema/schema.pbtxt"
_REQUIRED = ("project", "region", "gcs_root", "image", "data_uri", "serving_uri")
_GCS_FLAGS = ("gcs_root", "data_uri", "serving_uri", "temp_location")


@dataclasses.dataclass(frozen=True)
class Dataflow:
    """Where and how the Beam-powered components run on Dataflow.

    Attributes:
      project, region: the Google Cloud project and region of the Dataflow jobs.
      temp_location: gs:// directory for Beam's temporary and staging files.
      image: the pipeline image; Dataflow workers start from it (Beam SDK and movierec in it).
      max_num_workers: upper bound of Dataflow's autoscaling, per job.
    """

    project: str
    region: str
    temp_location: str
    image: str
    max_num_workers: int = 4

    def beam_args(self) -> list[str]:
        """Beam options; workers run the pipeline image, which already holds the Beam SDK."""
        return [
            "--runner=DataflowRunner",
            f"--project={self.project}",
            f"--region={self.region}",
            f"--temp_location={self.temp_location}",
            f"--max_num_workers={self.max_num_workers}",
            f"--sdk_container_image={self.image}",
            "--sdk_location=container",
        ]


@dataclasses.dataclass(frozen=True)
class VertexTraining:
    """Runs the Trainer as a Vertex AI Training custom job instead of inside its step.

    Attributes:
      project, region: where the custom job runs.
      image: the pipeline image, which the job's single worker runs.
      machine_type: Compute Engine machine type of the worker, e.g. ``"n1-standard-4"``.
      accelerator_type: e.g. ``"NVIDIA_TESLA_T4"``; None trains on CPU.
      accelerator_count: accelerators attached when ``accelerator_type`` is set.
    """

    project: str
    region: str
    image: str
    machine_type: str = "n1-standard-4"
    accelerator_type: str | None = None
    accelerator_count: int = 0

    def custom_config(self) -> dict:
        """The ``custom_config`` keys TFX's Vertex Trainer executor reads (CustomJob spec)."""
        from tfx.v1.extensions import google_cloud_ai_platform as gcai

        machine_spec = {"machine_type": self.machine_type}
        if self.accelerator_type:
            machine_spec["accelerator_type"] = self.accelerator_type
            machine_spec["accelerator_count"] = self.accelerator_count
        job_spec = {
            "project": self.project,
            "worker_pool_specs": [
                {
                    "machine_spec": machine_spec,
                    "replica_count": 1,
                    "container_spec": {"image_uri": self.image},
                }
            ],
        }
        return {
            gcai.ENABLE_VERTEX_KEY: True,
            gcai.VERTEX_REGION_KEY: self.region,
            gcai.TRAINING_ARGS_KEY: job_spec,
        }


@dataclasses.dataclass(frozen=True)
class VertexTarget:
    """Everything ``movierec compile --target vertex`` needs, parsed from its flags.

    Attributes:
      config: the pipeline's config, every path in it a gs:// URI (schema: in the image).
      dataflow: Beam args of the Beam-powered components.
      image: the image every pipeline step runs.
      training: where the Trainer trains; None trains inside the Trainer's pipeline step.
    """

    config: PipelineConfig
    dataflow: Dataflow
    image: str
    training: VertexTraining | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "VertexTarget":
        """Raises ValueError naming the flags that are missing or not gs:// URIs."""
        missing = [f"--{name.replace('_', '-')}" for name in _REQUIRED if not getattr(args, name)]
        if missing:
            raise ValueError(f"--target vertex needs {', '.join(missing)}")
        gcs_root = args.gcs_root.rstrip("/")
        temp_location = args.temp_location or f"{gcs_root}/tmp"
        for name in _GCS_FLAGS:
            value = temp_location if name == "temp_location" else getattr(args, name)
            if not value.startswith("gs://"):
                raise ValueError(f"--{name.replace('_', '-')} must be a gs:// URI, got {value!r}")
        trainer = TrainerConfig.from_custom_config(
            json.loads(args.trainer_config) if args.trainer_config else {}
        )
        config = PipelineConfig(
            pipeline_name=args.pipeline_name,
            pipeline_root=gcs_root,
            dataset=_dataset(args),
            schema_path=args.schema_path,
            serving_dir=args.serving_uri,
            trainer=trainer,
            warm_start_from=args.warm_start,
        )
        dataflow = Dataflow(args.project, args.region, temp_location, args.image, args.max_workers)
        training = None
        if args.trainer_machine_type:
            training = VertexTraining(
                args.project,
                args.region,
                args.image,
                args.trainer_machine_type,
                args.trainer_accelerator,
                args.trainer_accelerator_count if args.trainer_accelerator else 0,
            )
        return cls(config, dataflow, args.image, training)


def _train_on_vertex(pipeline, training: VertexTraining) -> None:
    """Turns the pipeline's Trainers into TFX's Vertex AI Training Trainer.

    ``tfx.extensions.google_cloud_ai_platform.Trainer`` is ``tfx.components.Trainer`` with
    another executor and Vertex keys in ``custom_config``; this makes exactly that change on
    the freshly built pipeline until ``create_pipeline`` takes the Trainer class itself.
    """
    from tfx import v1 as tfx
    from tfx.utils import json_utils

    for node in pipeline.components:
        if isinstance(node, tfx.components.Trainer):
            node.executor_spec = (
                tfx.extensions.google_cloud_ai_platform.Trainer.EXECUTOR_SPEC.copy()
            )
            custom_config = json_utils.loads(node.exec_properties["custom_config"] or "null")
            node.exec_properties["custom_config"] = json_utils.dumps(
                {**(custom_config or {}), **training.custom_config()}
            )


def compile_pipeline(target: VertexTarget, out_path: str) -> dict:
    """Writes the Vertex AI PipelineJob spec (JSON, or YAML for *.yaml) and returns it.

    Raises:
      ImportError: when kfp-pipeline-spec (the ``kubeflow`` extra) is not installed.
    """
    try:
        import kfp.pipeline_spec  # noqa: F401
    except ImportError as e:
        raise ImportError("pip install 'movierec[kubeflow]' to compile for Vertex AI") from e
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    pipeline = create_pipeline(target.config, beam_pipeline_args=target.dataflow.beam_args())
    if target.training is not None:
        _train_on_vertex(pipeline, target.training)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=target.image),
        output_dir=os.path.dirname(os.path.abspath(out_path)),
        output_filename=os.path.basename(out_path),
    )
    return runner.run(pipeline)


def schedule_arguments(
    spec_path: str, cron: str, project: str, region: str, service_account: str | None = None
) -> tuple[dict, dict]:
    """Arguments of ``aiplatform.PipelineJob(...)`` and of its ``create_schedule(...)``.

    Caching is off: ExampleGen's cache key is its parameters (the dataset's path), not the
    files' contents, so a cached run would skip the new ratings a scheduled run is for.

    Raises:
      ValueError: on a cron that is not five fields (after an optional ``TZ=``/``CRON_TZ=``).
    """
    fields = cron.split()
    if fields and fields[0].startswith(("TZ=", "CRON_TZ=")):
        fields = fields[1:]
    if len(fields) != 5:
        raise ValueError(f"cron needs 5 fields (minute hour day month weekday), got {cron!r}")
    with open(spec_path) as f:
        spec = json.load(f)
    name = spec["displayName"]
    job = {
        "display_name": name,
        "template_path": spec_path,
        "pipeline_root": spec["runtimeConfig"]["gcsOutputDirectory"],
        "enable_caching": False,
        "project": project,
        "location": region,
    }
    schedule = {"cron": cron, "display_name": f"{name}-schedule", "max_concurrent_run_count": 1}
    if service_account:
        schedule["service_account"] = service_account
    return job, schedule


def create_schedule(
    spec_path: str, cron: str, project: str, region: str, service_account: str | None = None
):
    """Creates a Vertex AI schedule running the compiled pipeline; returns the schedule."""
    from google.cloud import aiplatform

    job, schedule = schedule_arguments(spec_path, cron, project, region, service_account)
    return aiplatform.PipelineJob(**job).create_schedule(**schedule)


def _dataset(args) -> DatasetSpec:
    """The dataset of the compiled pipeline. Spans are left unresolved, so that every
    scheduled run reads the latest ``--window`` spans present when it starts."""
    if args.dataset_kind != "spans":
        if args.span_layout or args.window:
            raise ValueError("--span-layout and --window apply to --dataset-kind spans")
        return DatasetSpec(kind=args.dataset_kind, path=args.data_uri)
    return DatasetSpec(
        kind="spans",
        path=args.data_uri,
        span_layout=args.span_layout or "movielens-latest",
        window=args.window or 1,
    )


def add_compile_command(subparsers) -> argparse.ArgumentParser:
    """Adds ``compile`` to the ``movierec`` subcommands; returns its parser."""
    p = subparsers.add_parser("compile", help="compile the pipeline for Vertex AI Pipelines")
    p.add_argument("--target", choices=("vertex",), required=True)
    p.add_argument("--out", required=True, help="spec file to write (.json, or .yaml)")
    p.add_argument("--project", help="Google Cloud project")
    p.add_argument("--region", help="e.g. europe-west4")
    p.add_argument("--gcs-root", help="pipeline root, gs://bucket/path")
    p.add_argument("--image", help="pipeline image built from the Dockerfile")
    p.add_argument("--data-uri", help="gs:// path of the dataset (directory or ratings file)")
    p.add_argument("--dataset-kind", default="ml-100k", help="DatasetSpec kind of --data-uri")
    p.add_argument(
        "--span-layout",
        choices=SPAN_LAYOUTS,
        help="--dataset-kind spans: the layout of each span-N/ under --data-uri",
    )
    p.add_argument(
        "--window", type=int, help="--dataset-kind spans: the latest spans each run reads"
    )
    p.add_argument(
        "--warm-start",
        choices=WARM_START_SOURCES,
        default="none",
        help="start the Trainer from the latest blessed model (for scheduled retraining)",
    )
    p.add_argument("--serving-uri", help="gs:// TF Serving directory the Pusher writes")
    p.add_argument("--temp-location", help="Dataflow temp dir (default: <gcs-root>/tmp)")
    p.add_argument("--max-workers", type=int, default=4, help="Dataflow max workers")
    p.add_argument("--pipeline-name", default="movierec")
    p.add_argument("--schema-path", default=IMAGE_SCHEMA_PATH, help="schema inside the image")
    p.add_argument("--trainer-config", help="JSON overrides, e.g. '{\"epochs\": 3}'")
    p.add_argument(
        "--trainer-machine-type",
        help="run the Trainer on Vertex AI Training on this machine type "
        "(default: train inside the pipeline step)",
    )
    p.add_argument("--trainer-accelerator", help="e.g. NVIDIA_TESLA_T4")
    p.add_argument("--trainer-accelerator-count", type=int, default=1)
    return p


def cmd_compile(args, env=None, out=sys.stdout) -> int:
    """``movierec compile``: 0 when the spec is written, 2 on bad flags or a missing extra."""
    try:
        target = VertexTarget.from_args(args)
    except ValueError as e:  # json.JSONDecodeError is a ValueError too
        print(f"movierec compile: {e}", file=sys.stderr)
        return 2
    try:
        spec = compile_pipeline(target, args.out)
    except ImportError as e:
        print(f"movierec compile: {e}", file=sys.stderr)
        return 2
    tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
    print(f"{args.out}: {len(tasks)} tasks, image {target.image}", file=out)
    return 0
