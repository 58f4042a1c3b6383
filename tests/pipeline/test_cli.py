"""`movierec` flags: bad values fail at once with the offending field named."""

import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}


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
