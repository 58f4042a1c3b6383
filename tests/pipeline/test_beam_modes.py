"""The Beam stages (ExampleGen, StatisticsGen, ExampleValidator, the gate, Transform) through
LocalDagRunner on Beam's in-memory DirectRunner and on its multi-processing mode with two
workers (``movierec run --beam-workers 2``): the same examples, statistics, vocabularies and
transformed examples."""

import glob
import os

import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import statistics_pb2
from tfx import v1 as tfx

from data.sources import DatasetSpec
from pipeline import local_runner
from pipeline.config import PipelineConfig
from pipeline.pipeline import create_components

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BEAM_STAGES = (
    "MovieRecExampleGen",
    "ImportSchemaGen",
    "StatisticsGen",
    "ExampleValidator",
    "DataValidationGate",
    "Transform",
)


def _run(root: str, workers: int) -> str:
    config = PipelineConfig(
        pipeline_name="beam-modes",
        pipeline_root=root,
        dataset=DatasetSpec(kind="synthetic", num_users=200, num_movies=150, num_ratings=5000),
        schema_path=os.path.join(REPO, "pipeline", "schema", "schema.pbtxt"),
        serving_dir=os.path.join(root, "serving"),
    )
    components = [c for c in create_components(config) if c.id in BEAM_STAGES]
    assert [c.id for c in components] == list(BEAM_STAGES)
    pipeline = tfx.dsl.Pipeline(
        pipeline_name="beam-modes",
        pipeline_root=root,
        components=components,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.join(root, "metadata.sqlite")
        ),
        beam_pipeline_args=list(local_runner.beam_args(workers)),
    )
    tfx.orchestration.LocalDagRunner().run(pipeline)
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return {w: _run(str(tmp_path_factory.mktemp(f"workers{w}")), w) for w in (1, 2)}


def _one(root: str, pattern: str) -> str:
    (path,) = glob.glob(os.path.join(root, pattern))
    return path


def _records(directory: str) -> list[bytes]:
    """The split's tf.Examples, deterministically serialised, in sorted order."""
    files = sorted(glob.glob(os.path.join(directory, "*.gz")))
    assert files, directory
    return sorted(
        tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
        for r in tf.data.TFRecordDataset(files, compression_type="GZIP")
    )


def _statistics(path: str) -> dict:
    """Per feature: the counts and exact summaries (not the sketches' quantiles)."""
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with open(path, "rb") as f:
        stats.ParseFromString(f.read())
    (dataset,) = stats.datasets
    out = {"num_examples": dataset.num_examples}
    for feature in dataset.features:
        name = feature.path.step[0] if feature.path.step else feature.name
        if feature.HasField("num_stats"):
            n = feature.num_stats
            common = n.common_stats
            out[name] = (
                common.num_non_missing,
                common.num_missing,
                n.min,
                n.max,
                round(n.mean, 6),
                round(n.std_dev, 6),
                n.num_zeros,
            )
        elif feature.HasField("string_stats"):
            s = feature.string_stats
            common = s.common_stats
            out[name] = (common.num_non_missing, common.num_missing, s.unique)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("split", ["train", "eval"])
def test_multi_processing_examples_and_statistics_equal_in_memory(runs, split):
    one, two = runs[1], runs[2]
    examples = f"MovieRecExampleGen/examples/*/Split-{split}"
    assert _records(_one(one, examples)) == _records(_one(two, examples))
    assert len(_records(_one(one, examples))) > 500
    stats = f"StatisticsGen/statistics/*/Split-{split}/FeatureStats.pb"
    assert _statistics(_one(one, stats)) == _statistics(_one(two, stats))
    transformed = f"Transform/transformed_examples/*/Split-{split}"
    assert _records(_one(one, transformed)) == _records(_one(two, transformed))


@pytest.mark.slow
def test_multi_processing_vocabularies_equal_in_memory(runs):
    assets = {}
    for workers, root in runs.items():
        directory = _one(root, "Transform/transform_graph/*/transform_fn/assets")
        assets[workers] = {
            name: open(os.path.join(directory, name), "rb").read()
            for name in sorted(os.listdir(directory))
        }
    assert sorted(assets[1]) == ["genres", "movie_id", "user_id"]
    assert assets[1] == assets[2]
    assert len(assets[1]["movie_id"].splitlines()) == 150


def test_beam_args_of_each_mode():
    assert local_runner.beam_args(1) == local_runner.DEFAULT_BEAM_ARGS
    assert local_runner.beam_args(3) == (
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=3",
    )
    with pytest.raises(ValueError, match="--beam-workers must be >= 1, got 0"):
        local_runner.beam_args(0)
