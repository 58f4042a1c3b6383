"""``movierec compile --target vertex``: the compiled Vertex AI PipelineJob, read back as JSON.

The spec is compiled into a temporary directory through the command's own flags
(``pipeline.compile_command``): with the Trainer inside its pipeline step, with the Trainer
on Vertex AI Training, and with the pipeline flags it shares with ``movierec run``.
Expected values come from the flags and from ``create_components`` itself, so components
added to the pipeline are checked without editing this file.
"""

import argparse
import importlib
import inspect
import json
import os
import re
import sys
from pathlib import Path

import pytest

from data.splits import SplitConfig
from pipeline import compile_command, kubeflow_v2_runner, spec_check
from pipeline.config import PipelineConfig
from pipeline.pipeline import REFIT_TRAINER, create_components
from trainer.config import TrainerConfig

IMAGE = "europe-west4-docker.pkg.dev/movierec-test/images/movierec:abc123"
GCS_ROOT = "gs://movierec-test-bucket/pipeline-root"
FLAGS = [
    "compile",
    "--target=vertex",
    "--project=movierec-test",
    "--region=europe-west4",
    f"--gcs-root={GCS_ROOT}/",
    f"--image={IMAGE}",
    "--data-uri=gs://movierec-test-bucket/data/ml-100k",
    "--serving-uri=gs://movierec-test-bucket/serving",
    "--max-workers=7",
    '--trainer-config={"epochs": 3}',
]
VERTEX_TRAINER_FLAGS = [
    "--trainer-machine-type=n1-highmem-8",
    "--trainer-accelerator=NVIDIA_TESLA_T4",
    "--trainer-accelerator-count=2",
]
# The pipeline flags `compile` shares with `run` and `retrain` (pipeline.flags), none at
# its default.
PIPELINE_FLAGS = [
    "--split=leave_last_n",
    "--seed=7",
    "--eval-fraction=0.3",
    "--leave-last-n=2",
    "--index=brute_force",
    "--max-reject-fraction=0.2",
    "--no-refit",
]
DATAFLOW_ARGS = {
    "--runner=DataflowRunner",
    "--project=movierec-test",
    "--region=europe-west4",
    f"--temp_location={GCS_ROOT}/tmp",
    "--max_num_workers=7",
    f"--sdk_container_image={IMAGE}",
    "--sdk_location=container",
}
EXECUTOR_COMMAND = [
    "python",
    "-m",
    "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor",
]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="movierec")
    compile_command.add_compile_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """{"step": ..., "vertex": ..., "flags": ...} -> (target, spec dict, spec path)."""
    result = {}
    for name, extra in (
        ("step", []),
        ("vertex", VERTEX_TRAINER_FLAGS),
        ("flags", PIPELINE_FLAGS),
    ):
        out = tmp_path_factory.mktemp(name) / "pipeline.json"
        args = parse([*FLAGS, f"--out={out}", *extra])
        assert compile_command.cmd_compile(args, out=open(os.devnull, "w")) == 0
        target = compile_command.vertex_target(args)
        result[name] = (target, json.loads(out.read_text()), out)
    return result


def tasks(spec: dict) -> dict:
    return spec["pipelineSpec"]["root"]["dag"]["tasks"]


def container(spec: dict, task: str) -> dict | None:
    """The container of a task's executor; None for executors that are not containers."""
    ps = spec["pipelineSpec"]
    label = ps["components"][tasks(spec)[task]["componentRef"]["name"]]["executorLabel"]
    return ps["deploymentSpec"]["executors"][label].get("container")


def parameter(spec: dict, task: str, name: str):
    return tasks(spec)[task]["inputs"]["parameters"][name]["runtimeValue"]["constantValue"]


def value(spec: dict, task: str, name: str):
    """A task's constant parameter as a Python value."""
    constant = parameter(spec, task, name)
    if not isinstance(constant, dict):
        return constant
    ((kind, raw),) = constant.items()
    return int(raw) if kind == "intValue" else raw


def tasks_of(node_id: str, spec: dict) -> set[str]:
    """A node's tasks: itself, or the per-channel tasks a Resolver compiles into."""
    return {t for t in tasks(spec) if t == node_id or t.startswith(f"{node_id}-")}


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


@pytest.mark.parametrize("mode", ["step", "vertex"])
def test_every_component_is_a_task_wired_as_in_the_factory(compiled, mode):
    target, spec, _ = compiled[mode]
    components = create_components(target.config)
    assert len(components) >= 7
    covered = set()
    for component in components:
        own = tasks_of(component.id, spec)
        assert own, f"{component.id} is not in the compiled spec"
        covered |= own
        for upstream in component.upstream_nodes:
            for task in own:
                dependencies = set(tasks(spec)[task].get("dependentTasks", []))
                assert dependencies & tasks_of(upstream.id, spec), (task, upstream.id)
    assert covered == set(tasks(spec))


@pytest.mark.parametrize("mode", ["step", "vertex"])
def test_every_step_runs_the_image_with_the_dataflow_args(compiled, mode):
    _, spec, _ = compiled[mode]
    containers = {t: container(spec, t) for t in tasks(spec)}
    containers = {t: c for t, c in containers.items() if c is not None}
    assert {"Transform", "Trainer"} <= set(containers)
    for task, c in containers.items():
        assert c["image"] == IMAGE, task
        assert c["command"] == EXECUTOR_COMMAND, task
        beam_args = {a for a in c["args"] if a.startswith("--") and "=" in a}
        assert beam_args == DATAFLOW_ARGS, task


def test_paths_point_at_gcs_and_the_image(compiled):
    target, spec, _ = compiled["step"]
    assert spec["runtimeConfig"]["gcsOutputDirectory"] == GCS_ROOT
    values = set(strings(spec))
    assert kubeflow_v2_runner.IMAGE_SCHEMA_PATH in values
    assert "gs://movierec-test-bucket/serving" in values
    assert any("gs://movierec-test-bucket/data/ml-100k" in v for v in values)
    assert target.config.pipeline_root == GCS_ROOT


@pytest.mark.parametrize("mode", ["step", "vertex"])
def test_no_local_path_leaks_into_the_spec(compiled, tmp_path_factory, mode):
    _, spec, out = compiled[mode]
    paths = {"/work", "/tmp", str(out.parent), str(tmp_path_factory.getbasetemp()), os.getcwd()}
    paths |= {sys.prefix, str(Path.home()), os.environ.get("MOVIEREC_DATA_HOME", "/work")}
    paths.discard("/")
    # A local path starts a value or follows a separator ("--x=/tmp/a", '"/work/..."'); the
    # "/tmp" ending "gs://bucket/root/tmp" is not one.
    local = re.compile("|".join(rf"(?<![\w/.:-]){re.escape(p)}(?![\w.-])" for p in paths))
    words = re.compile(r"sqlite|metadata\.db|movierec_work", re.IGNORECASE)
    leaks = [s for s in strings(spec) if local.search(s) or words.search(s)]
    assert leaks == []
    # The check itself finds such paths.
    assert local.search(f'{{"dir": "{out.parent}"}}') and local.search("--temp_location=/tmp/x")


def test_the_trainer_trains_in_its_step_by_default(compiled):
    target, spec, _ = compiled["step"]
    assert target.training is None
    assert "tfx.components.trainer.executor.GenericExecutor" in container(spec, "Trainer")["args"]
    custom_config = json.loads(parameter(spec, "Trainer", "custom_config")["stringValue"])
    assert custom_config == TrainerConfig(epochs=3).to_dict()


def test_vertex_training_runs_the_trainer_as_a_custom_job(compiled):
    _, spec, _ = compiled["vertex"]
    args = container(spec, "Trainer")["args"]
    assert "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor" in args
    custom_config = json.loads(parameter(spec, "Trainer", "custom_config")["stringValue"])
    assert custom_config == {
        **TrainerConfig(epochs=3).to_dict(),
        "ai_platform_enable_vertex": True,
        "ai_platform_vertex_region": "europe-west4",
        "ai_platform_training_args": {
            "project": "movierec-test",
            "worker_pool_specs": [
                {
                    "machine_spec": {
                        "machine_type": "n1-highmem-8",
                        "accelerator_type": "NVIDIA_TESLA_T4",
                        "accelerator_count": 2,
                    },
                    "replica_count": 1,
                    "container_spec": {"image_uri": IMAGE},
                }
            ],
        },
    }
    # The refit Trainer trains on Vertex AI Training too, with the same job spec.
    refit = json.loads(parameter(spec, "RefitTrainer", "custom_config")["stringValue"])
    assert refit == {**custom_config, "refit": True}
    assert (
        "tfx.extensions.google_cloud_ai_platform.trainer.executor.GenericExecutor"
        in container(spec, "RefitTrainer")["args"]
    )
    # Only the Trainers change: the other steps are those of the default spec.
    step_spec = compiled["step"][1]
    for task in set(tasks(spec)) - {"Trainer", "RefitTrainer"}:
        assert tasks(spec)[task] == tasks(step_spec)[task]


def test_trainer_replicas_make_a_chief_and_worker_pool_vertex_and_tfx_accept(tmp_path):
    """Three replicas: pool 0 (Vertex's ``chief`` in TF_CONFIG) and pool 1 with two
    ``worker`` replicas; TFX's Vertex client turns the job args into a CustomJob that the
    aiplatform_v1 proto takes (strictly), every pool running TFX's executor command."""
    from google.cloud import aiplatform_v1
    from tfx.extensions.google_cloud_ai_platform import training_clients
    from tfx.v1.extensions import google_cloud_ai_platform as gcai

    argv = [*FLAGS, f"--out={tmp_path / 'p.json'}", *VERTEX_TRAINER_FLAGS]
    target = compile_command.vertex_target(
        parse([*argv, "--trainer-replicas=3", "--trainer-strategy=multi_worker_mirrored"])
    )
    assert target.training.replicas == 3
    assert target.config.trainer.strategy == "multi_worker_mirrored"
    job_args = dict(target.training.custom_config()[gcai.TRAINING_ARGS_KEY])
    assert job_args.pop("project") == "movierec-test"  # as TFX's runner does
    # The client as TFX's runner makes it, minus the gapic client (its credentials).
    client = training_clients.VertexJobClient.__new__(training_clients.VertexJobClient)
    client._region = "europe-west4"
    custom_job = client.create_training_job(
        {},
        {},
        {"custom_config": "{}"},
        "tfx.components.trainer.executor.GenericExecutor",
        json.loads(json.dumps(job_args)),
        "movierec-trainer",
        None,
    )
    job = aiplatform_v1.CustomJob(custom_job)
    pools = job.job_spec.worker_pool_specs
    assert [p.replica_count for p in pools] == [1, 2]
    for pool in pools:
        assert pool.machine_spec.machine_type == "n1-highmem-8"
        assert pool.machine_spec.accelerator_count == 2
        assert pool.container_spec.image_uri == IMAGE
        assert "tfx.scripts.run_executor" in " ".join(pool.container_spec.command)
    # One replica: one pool, as before; auto leaves the strategy to TF_CONFIG.
    one = compile_command.vertex_target(parse(argv))
    assert one.training.replicas == 1 and one.config.trainer.strategy == "auto"
    specs = one.training.custom_config()[gcai.TRAINING_ARGS_KEY]["worker_pool_specs"]
    assert [p["replica_count"] for p in specs] == [1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--trainer-replicas=2"], "--trainer-replicas needs --trainer-machine-type"),
        (["--trainer-replicas=0"], "--trainer-replicas must be >= 1, got 0"),
        (
            ["--trainer-strategy=multi_worker_mirrored"],
            "strategy multi_worker_mirrored needs --trainer-machine-type",
        ),
        (
            [*VERTEX_TRAINER_FLAGS, "--trainer-replicas=2", "--trainer-strategy=mirrored"],
            "--trainer-strategy mirrored with --trainer-replicas 2: each replica would train",
        ),
    ],
)
def test_trainer_replica_flags_that_cannot_train_together_are_refused(
    tmp_path, capsys, extra, message
):
    out = tmp_path / "pipeline.json"
    assert compile_command.cmd_compile(parse([*FLAGS, f"--out={out}", *extra])) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        (("--project", "--image"), ("--project", "--image")),
        (("--serving-uri",), ("--serving-uri",)),
    ],
)
def test_missing_flags_are_named(tmp_path, capsys, drop, named):
    out = tmp_path / "pipeline.json"
    argv = [f for f in FLAGS if not f.startswith(drop)] + [f"--out={out}"]
    assert compile_command.cmd_compile(parse(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("movierec compile: --target vertex needs ")
    needed = err.strip().split(" needs ")[1].split(", ")
    assert needed == list(named)
    assert not out.exists()


@pytest.mark.parametrize(
    "flag", ["--data-uri=/work/shared/data/ml-100k", "--gcs-root=/tmp/root", "--temp-location=tmp"]
)
def test_local_paths_are_refused(tmp_path, capsys, flag):
    out = tmp_path / "pipeline.json"
    argv = [*FLAGS, flag, f"--out={out}"]
    assert compile_command.cmd_compile(parse(argv)) == 2
    name = flag.split("=")[0]
    assert f"{name} must be a gs:// URI" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--serving-uri=s3://bucket/serving", "--serving-uri must be a gs:// URI, got 's3://"),
        ("--serving-uri=/mnt/serving", "--serving-uri must be a gs:// URI, got '/mnt/serving'"),
        (
            "--serving-uri=gs://Bad_Bucket/serving",
            "--serving-uri: 'gs://Bad_Bucket/serving': 'Bad_Bucket' is not a Cloud Storage "
            "bucket name",
        ),
        ("--serving-uri=gs://bucket/a/../b", "--serving-uri: 'gs://bucket/a/../b': empty, '.'"),
        ("--data-uri=gs://x/data", "--data-uri: 'gs://x/data': 'x' is not a Cloud Storage"),
    ],
)
def test_a_uri_the_pipeline_cannot_use_is_refused_naming_it(tmp_path, capsys, flag, message):
    out = tmp_path / "pipeline.json"
    assert compile_command.cmd_compile(parse([*FLAGS, flag, f"--out={out}"])) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_schedule_arguments_fit_aiplatform(compiled):
    from google.cloud import aiplatform

    _, _, path = compiled["step"]
    job, schedule = kubeflow_v2_runner.schedule_arguments(
        str(path), "TZ=Europe/Amsterdam 0 3 * * 1", "movierec-test", "europe-west4", "sa@x.iam"
    )
    assert job == {
        "display_name": "movierec",
        "template_path": str(path),
        "pipeline_root": GCS_ROOT,
        "enable_caching": False,
        "project": "movierec-test",
        "location": "europe-west4",
    }
    assert schedule == {
        "cron": "TZ=Europe/Amsterdam 0 3 * * 1",
        "display_name": "movierec-schedule",
        "max_concurrent_run_count": 1,
        "service_account": "sa@x.iam",
    }
    # The names are those of the installed SDK (no call: that needs Google Cloud).
    inspect.signature(aiplatform.PipelineJob.__init__).bind(None, **job)
    inspect.signature(aiplatform.PipelineJob.create_schedule).bind(None, **schedule)


@pytest.mark.parametrize("cron", ["0 3 * *", "0 3 * * 1 2019", "TZ=UTC", ""])
def test_schedule_refuses_a_cron_without_five_fields(compiled, cron):
    _, _, path = compiled["step"]
    with pytest.raises(ValueError, match="5 fields"):
        kubeflow_v2_runner.schedule_arguments(str(path), cron, "p", "europe-west4")


def test_scheduled_retraining_compiles_unresolved_spans_and_warm_start(tmp_path):
    """For a schedule the spec must not name spans: each run reads the latest ones. The
    Trainer then gets the latest blessed model as its base model."""
    drops = "--data-uri=gs://drops-bucket/drops"
    flags = [f if not f.startswith("--data-uri") else drops for f in FLAGS]
    out = tmp_path / "pipeline.json"
    args = parse(
        [
            *flags,
            f"--out={out}",
            "--dataset-kind=spans",
            "--span-layout=movielens-latest",
            "--window=3",
            "--warm-start=latest_blessed",
        ]
    )
    assert compile_command.cmd_compile(args, out=open(os.devnull, "w")) == 0
    spec = json.loads(out.read_text())
    raw = parameter(spec, "MovieRecExampleGen", "dataset")
    dataset = json.loads(raw["stringValue"] if isinstance(raw, dict) else raw)
    assert dataset == {
        "kind": "spans",
        "path": "gs://drops-bucket/drops",
        "span_layout": "movielens-latest",
        "window": 3,
    }
    trainer_inputs = tasks(spec)["Trainer"]["inputs"]["artifacts"]
    assert "base_model" in trainer_inputs
    bad = parse([*FLAGS, f"--out={out}", "--window=3"])
    assert compile_command.cmd_compile(bad, out=open(os.devnull, "w")) == 2


def test_compile_takes_the_pipeline_flags_of_run(compiled):
    """--split, --seed, --eval-fraction, --leave-last-n, --index, --max-reject-fraction and
    --refit land in the config and in the compiled spec's component parameters."""
    target, spec, _ = compiled["flags"]
    config = target.config
    assert config.split == SplitConfig("leave_last_n", 7, 0.3, 2)
    assert (config.index_kind, config.max_reject_fraction, config.refit) == (
        "brute_force",
        0.2,
        False,
    )
    assert value(spec, "MovieRecExampleGen", "split_kind") == "leave_last_n"
    assert value(spec, "MovieRecExampleGen", "seed") == 7
    assert value(spec, "MovieRecExampleGen", "eval_fraction") == 0.3
    assert value(spec, "MovieRecExampleGen", "leave_last_n") == 2
    assert value(spec, "DataValidationGate", "max_reject_fraction") == 0.2
    for task in ("MovieRecServables", "MovieRecEvaluator"):
        assert value(spec, task, "index_kind") == "brute_force"
    assert REFIT_TRAINER not in tasks(spec)


def test_without_pipeline_flags_compile_takes_the_config_defaults(compiled):
    target, spec, _ = compiled["step"]
    defaults = PipelineConfig(
        pipeline_name="movierec",
        pipeline_root=GCS_ROOT,
        dataset=target.config.dataset,
        schema_path=kubeflow_v2_runner.IMAGE_SCHEMA_PATH,
        serving_dir="gs://movierec-test-bucket/serving",
        trainer=TrainerConfig(epochs=3),
    )
    assert target.config == defaults
    assert value(spec, "MovieRecExampleGen", "split_kind") == SplitConfig().kind
    assert value(spec, "MovieRecExampleGen", "seed") == SplitConfig().seed
    assert value(spec, "DataValidationGate", "max_reject_fraction") == (
        defaults.max_reject_fraction
    )
    assert value(spec, "MovieRecServables", "index_kind") == defaults.index_kind
    assert REFIT_TRAINER in tasks(spec)


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--eval-fraction=1.5", "eval_fraction"),
        ("--leave-last-n=0", "leave_last_n"),
        ('--trainer-config={"epoch": 3}', "unknown keys ['epoch']"),
    ],
)
def test_bad_pipeline_flags_fail_compile_naming_the_field(tmp_path, capsys, flag, message):
    out = tmp_path / "pipeline.json"
    assert compile_command.cmd_compile(parse([*FLAGS, flag, f"--out={out}"])) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# --- The spec read the way Vertex AI reads it (pipeline.spec_check) ---


@pytest.mark.parametrize("mode", ["step", "vertex", "flags"])
def test_the_spec_parses_strictly_and_builds_an_aiplatform_pipeline_job(compiled, mode):
    _, spec, out = compiled[mode]
    checked = spec_check.check_pipeline_job(out, "movierec-test", "europe-west4")
    job = checked["aiplatform_job"]._gca_resource  # built, never submitted
    assert job.display_name == spec["displayName"]
    assert job.runtime_config.gcs_output_directory == GCS_ROOT
    assert set(job.pipeline_spec["root"]["dag"]["tasks"]) == set(tasks(spec))
    assert set(checked["spec"].root.dag.tasks) == set(tasks(spec))
    assert checked["job"].runtime_config.gcs_output_directory == GCS_ROOT


@pytest.mark.parametrize("mode", ["step", "vertex"])
def test_every_container_runs_the_image_an_importable_executor_and_the_dataflow_args(
    compiled, mode
):
    _, _, out = compiled[mode]
    checked = spec_check.check_pipeline_job(out, "movierec-test", "europe-west4")
    containers = [e for e in checked["executors"].values() if e.image is not None]
    assert len(containers) >= 10
    for executor in containers:
        assert executor.image == IMAGE, executor.label
        assert list(executor.command) == EXECUTOR_COMMAND, executor.label
        args = list(executor.args)
        class_path = args[args.index("--executor_class_path") + 1]
        module, _, name = class_path.rpartition(".")
        assert inspect.isclass(getattr(importlib.import_module(module), name)), class_path
        assert args[args.index("--json_serialized_invocation_args") + 1] == "{{$}}"
        assert DATAFLOW_ARGS <= set(args), executor.label


def _broken(spec: dict, how: str) -> dict:
    spec = json.loads(json.dumps(spec))
    executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
    label = next(k for k, v in executors.items() if "container" in v)
    if how == "unknown container field":
        executors[label]["container"]["imagee"] = IMAGE
    elif how == "args not a list":
        executors[label]["container"]["args"] = "--executor_class_path x"
    elif how == "unknown pipelineSpec field":
        spec["pipelineSpec"]["deploymentSpecs"] = {}
    elif how == "unknown job field":
        spec["runtimeConfigs"] = {}
    elif how == "task of a missing component":
        task = next(iter(tasks(spec)))
        tasks(spec)[task]["componentRef"]["name"] = "comp-nowhere"
    elif how == "component of a missing executor":
        component = next(iter(spec["pipelineSpec"]["components"].values()))
        component["executorLabel"] = "nowhere_executor"
    elif how == "container without an image":
        del executors[label]["container"]["image"]
    return spec


@pytest.mark.parametrize(
    "how, message",
    [
        ("unknown container field", "imagee"),
        ("args not a list", "args"),
        ("unknown pipelineSpec field", "deploymentSpecs"),
        ("unknown job field", "runtimeConfigs"),
        ("task of a missing component", "comp-nowhere"),
        ("component of a missing executor", "nowhere_executor"),
        ("container without an image", "no container image"),
    ],
)
def test_a_broken_spec_fails_naming_what_is_wrong(compiled, tmp_path, how, message):
    _, spec, _ = compiled["step"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(_broken(spec, how)))
    with pytest.raises(spec_check.SpecError, match=re.escape(message)):
        spec_check.check_pipeline_job(path, "movierec-test", "europe-west4")
