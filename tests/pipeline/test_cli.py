"""`movierec` flags: bad values fail at once with the offending field named; ``run``,
``retrain`` and ``compile`` take the same pipeline flags and build one config from them."""

import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # pipeline.cli imports the trainer side

from data.sources import DatasetSpec  # noqa: E402
from data.splits import SplitConfig  # noqa: E402
from pipeline import cli, compile_command, flags, launch, metadata  # noqa: E402
from pipeline.config import PipelineConfig, config_from_dict  # noqa: E402

COMPILE = [
    "compile",
    "--target=vertex",
    "--out=pipeline.json",
    "--project=p",
    "--region=europe-west4",
    "--gcs-root=gs://bkt/root",
    "--image=img",
    "--data-uri=gs://bkt/data",
    "--serving-uri=gs://bkt/serving",
]
COMMANDS = {"run": ["run"], "retrain": ["retrain", "--spans", "spans"], "compile": COMPILE}


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--trainer-config", '{"epoch": 3}'], "unknown keys ['epoch']"),
        (["--trainer-config", '{"epochs": 0}'], "epochs must be > 0"),
        (["--trainer-config", "{epochs: 3"], "invalid option: Expecting property name"),
        (["--eval-fraction", "1.5"], "eval_fraction"),
        (["--split", "leave_last_n", "--leave-last-n", "0"], "leave_last_n"),
        (
            ["--dataset", "table", "--path", "r.csv"],
            "needs --path (the ratings file) and --columns",
        ),
        (["--dataset", "table", "--path", "r.csv", "--columns", "user=u,item=i"], "rating"),
        (
            ["--dataset", "table", "--path", "r.xls", "--columns", "user=u,item=i,rating=r"],
            "format",
        ),
        (["--dataset", "ml-100k", "--columns", "user=u"], "apply to --dataset table"),
        (["--dataset", "synthetic", "--synthetic-users", "0"], "num_users"),
        (["--dataset", "ml-100k", "--implicit-threshold", "nan"], "implicit_threshold"),
        (["--dataset", "synthetic", "--beam-workers", "0"], "--beam-workers must be >= 1, got 0"),
        # Not downloadable: the message says where the two files go.
        (["--dataset", "netflix"], "/netflix/Netflix_Dataset_Rating.csv"),
    ],
)
def test_bad_run_flags_fail_before_any_work(tmp_path, flags, message):
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", *flags],
        env={
            **ENV,
            "MOVIEREC_WORKDIR": str(tmp_path / "work"),
            "MOVIEREC_DATA_HOME": str(tmp_path / "data"),  # empty: nothing may be fetched
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert message in proc.stderr, proc.stderr
    assert not (tmp_path / "work").exists()  # nothing was started


def test_recommend_without_a_push_names_the_directory(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "recommend",
            "--user",
            "1",
            "--serving-dir",
            str(tmp_path / "empty"),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert f"no pushed retrieval model under {tmp_path / 'empty' / 'retrieval'}" in proc.stderr


def _options(command: str) -> dict[str, object]:
    """Option string -> default of one command's parser."""
    sub = cli.build_parser()._subparsers._group_actions[0].choices[command]
    return {o: a.default for a in sub._actions for o in a.option_strings}


def test_run_retrain_and_compile_share_the_pipeline_flags():
    import argparse

    shared = argparse.ArgumentParser()
    flags.add_config_flags(shared)
    expected = {o: a.default for a in shared._actions for o in a.option_strings}
    del expected["-h"], expected["--help"]
    assert {"--split", "--index", "--max-reject-fraction", "--refit"} <= set(expected)
    for command in COMMANDS:
        options = _options(command)
        for option, default in expected.items():
            assert option in options, (command, option)
            if option != "--warm-start":  # retrain starts from the latest blessed model
                assert options[option] == default, (command, option)
    assert _options("retrain")["--warm-start"] == "latest_blessed"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_flag_defaults_are_the_config_defaults(command):
    """No flag writes a default of its own: without flags, the config is the dataclasses'."""
    args = cli.build_parser().parse_args(COMMANDS[command])
    config = flags.config_from_flags(
        args,
        pipeline_name="movierec",
        pipeline_root="root",
        dataset=DatasetSpec(kind="ml-100k", path="data"),
        schema_path="schema.pbtxt",
        serving_dir="serving",
    )
    defaults = PipelineConfig(
        pipeline_name="movierec",
        pipeline_root="root",
        dataset=DatasetSpec(kind="ml-100k", path="data"),
        schema_path="schema.pbtxt",
        serving_dir="serving",
        warm_start_from=config.warm_start_from,
    )
    assert config == defaults
    assert config.split == SplitConfig()


def test_compile_takes_split_index_and_reject_flags():
    args = cli.build_parser().parse_args(
        [
            *COMPILE,
            "--split",
            "time",
            "--eval-fraction",
            "0.25",
            "--index",
            "brute_force",
            "--max-reject-fraction",
            "0.1",
            "--no-refit",
            "--trainer-config",
            '{"epochs": 2}',
        ]
    )
    config = compile_command.vertex_target(args).config
    assert config.split == SplitConfig(kind="time", eval_fraction=0.25)
    assert config.index_kind == "brute_force"
    assert config.max_reject_fraction == 0.1
    assert config.refit is False
    assert config.trainer.epochs == 2
    assert (config.pipeline_root, config.serving_dir) == ("gs://bkt/root", "gs://bkt/serving")


@pytest.mark.parametrize(
    "flags_, message",
    [
        (["--eval-fraction", "1.5"], "eval_fraction"),
        (["--split", "leave_last_n", "--leave-last-n", "0"], "leave_last_n"),
        (["--trainer-config", '{"epochs": 0}'], "epochs must be > 0"),
    ],
)
def test_bad_pipeline_flags_fail_compile_like_run(tmp_path, capsys, flags_, message):
    out = tmp_path / "pipeline.json"
    argv = [f if not f.startswith("--out=") else f"--out={out}" for f in COMPILE]
    assert cli.main([*argv, *flags_]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_run_and_retrain_write_one_summary(tmp_path, capsys):
    """Both commands write summary.json through launch.write_summary."""
    run_dir = launch.new_run_dir(tmp_path)
    config = PipelineConfig(
        pipeline_name="movierec",
        dataset=DatasetSpec(kind="ml-100k", path="data"),
        split=SplitConfig(kind="leave_last_n", leave_last_n=2),
        **{k: v for k, v in launch.local_locations(tmp_path).items() if k != "pipeline_name"},
    )
    results = {"evaluation": {"blessed": True}, "push": {"pushed": False}, "report": "r.html"}
    path = launch.write_summary(run_dir, config, (results, {"Trainer": 1.5}, 2.0), sys.stdout, x=1)
    summary = json.loads(path.read_text())
    assert path == run_dir / "summary.json" and summary["run_id"] == run_dir.name
    assert config_from_dict(summary["config"]) == config
    assert summary["blessed"] is True and summary["x"] == 1
    assert summary["seconds_per_component"] == {"Trainer": 1.5}
    assert summary["log"] == str(run_dir / "pipeline.log")
    assert f"Run summary: {path}" in capsys.readouterr().out


def test_metadata_reads_of_a_missing_store_are_empty(tmp_path):
    missing = tmp_path / "metadata.sqlite"
    assert metadata.finished_datasets(missing, "movierec") == set()
    assert metadata.last_run_states(missing, "movierec") == {}
    assert metadata.collect_results(missing) == {}
    assert not missing.exists()
