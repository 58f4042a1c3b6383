"""publish.tf_serving_config: the Pusher's models.config rewritten for a TF Serving container."""

import shutil
from pathlib import Path

import pytest

from publish import push, tf_serving_config
from serving import names


def _serving_dir(root: Path, names=names.MODEL_NAMES) -> Path:
    """A serving directory as the Pusher leaves it (the SavedModels are stand-in files)."""
    staged = root / "staged"
    staged.mkdir(parents=True)
    (staged / "saved_model.pb").write_bytes(b"not parsed here")
    serving = root / "serving"
    for name in names:
        push.push_atomically(staged, serving / name)
    push.write_models_config(serving, {name: serving / name for name in names})
    return serving


def test_stock_config_lists_the_stock_ops_models_at_the_mount(tmp_path):
    serving = _serving_dir(tmp_path)
    pushers_config = (serving / "models.config").read_text()

    path = tf_serving_config.write_container_config(serving)

    assert path == serving / "tf-serving" / "models.config"
    assert push.read_models_config(path) == {
        "ranking": "/models/serving/ranking",
        "retrieval_brute_force": "/models/serving/retrieval_brute_force",
    }
    assert path.read_text().count('model_platform: "tensorflow"') == 2
    assert (serving / "models.config").read_text() == pushers_config


def test_scann_config_lists_every_model(tmp_path):
    serving = _serving_dir(tmp_path)

    path = tf_serving_config.write_container_config(serving, scann=True)

    assert path == serving / "tf-serving-scann" / "models.config"
    assert list(push.read_models_config(path).items()) == [
        ("retrieval", "/models/serving/retrieval"),
        ("retrieval_brute_force", "/models/serving/retrieval_brute_force"),
        ("ranking", "/models/serving/ranking"),
    ]


def test_a_moved_serving_dir_maps_models_by_name(tmp_path):
    # Copied to another host path after the push: models.config still names the old paths.
    moved = tmp_path / "elsewhere" / "serving"
    shutil.copytree(_serving_dir(tmp_path / "train-host"), moved)
    shutil.rmtree(tmp_path / "train-host")

    paths = tf_serving_config.container_base_paths(moved, container_dir="/srv/m")

    assert paths == {
        "ranking": "/srv/m/ranking",
        "retrieval_brute_force": "/srv/m/retrieval_brute_force",
    }


def test_models_that_cannot_be_served_are_reported(tmp_path):
    serving = _serving_dir(tmp_path / "a", names=(names.RANKING,))
    with pytest.raises(ValueError, match="lists no model 'retrieval_brute_force'"):
        tf_serving_config.container_base_paths(serving)

    serving = _serving_dir(tmp_path / "b", names=(names.RANKING,))
    push.write_models_config(serving, {"ranking": tmp_path / "nowhere" / "ranking"})
    shutil.rmtree(serving / "ranking")
    with pytest.raises(ValueError, match="outside .* which holds no ranking/"):
        tf_serving_config.container_base_paths(serving, names=("ranking",))

    serving = _serving_dir(tmp_path / "c", names=(names.RANKING,))
    shutil.rmtree(serving / "ranking" / "1")
    with pytest.raises(ValueError, match="no pushed version of 'ranking'"):
        tf_serving_config.container_base_paths(serving, names=("ranking",))


def test_command_line(tmp_path, capsys):
    serving = _serving_dir(tmp_path)
    out = tmp_path / "config"

    code = tf_serving_config.main(["--serving-dir", str(serving), "--out-dir", str(out)])

    assert code == 0
    assert push.read_models_config(out / "models.config")["ranking"] == "/models/serving/ranking"
    assert capsys.readouterr().out.splitlines()[-1] == f"written to {out / 'models.config'}"
    assert tf_serving_config.main(["--serving-dir", str(tmp_path / "missing")]) == 2
