"""The compiled Vertex AI PipelineJob read the way Vertex reads it: strict protos, the SDK object.

``tests/pipeline/test_kubeflow_v2_runner.py`` calls :func:`check_pipeline_job` on every spec
``movierec compile`` writes. Walking the JSON proves little (a misspelt field is just another
key), so the file is parsed with ``google.protobuf.json_format`` into the protos of the
installed ``kfp-pipeline-spec``, with unknown fields refused:

- the whole file into ``PipelineJob`` (display name, labels, runtime config);
- ``pipelineSpec`` into ``PipelineSpec`` (components, DAG, schema and SDK versions);
- ``pipelineSpec.deploymentSpec`` into ``PipelineDeploymentConfig`` (each executor: a
  container with image, command and args, or a resolver).

Then ``google.cloud.aiplatform.PipelineJob`` is built from the file, offline (anonymous
credentials; building it reads the template and sends nothing), which is what
``aiplatform.PipelineJob(...).submit()`` and a Vertex schedule start from.
"""

import dataclasses
import json
import os

from google.protobuf import json_format


class SpecError(ValueError):
    """The compiled spec does not parse the way Vertex AI reads it; the message says where."""


@dataclasses.dataclass(frozen=True)
class Executor:
    """One executor of the deployment config: its container (None for a resolver)."""

    label: str
    image: str | None
    command: tuple[str, ...]
    args: tuple[str, ...]


def _parse(value: dict, message, where: str):
    try:
        return json_format.ParseDict(value, message, ignore_unknown_fields=False)
    except json_format.ParseError as err:
        raise SpecError(f"{where}: {err}") from err


def parse_pipeline_job(job: dict) -> tuple:
    """``(PipelineJob, PipelineSpec, PipelineDeploymentConfig)`` protos of a compiled spec.

    Raises:
      SpecError: naming the part of the spec (and the field) that does not parse strictly.
    """
    from kfp.pipeline_spec import pipeline_spec_pb2

    if not isinstance(job, dict) or not isinstance(job.get("pipelineSpec"), dict):
        raise SpecError("the spec is not a PipelineJob: no pipelineSpec object")
    job_proto = _parse(job, pipeline_spec_pb2.PipelineJob(), "PipelineJob")
    spec = dict(job["pipelineSpec"])
    deployment = spec.pop("deploymentSpec", None)
    if not isinstance(deployment, dict):
        raise SpecError("pipelineSpec has no deploymentSpec object")
    spec_proto = _parse(
        {**spec, "deploymentSpec": {}}, pipeline_spec_pb2.PipelineSpec(), "pipelineSpec"
    )
    deployment_proto = _parse(
        deployment, pipeline_spec_pb2.PipelineDeploymentConfig(), "pipelineSpec.deploymentSpec"
    )
    return job_proto, spec_proto, deployment_proto


def executors(deployment) -> dict[str, Executor]:
    """Each executor label of a ``PipelineDeploymentConfig`` -> its :class:`Executor`."""
    result = {}
    for label, spec in deployment.executors.items():
        kind = spec.WhichOneof("spec")
        if kind == "container":
            c = spec.container
            result[label] = Executor(label, c.image, tuple(c.command), tuple(c.args))
        else:
            result[label] = Executor(label, None, (), ())
    return result


def check_pipeline_job(path: str | os.PathLike, project: str, location: str) -> dict:
    """Parses a compiled spec strictly and builds ``aiplatform.PipelineJob`` from it offline.

    Checks beyond the protos: every task names a component that exists, every component's
    executor exists, and every container executor has an image and a command.

    Returns:
      ``{"job": PipelineJob proto, "spec": PipelineSpec proto, "executors": {label:
      Executor}, "aiplatform_job": aiplatform.PipelineJob}``.

    Raises:
      SpecError: naming what does not parse or does not resolve.
    """
    with open(path) as f:
        try:
            job = json.load(f)
        except json.JSONDecodeError as err:
            raise SpecError(f"{os.fspath(path)} is not JSON: {err}") from err
    job_proto, spec_proto, deployment = parse_pipeline_job(job)
    found = executors(deployment)
    for task_name, task in spec_proto.root.dag.tasks.items():
        ref = task.component_ref.name
        if ref not in spec_proto.components:
            raise SpecError(f"task {task_name} names component {ref!r}, which is not defined")
    for name, component in spec_proto.components.items():
        label = component.executor_label
        if label and label not in found:
            raise SpecError(f"component {name} names executor {label!r}, which is not defined")
    for label, executor in found.items():
        kind = deployment.executors[label].WhichOneof("spec")
        if kind == "container" and not (executor.image and executor.command):
            raise SpecError(f"executor {label} has no container image or command")
    return {
        "job": job_proto,
        "spec": spec_proto,
        "executors": found,
        "aiplatform_job": _aiplatform_job(path, project, location, job),
    }


def _aiplatform_job(path, project: str, location: str, job: dict):
    """``aiplatform.PipelineJob`` of the spec file, with anonymous credentials."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    try:
        return aiplatform.PipelineJob(
            display_name=job.get("displayName") or "movierec",
            template_path=os.fspath(path),
            pipeline_root=job.get("runtimeConfig", {}).get("gcsOutputDirectory"),
            project=project,
            location=location,
            credentials=AnonymousCredentials(),
            enable_caching=False,
        )
    except (ValueError, KeyError, TypeError) as err:
        raise SpecError(f"aiplatform.PipelineJob refuses {os.fspath(path)}: {err}") from err
