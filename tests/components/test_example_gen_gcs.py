"""ExampleGen reading its dataset from ``gs://`` (a Cloud Storage emulator, through
google-cloud-storage as on Vertex), inside a real TFX pipeline: the same examples, counts and
rejects as from local disk."""

from pathlib import Path

from test_example_gen import (
    DATA_LINES,
    EXPECTED_REJECTS,
    ITEM_LINES,
    KEPT_PAIRS,
    SEED,
    USER_LINES,
    _by_pair,
)
from tfx import v1 as tfx
from tfx.orchestration import metadata

from components import example_gen
from data import fileio
from data.sources import DatasetSpec
from serving import gcs


def _upload_dataset(bucket: str, prefix: str) -> str:
    for name, lines in (("u.item", ITEM_LINES), ("u.user", USER_LINES), ("u.data", DATA_LINES)):
        data = "".join(f"{line}\n" for line in lines).encode("latin-1")
        gcs.bucket(bucket).blob(f"{prefix}/{name}").upload_from_string(data)
    return f"gs://{bucket}/{prefix}"


def _run_example_gen(tmp_path: Path, data_uri: str) -> dict:
    gen = example_gen.MovieRecExampleGen(
        dataset=DatasetSpec(kind="ml-100k", path=data_uri).to_json(),
        seed=SEED,
        eval_fraction=0.5,
    )
    config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(tmp_path / "metadata.sqlite")
    )
    tfx.orchestration.LocalDagRunner().run(
        tfx.dsl.Pipeline(
            pipeline_name="example_gen_gcs_test",
            pipeline_root=str(tmp_path / "root"),
            components=[gen],
            metadata_connection_config=config,
        )
    )
    with metadata.Metadata(config) as m:
        return {Path(a.uri).parent.name: a for a in m.store.get_artifacts()}


def test_the_gs_file_helpers_see_the_bucket_as_a_directory(gcs_bucket):
    uri = _upload_dataset(gcs_bucket, "data/ml-100k")
    assert fileio.is_dir(f"gs://{gcs_bucket}") and fileio.is_dir(uri)
    assert fileio.list_dir(f"gs://{gcs_bucket}/data") == ["ml-100k"]
    assert fileio.list_dir(uri) == ["u.data", "u.item", "u.user"]
    assert fileio.is_file(f"{uri}/u.data") and not fileio.is_file(f"{uri}/u.genre")
    assert not fileio.is_dir(f"{uri}/u.data")
    with fileio.open_text(f"{uri}/u.item", "latin-1") as f:
        assert f.readline() == f"{ITEM_LINES[0]}\n"


def test_example_gen_reads_a_gs_dataset_as_it_reads_a_local_one(gcs_bucket, tmp_path):
    local = tmp_path / "local-data"
    local.mkdir()
    for name, lines in (("u.item", ITEM_LINES), ("u.user", USER_LINES), ("u.data", DATA_LINES)):
        (local / name).write_bytes("".join(f"{line}\n" for line in lines).encode("latin-1"))
    from_gs = _run_example_gen(tmp_path / "gs", _upload_dataset(gcs_bucket, "ml-100k"))
    from_disk = _run_example_gen(tmp_path / "disk", str(local))

    props = from_gs["examples"].custom_properties
    assert props["num_rejects"].int_value == sum(EXPECTED_REJECTS.values())
    assert props["num_train"].int_value + props["num_eval"].int_value == len(KEPT_PAIRS)
    assert set(_by_pair(from_gs["examples"].uri)) == KEPT_PAIRS
    assert _by_pair(from_gs["examples"].uri) == _by_pair(from_disk["examples"].uri)
    for key in ("num_train", "num_eval", "num_rejects", "num_rows"):
        assert props[key].int_value == from_disk["examples"].custom_properties[key].int_value
