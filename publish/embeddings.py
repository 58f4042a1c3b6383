"""``movierec export-embeddings``: the pushed model's user and movie embeddings, as files.

``pipeline.cli`` adds the subcommand with :func:`add_export_embeddings_command` and runs
:func:`cmd_export_embeddings`; both call :func:`export_embeddings`, a plain function over a
serving directory (its newest ranking model) or one ranking SavedModel. The vectors come from
the model's ``user_embedding`` and ``movie_embedding`` signatures, for every id of the
vocabularies it carries (its ``user_ids`` and ``movie_ids`` variables, in vocabulary order).
Movie titles come from the newest retrieval model of the serving directory, whose checkpoint
holds the catalogue's ids and titles; a bare model path, or a retrieval model without them,
gives ids only.

Files, one directory per kind (``users/``, ``movies/``)::

    npy:  embeddings.npy  [n, dim] float32, row i for line i of ids.txt
          ids.txt         one id per line
          titles.txt      movies only, when titles are known: line i is ids.txt line i's title
    tsv:  vectors.tsv     TensorBoard projector: one row of dim tab-separated floats per id
          metadata.tsv    the ids, one per line; with titles a "movie_id<TAB>title" header
                          then "id<TAB>title" rows (the projector's multi-column form)
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from publish import push
from serving import names
from trainer import features

# TensorFlow (and publish.retrieval, which needs it) is imported inside the functions that
# use it, so that building the ``movierec`` parser stays fast for every other command.

NPY, TSV, BOTH = "npy", "tsv", "both"
FORMATS = (NPY, TSV, BOTH)
USERS, MOVIES = "users", "movies"

_BATCH = 8192


def export_embeddings(serving_dir_or_model_path: str | Path, out_dir: str | Path, fmt: str) -> dict:
    """Writes the user and movie embeddings of a ranking model, with their ids, to ``out_dir``.

    Args:
      serving_dir_or_model_path: a TF Serving directory (its newest ``ranking`` version is
        read, and titles from its newest retrieval model) or a ranking SavedModel directory.
      out_dir: created if missing; ``users/`` and ``movies/`` are written inside it.
      fmt: ``"npy"``, ``"tsv"`` or ``"both"`` (the layout is in the module docstring).

    Returns:
      ``{"model": path read, "titles_from": path or None, "users": {"count", "dim",
      "files"}, "movies": {...}}``.

    Raises:
      ValueError: for an unknown ``fmt``, or a model that carries no vocabularies.
      FileNotFoundError: when the path is neither a SavedModel nor a serving directory with a
        pushed ranking model.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    import tensorflow as tf

    model_path, retrieval_path = _resolve(Path(serving_dir_or_model_path))
    model = tf.saved_model.load(str(model_path))
    if not hasattr(model, "user_ids") or not hasattr(model, "movie_ids"):
        raise ValueError(
            f"{model_path} carries no vocabularies (pushed by an older movierec); run "
            "`movierec run` to push a current model"
        )
    titles = _catalogue_titles(retrieval_path) if retrieval_path else None
    result = {"model": str(model_path), "titles_from": None}
    for kind, vocabulary, signature, key in (
        (USERS, model.user_ids, features.SIG_USER_EMBEDDING, features.USER_ID),
        (MOVIES, model.movie_ids, features.SIG_MOVIE_EMBEDDING, features.MOVIE_ID),
    ):
        ids = [i.decode() for i in vocabulary.numpy()]
        vectors = embed(model.signatures[signature], key, ids)
        kind_titles = None
        if kind == MOVIES and titles is not None:
            kind_titles = [titles.get(i, "") for i in ids]
            result["titles_from"] = str(retrieval_path)
        files = _write(Path(out_dir) / kind, ids, vectors, kind_titles, fmt)
        result[kind] = {"count": len(ids), "dim": int(vectors.shape[1]), "files": files}
    return result


def embed(signature, key: str, ids: list[str], batch: int = _BATCH) -> np.ndarray:
    """``[n]`` ids -> ``[n, dim]`` float32 embeddings from an embedding signature.

    Args:
      signature: ``user_embedding`` or ``movie_embedding`` of the ranking model.
      key: its input name (``user_id`` or ``movie_id``).
      ids: the ids, in the order of the returned rows.
      batch: ids per call.
    """
    import tensorflow as tf

    parts = [
        signature(**{key: tf.constant(ids[lo : lo + batch], tf.string)})["embedding"].numpy()
        for lo in range(0, len(ids), batch)
    ]
    return np.concatenate(parts)


def _resolve(path: Path) -> tuple[Path, Path | None]:
    """(ranking SavedModel, newest retrieval model of the same serving directory or None)."""
    if _is_saved_model(path):
        return path, None
    versions = push.list_versions(path / names.RANKING)
    if not versions:
        raise FileNotFoundError(
            f"{path} is neither a SavedModel nor a serving directory with a pushed "
            f"{names.RANKING} model"
        )
    ranking = path / names.RANKING / str(versions[-1])
    # The brute-force model first: same catalogue, and it needs no ScaNN index to be read.
    for name in (names.RETRIEVAL_BRUTE_FORCE, names.RETRIEVAL):
        retrieval_versions = push.list_versions(path / name)
        if retrieval_versions:
            return ranking, path / name / str(retrieval_versions[-1])
    return ranking, None


def _is_saved_model(path: Path) -> bool:
    return any((path / name).is_file() for name in names.SAVED_MODEL_FILES)


def _catalogue_titles(retrieval_path: Path) -> dict[str, str] | None:
    """Movie id -> title from the retrieval model's checkpoint, None if it holds no catalogue.

    Reading the two variables from the checkpoint needs neither the model's graph nor ScaNN.
    """
    import tensorflow as tf

    from serving import names

    reader = tf.train.load_checkpoint(str(retrieval_path / "variables" / "variables"))
    keys = [
        f"{name}/.ATTRIBUTES/VARIABLE_VALUE"
        for name in (names.CATALOGUE_IDS, names.CATALOGUE_TITLES)
    ]
    if not all(reader.has_tensor(key) for key in keys):
        return None
    ids, titles = (reader.get_tensor(key) for key in keys)
    return {i.decode(): t.decode() for i, t in zip(ids, titles, strict=True)}


def _write(directory: Path, ids, vectors, titles, fmt: str) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []

    def lines(name, rows):
        path = directory / name
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(f"{row}\n" for row in rows)
        written.append(str(path))

    ids = [_one_field(i) for i in ids]
    titles = [_one_field(t) for t in titles] if titles is not None else None
    if fmt in (NPY, BOTH):
        np.save(directory / "embeddings.npy", vectors.astype(np.float32))
        written.append(str(directory / "embeddings.npy"))
        lines("ids.txt", ids)
        if titles is not None:
            lines("titles.txt", titles)
    if fmt in (TSV, BOTH):
        # 9 significant digits read back as the very same float32.
        np.savetxt(directory / "vectors.tsv", vectors, fmt="%.9g", delimiter="\t")
        written.append(str(directory / "vectors.tsv"))
        if titles is None:  # one column: the projector wants no header
            lines("metadata.tsv", ids)
        else:
            rows = (f"{i}\t{t}" for i, t in zip(ids, titles, strict=True))
            lines("metadata.tsv", ["movie_id\ttitle", *rows])
    return written


def _one_field(text: str) -> str:
    """The text with tabs and line breaks made spaces, so it stays one TSV field on one line."""
    return " ".join(text.replace("\t", " ").splitlines()) if text else text


def add_export_embeddings_command(subparsers) -> argparse.ArgumentParser:
    """Adds ``export-embeddings`` and its flags to the ``movierec`` subparsers."""
    parser = subparsers.add_parser(
        "export-embeddings",
        help="write the newest pushed model's user and movie embeddings with their ids",
    )
    parser.add_argument(
        "--serving-dir",
        help="serving directory or ranking SavedModel (default: $MOVIEREC_WORKDIR/serving)",
    )
    parser.add_argument(
        "--out", help="output directory (default: <serving dir>/embeddings/ranking-<version>)"
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=NPY,
        help="npy: embeddings.npy + ids.txt; tsv: TensorBoard projector vectors.tsv + "
        "metadata.tsv; both (default: npy)",
    )
    return parser


def cmd_export_embeddings(args, env, out=sys.stdout) -> int:
    """Runs :func:`export_embeddings` for the parsed flags; prints what it wrote.

    Args:
      args: ``serving_dir`` (None: ``env.workdir / "serving"``), ``out``, ``format``.
      env: ``pipeline.cli.Environment`` (only ``workdir`` is read).
      out: where the summary is printed.

    Returns:
      0, or 2 when there is no model to read or no --out for a bare SavedModel.
    """
    source = Path(args.serving_dir) if args.serving_dir else env.workdir / "serving"
    try:
        model_path, _ = _resolve(source)
    except FileNotFoundError as err:
        print(f"movierec: {err}", file=sys.stderr)
        return 2
    if args.out:
        target = Path(args.out)
    elif model_path == source:  # never write into a SavedModel (or a TF Serving base path)
        print("movierec: --out is required with a SavedModel path", file=sys.stderr)
        return 2
    else:
        target = source / "embeddings" / f"{names.RANKING}-{model_path.name}"
    try:
        result = export_embeddings(source, target, args.format)
    except ValueError as err:
        print(f"movierec: {err}", file=sys.stderr)
        return 2
    print(f"embeddings of {result['model']} -> {target}", file=out)
    for kind in (USERS, MOVIES):
        print(f"  {kind:<7}{result[kind]['count']:>9,} x {result[kind]['dim']}", file=out)
    if result["titles_from"]:
        print(f"  titles from {result['titles_from']}", file=out)
    return 0
