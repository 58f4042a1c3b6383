"""``movierec compile --target vertex``: its flags, the VertexTarget they build, the command.

``pipeline.cli`` adds the subcommand with :func:`add_compile_command` and runs
:func:`cmd_compile`. The pipeline flags (split, index, reject fraction, warm start, refit,
Trainer) are those of ``run`` and ``retrain`` (``pipeline.flags``), and so is the config
they build; this module adds where the compiled pipeline runs (project, region, gs://
paths, image, Dataflow, Vertex AI Training) and hands the result to
``pipeline.kubeflow_v2_runner``. Light on purpose (no TFX import until compiling).
"""

import argparse
import dataclasses
import sys

from data.sources import SPAN_LAYOUTS, DatasetSpec
from pipeline import flags
from pipeline.config import PIPELINE_NAME, default
from pipeline.kubeflow_v2_runner import (
    IMAGE_SCHEMA_PATH,
    Dataflow,
    VertexTarget,
    VertexTraining,
    compile_pipeline,
)
from serving import gcs
from trainer.config import STRATEGIES

_REQUIRED = ("project", "region", "gcs_root", "image", "data_uri", "serving_uri")
_GCS_FLAGS = ("gcs_root", "data_uri", "serving_uri", "temp_location")


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
        span_layout=args.span_layout or flags.DEFAULT_SPAN_LAYOUT,
        window=args.window or 1,
    )


def vertex_target(args: argparse.Namespace) -> VertexTarget:
    """The VertexTarget of ``compile``'s flags.

    Raises:
      ValueError: naming the flags that are missing or not gs:// URIs, or a bad pipeline
        flag's field.
    """
    missing = [f"--{name.replace('_', '-')}" for name in _REQUIRED if not getattr(args, name)]
    if missing:
        raise ValueError(f"--target vertex needs {', '.join(missing)}")
    gcs_root = args.gcs_root.rstrip("/")
    temp_location = args.temp_location or f"{gcs_root}/tmp"
    for name in _GCS_FLAGS:
        value = temp_location if name == "temp_location" else getattr(args, name)
        flag = f"--{name.replace('_', '-')}"
        if not value.startswith("gs://"):
            raise ValueError(f"{flag} must be a gs:// URI, got {value!r}")
        try:  # the Pusher's check too (publish.serving_dir): what it could not push fails here
            gcs.split_uri(value)  # a bucket name Cloud Storage accepts, no '..' segments
        except ValueError as err:
            raise ValueError(f"{flag}: {err}") from None
    config = flags.config_from_flags(
        args,
        pipeline_name=args.pipeline_name,
        pipeline_root=gcs_root,
        dataset=_dataset(args),
        schema_path=args.schema_path,
        serving_dir=args.serving_uri,
    )
    dataflow = Dataflow(args.project, args.region, temp_location, args.image, args.max_workers)
    replicas = getattr(args, "trainer_replicas", 1)
    strategy = getattr(args, "trainer_strategy", None)
    if replicas < 1:
        raise ValueError(f"--trainer-replicas must be >= 1, got {replicas}")
    if replicas > 1 and not args.trainer_machine_type:
        raise ValueError("--trainer-replicas needs --trainer-machine-type (Vertex AI Training)")
    if replicas > 1 and strategy in ("default", "mirrored"):
        raise ValueError(
            f"--trainer-strategy {strategy} with --trainer-replicas {replicas}: each replica "
            "would train a model of its own; use multi_worker_mirrored (or auto)"
        )
    if strategy:
        config = dataclasses.replace(
            config, trainer=dataclasses.replace(config.trainer, strategy=strategy)
        )
    if config.trainer.strategy == "multi_worker_mirrored" and not args.trainer_machine_type:
        raise ValueError(
            "strategy multi_worker_mirrored needs --trainer-machine-type: only a Vertex AI "
            "Training job gives the Trainer a cluster (TF_CONFIG)"
        )
    training = None
    if args.trainer_machine_type:
        training = VertexTraining(
            args.project,
            args.region,
            args.image,
            args.trainer_machine_type,
            args.trainer_accelerator,
            args.trainer_accelerator_count if args.trainer_accelerator else 0,
            replicas,
        )
    return VertexTarget(config, dataflow, args.image, training)


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
        help=f"--dataset-kind spans: the layout of each span-N/ under --data-uri "
        f"(default {flags.DEFAULT_SPAN_LAYOUT})",
    )
    p.add_argument(
        "--window", type=int, help="--dataset-kind spans: the latest spans each run reads"
    )
    p.add_argument("--serving-uri", help="gs:// TF Serving directory the Pusher writes")
    p.add_argument("--temp-location", help="Dataflow temp dir (default: <gcs-root>/tmp)")
    p.add_argument(
        "--max-workers",
        type=int,
        default=default("max_num_workers", Dataflow),
        help="Dataflow max workers",
    )
    p.add_argument("--pipeline-name", default=PIPELINE_NAME)
    p.add_argument("--schema-path", default=IMAGE_SCHEMA_PATH, help="schema inside the image")
    p.add_argument(
        "--trainer-machine-type",
        help="run the Trainer on Vertex AI Training on this machine type "
        "(default: train inside the pipeline step)",
    )
    p.add_argument("--trainer-accelerator", help="e.g. NVIDIA_TESLA_T4")
    p.add_argument("--trainer-accelerator-count", type=int, default=1)
    p.add_argument(
        "--trainer-replicas",
        type=int,
        default=1,
        help="machines of --trainer-machine-type training together (a chief and N-1 "
        "workers; the Trainer then trains under MultiWorkerMirroredStrategy) (default: 1)",
    )
    p.add_argument(
        "--trainer-strategy",
        choices=STRATEGIES,
        help="the Trainer's tf.distribute strategy (default: the trainer config's, auto: "
        "multi-worker across replicas, mirrored over a machine's GPUs)",
    )
    # The split, Trainer, index, reject, warm start (for scheduled retraining) and refit
    # flags of `run` and `retrain`.
    flags.add_config_flags(p)
    return p


def cmd_compile(args, env=None, out=sys.stdout) -> int:
    """``movierec compile``: 0 when the spec is written, 2 on bad flags or a missing extra."""
    try:
        target = vertex_target(args)
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
