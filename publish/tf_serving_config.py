"""The models.config a TF Serving container reads: the pushed models at their mounted paths.

``docker/tf-serving/compose.yaml`` mounts the serving directory at ``/models/serving`` and a
config written by this module at ``/models/models.config``; run
``python -m publish.tf_serving_config --serving-dir DIR`` (add ``--scann`` for the
ScaNN-enabled image) after the first push. The Pusher's own ``<serving_dir>/models.config``
cannot be used there: its base paths are absolute host paths, and it lists the ScaNN
retrieval model, which stock TF Serving cannot load (its graph uses ``Scann>*`` ops), and a
model that fails to load stops the server from starting. Base paths do not change between
pushes (TF Serving finds new versions under them by itself), so the file is written once.
"""

import argparse
import posixpath
import sys
from collections.abc import Sequence
from pathlib import Path

from publish import push
from serving import names
from serving.names import MODELS_CONFIG

# Models stock TF Serving (tensorflow/serving) can load, and all of them for a build linked
# with the ScaNN ops (google/tf-serving-scann).
STOCK_MODELS = (names.RANKING, names.RETRIEVAL_BRUTE_FORCE)
SCANN_MODELS = names.MODEL_NAMES
CONTAINER_SERVING_DIR = "/models/serving"
# Where the configs are written by default, inside the serving directory.
STOCK_CONFIG_DIR = "tf-serving"
SCANN_CONFIG_DIR = "tf-serving-scann"


def container_base_paths(
    serving_dir: Path,
    names: Sequence[str] = STOCK_MODELS,
    container_dir: str = CONTAINER_SERVING_DIR,
) -> dict[str, str]:
    """Model name -> base path inside a container that mounts ``serving_dir`` at ``container_dir``.

    A base path under ``serving_dir`` keeps its place relative to it. One outside it (the
    directory was moved or copied after the push, e.g. to the serving host) is taken to be
    ``<serving_dir>/<name>``, the layout the Pusher writes (``publish.push``), if that exists.

    Args:
      serving_dir: the serving directory holding the Pusher's ``models.config``.
      names: the models to serve, in the order they are written.
      container_dir: the absolute path ``serving_dir`` is mounted at.

    Returns:
      ``{name: POSIX base path inside the container}`` in ``names`` order.

    Raises:
      ValueError: for a model that ``models.config`` does not list, whose base path cannot be
        found under ``serving_dir``, or that has no pushed version yet.
    """
    serving_dir = Path(serving_dir).resolve()
    host = push.read_models_config(serving_dir / MODELS_CONFIG)
    paths = {}
    for name in names:
        if name not in host:
            raise ValueError(
                f"{serving_dir / MODELS_CONFIG} lists no model {name!r} (it lists "
                f"{sorted(host)}); push one first"
            )
        try:
            relative = Path(host[name]).resolve().relative_to(serving_dir)
        except ValueError:
            relative = Path(name)
            if not (serving_dir / relative).is_dir():
                raise ValueError(
                    f"the base path of {name!r}, {host[name]}, is outside {serving_dir}, "
                    f"which holds no {name}/ either"
                ) from None
        if not push.list_versions(serving_dir / relative):
            raise ValueError(f"no pushed version of {name!r} under {serving_dir / relative}")
        paths[name] = posixpath.join(container_dir, relative.as_posix())
    return paths


def write_container_config(
    serving_dir: Path,
    out_dir: Path | None = None,
    scann: bool = False,
    container_dir: str = CONTAINER_SERVING_DIR,
) -> Path:
    """Writes ``<out_dir>/models.config`` for a container mounting ``serving_dir``.

    Args:
      serving_dir: the serving directory the Pusher writes.
      out_dir: default ``<serving_dir>/tf-serving`` (``tf-serving-scann`` with ``scann``).
      scann: all models, for a TF Serving build with the ScaNN ops; otherwise the models
        stock TF Serving loads (``ranking``, ``retrieval_brute_force``).
      container_dir: where the container mounts ``serving_dir``.

    Returns:
      The written file (a ``ModelServerConfig`` text proto, replaced atomically).

    Raises:
      ValueError: as :func:`container_base_paths`.
    """
    serving_dir = Path(serving_dir)
    if out_dir is None:
        out_dir = serving_dir / (SCANN_CONFIG_DIR if scann else STOCK_CONFIG_DIR)
    names = SCANN_MODELS if scann else STOCK_MODELS
    return push.write_models_config(
        Path(out_dir), container_base_paths(serving_dir, names, container_dir)
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serving-dir", required=True, help="the Pusher's serving directory")
    parser.add_argument(
        "--scann",
        action="store_true",
        help="all three models, for google/tf-serving-scann (default: the stock-ops models)",
    )
    parser.add_argument(
        "--out-dir",
        help=f"default: <serving dir>/{STOCK_CONFIG_DIR} (or /{SCANN_CONFIG_DIR} with --scann)",
    )
    parser.add_argument(
        "--container-dir",
        default=CONTAINER_SERVING_DIR,
        help=f"where the container mounts the serving dir (default: {CONTAINER_SERVING_DIR})",
    )
    args = parser.parse_args(argv)
    try:
        path = write_container_config(
            Path(args.serving_dir),
            Path(args.out_dir) if args.out_dir else None,
            scann=args.scann,
            container_dir=args.container_dir,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"tf_serving_config: {err}", file=sys.stderr)
        return 2
    for name, base_path in push.read_models_config(path).items():
        print(f"{name:<22} {base_path}")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
