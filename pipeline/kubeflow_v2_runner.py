"""Compiles the pipeline for Vertex AI Pipelines: KubeflowV2DagRunner, Dataflow, gs:// paths.

A config in (:class:`VertexTarget`, built from ``movierec compile``'s flags by
``pipeline.compile_command``), a pipeline out (``create_pipeline``, the same the local runner
uses), compiled by :func:`compile_pipeline`; :func:`create_schedule` runs the compiled spec
on a cron schedule. Only paths (gs://), the Beam args (Dataflow) and the runner differ from
a local run, plus an optional :class:`VertexTraining` that runs the Trainer as a Vertex AI
Training job. Every step runs in the image built from the repository's Dockerfile.
Compiling needs the ``kubeflow`` extra (kfp-pipeline-spec); TFX is imported only when
compiling, so the CLI stays quick to start.
"""

import dataclasses
import json
import os

from pipeline.config import PipelineConfig

# The Dockerfile's WORKDIR, holding the package sources; ImportSchemaGen reads the schema there.
IMAGE_WORKDIR = "/movierec"
IMAGE_SCHEMA_PATH = f"{IMAGE_WORKDIR}/pipeline/schema/schema.pbtxt"


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
      image: the pipeline image, which every replica of the job runs.
      machine_type: Compute Engine machine type of each replica, e.g. ``"n1-standard-4"``.
      accelerator_type: e.g. ``"NVIDIA_TESLA_T4"``; None trains on CPU.
      accelerator_count: accelerators attached when ``accelerator_type`` is set.
      replicas: machines training together: worker pool 0 (Vertex's ``chief`` in
        ``TF_CONFIG``) holds one, pool 1 (``worker``) the others; the Trainer's ``auto``
        strategy is then ``MultiWorkerMirroredStrategy`` (``trainer.distribute``).
    """

    project: str
    region: str
    image: str
    machine_type: str = "n1-standard-4"
    accelerator_type: str | None = None
    accelerator_count: int = 0
    replicas: int = 1

    def custom_config(self) -> dict:
        """The ``custom_config`` keys TFX's Vertex Trainer executor reads (CustomJob spec)."""
        from tfx.v1.extensions import google_cloud_ai_platform as gcai

        machine_spec = {"machine_type": self.machine_type}
        if self.accelerator_type:
            machine_spec["accelerator_type"] = self.accelerator_type
            machine_spec["accelerator_count"] = self.accelerator_count
        pool = {"machine_spec": machine_spec, "container_spec": {"image_uri": self.image}}
        pools = [{**pool, "replica_count": 1}]
        if self.replicas > 1:
            pools.append({**pool, "replica_count": self.replicas - 1})
        job_spec = {"project": self.project, "worker_pool_specs": pools}
        return {
            gcai.ENABLE_VERTEX_KEY: True,
            gcai.VERTEX_REGION_KEY: self.region,
            gcai.TRAINING_ARGS_KEY: job_spec,
        }


@dataclasses.dataclass(frozen=True)
class VertexTarget:
    """Everything compiling for Vertex AI needs (``pipeline.compile_command`` parses it).

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
