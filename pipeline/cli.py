"""The ``movierec`` command line: ``run`` the pipeline, ``recommend`` from pushed models;
``retrain`` (``pipeline.retrain``) and ``compile`` (``pipeline.compile_command``) are
added from their modules.

Environment and flags are parsed here, once, into typed configs; everything below takes
plain arguments. ``run``, ``retrain`` and ``compile`` share their pipeline flags and build
their one ``PipelineConfig`` with ``pipeline.flags``. ``movierec run`` runs the pipeline in
a child process whose output goes to a log file (``pipeline.launch``), and prints one line
per component as it finishes.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from data import data_home
from data.sources import DATASET_NAMES, DatasetSpec, dataset_spec
from pipeline import compile_command, flags, launch, retrain
from publish import embeddings
from serving import commands as serving_commands
from serving import names


@dataclasses.dataclass(frozen=True)
class Environment:
    """The environment variables movierec reads, parsed once."""

    data_home: Path
    workdir: Path

    @classmethod
    def from_env(cls, env) -> "Environment":
        return cls(
            data_home=data_home.resolve_data_home(env),
            workdir=serving_commands.workdir_from(env),
        )


def _columns(text: str) -> dict[str, str]:
    """``user=userId,item=movieId,rating=rating`` -> {"user": "userId", ...}."""
    columns = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"--columns: expected key=column pairs, got {part!r}")
        columns[key.strip()] = value.strip()
    return columns


def dataset_from_args(args, env: Environment) -> DatasetSpec:
    """The dataset of ``movierec run``'s flags; GroupLens sets are downloaded when missing.

    Raises:
      ValueError: naming the flag, when a flag is invalid or does not apply to the dataset.
      data_home.DatasetUnavailableError: a data-home dataset is missing and cannot be fetched.
    """
    options = {}
    if args.implicit_threshold is not None:
        options["implicit_threshold"] = args.implicit_threshold
    if args.dataset == "table":
        if not args.path or not args.columns:
            raise ValueError("--dataset table needs --path (the ratings file) and --columns")
        options.update(path=str(Path(args.path).resolve()), columns=_columns(args.columns))
        for flag in ("format", "delimiter", "min_rating", "max_rating"):
            if getattr(args, flag) is not None:
                options[flag] = getattr(args, flag)
    elif args.path or args.columns:
        raise ValueError(f"--path and --columns apply to --dataset table, not {args.dataset}")
    if args.dataset == "synthetic":
        for flag in ("num_users", "num_movies", "num_ratings"):
            if getattr(args, f"synthetic_{flag}") is not None:
                options[flag] = getattr(args, f"synthetic_{flag}")
        options["seed"] = args.seed
    spec = dataset_spec(args.dataset, env.data_home, **options)  # checks before downloading
    if args.dataset in data_home.DATASET_FILES:
        data_home.ensure_dataset(args.dataset, env.data_home)
    return spec


def _describe(dataset: DatasetSpec) -> str:
    if dataset.kind == "synthetic":
        return (
            f"synthetic data ({dataset.num_users:,} users, {dataset.num_movies:,} movies, "
            f"~{dataset.num_ratings:,} ratings)"
        )
    return f"{dataset.kind} data at {dataset.path}"


def cmd_run(args, env: Environment, out=sys.stdout) -> int:
    try:
        flags.config_fields(args)  # a bad flag fails before the dataset is fetched
        dataset = dataset_from_args(args, env)
        config = flags.config_from_flags(
            args, dataset=dataset, **launch.local_locations(env.workdir)
        )
        workers = getattr(args, "beam_workers", 1)
        flags.beam_args(workers)  # a bad --beam-workers fails here, before any work
    except data_home.DatasetUnavailableError as e:
        print(f"movierec: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # json.JSONDecodeError is a ValueError too
        print(f"movierec: invalid option: {e}", file=sys.stderr)
        return 2
    workdir = env.workdir
    run_dir = launch.new_run_dir(workdir)
    log_path = run_dir / "pipeline.log"
    print(f"movierec: training on {_describe(dataset)} (log: {log_path})", file=out, flush=True)
    runner_flags = ("--beam-workers", str(workers)) if workers > 1 else ()
    outcome = launch.run_child(config, workdir, run_dir, out, runner_flags)
    if outcome is None:
        return 1
    results = outcome[0]
    launch.print_results(results, out)
    extra = {}
    if results.get("push", {}).get("pushed") or (workdir / "serving").exists():
        extra["demo"] = _demo(workdir / "serving", args.user, log_path, out)
    launch.write_summary(run_dir, config, outcome, out, **extra)
    return 0


def _demo(serving_dir: Path, user: str, log_path: Path, out) -> dict:
    """Top 10 for one user, read back in a fresh process from the pushed models."""
    with open(log_path, "a") as log:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "recommend",
                "--user",
                user,
                "--k",
                "10",
                "--json",
                "--serving-dir",
                str(serving_dir),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=launch.child_env(),
        )
    if proc.returncode != 0:
        print(f"\nCould not read the pushed models back (see {log_path}).", file=out)
        return {}
    demo = json.loads(proc.stdout)
    versions = demo["model_versions"]
    print(
        f"\nTop 10 for user {user} (retrieval v{versions['retrieval']}, ranking "
        f"v{versions['ranking']}, loaded from {serving_dir} in a fresh process):",
        file=out,
    )
    if demo.get("fallback"):
        print(f"  (user {user} has no history: the most rated movies)", file=out)
    for i, r in enumerate(demo["recommendations"], 1):
        print(
            f"  {i:>2}. {r['title']}  (movie {r['movie_id']}, "
            f"predicted rating {r['predicted_rating']:.2f})",
            file=out,
        )
    return demo


def cmd_recommend(args, env: Environment, out=sys.stdout) -> int:
    from serving import client

    serving_dir = Path(args.serving_dir) if args.serving_dir else env.workdir / "serving"
    try:
        response = client.recommend(serving_dir, args.user, args.k)
    except (FileNotFoundError, ValueError) as e:
        print(f"movierec: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(response, indent=2), file=out)
        return 0
    if response.get("fallback"):
        print(
            f"user {args.user} has no history: showing the most rated movies",
            file=out,
        )
    for i, r in enumerate(response["recommendations"], 1):
        print(
            f"{i:>3}. {r['title']}  (movie {r['movie_id']}, score {r['ranking_score']:.3f}, "
            f"predicted rating {r['predicted_rating']:.2f})",
            file=out,
        )
    return 0


def cmd_export_tflite(args, env: Environment, out=sys.stdout) -> int:
    from publish import push, tflite

    serving_dir = Path(args.serving_dir) if args.serving_dir else env.workdir / "serving"
    versions = push.list_versions(serving_dir / names.RANKING)
    if not versions:
        print(
            f"movierec: no pushed ranking model under {serving_dir / names.RANKING}",
            file=sys.stderr,
        )
        return 2
    source = serving_dir / names.RANKING / str(versions[-1])
    target = (
        Path(args.out) if args.out else serving_dir / "tflite" / f"ranking-{versions[-1]}.tflite"
    )
    tflite.export_tflite(source, target)
    try:
        diff = tflite.parity(source, target, num_pairs=1000)
    except ValueError as e:
        print(f"movierec: {e}", file=sys.stderr)
        return 2
    print(f"{target} ({target.stat().st_size} bytes) from ranking v{versions[-1]}", file=out)
    print(f"max |TFLite - SavedModel| over 1000 random pairs: {diff:.2e}", file=out)
    if diff > 1e-4:
        print(
            "movierec: the TFLite model differs from the SavedModel by more than 1e-4",
            file=sys.stderr,
        )
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movierec", description="Movie recommendation with TFX.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train, evaluate and push through the TFX pipeline")
    run.add_argument("--user", default="42", help="user shown in the closing demo")
    run.add_argument(
        "--beam-workers",
        type=int,
        default=1,
        help="processes of Beam's DirectRunner for ExampleGen, StatisticsGen and Transform: "
        "1 runs them in-process (best for MovieLens-100k-sized data), N > 1 in Beam's "
        "multi-processing mode (default: 1)",
    )
    flags.add_config_flags(run)
    data = run.add_argument_group("dataset")
    data.add_argument("--dataset", choices=DATASET_NAMES, default="ml-100k")
    data.add_argument("--path", help="table: the ratings file (CSV or Parquet)")
    data.add_argument(
        "--columns",
        help="table: user=COL,item=COL,rating=COL[,timestamp=COL][,title=COL]",
    )
    data.add_argument("--format", choices=("csv", "parquet"), help="table: default from suffix")
    data.add_argument("--delimiter", help="table CSV: field separator (default , or TAB)")
    data.add_argument("--min-rating", type=float, help="table: lowest valid rating (0.5)")
    data.add_argument("--max-rating", type=float, help="table: highest valid rating (5.0)")
    data.add_argument(
        "--implicit-threshold",
        type=float,
        help="keep only ratings above this (implicit feedback; the tutorials use 3)",
    )
    for flag in ("users", "movies", "ratings"):
        data.add_argument(f"--synthetic-{flag}", type=int, dest=f"synthetic_num_{flag}")
    retrain.add_retrain_command(sub)
    rec = sub.add_parser("recommend", help="top-k movies for a user from the pushed models")
    rec.add_argument("--user", required=True)
    rec.add_argument("--k", type=int, default=10)
    rec.add_argument("--json", action="store_true", help="print JSON")
    rec.add_argument("--serving-dir", help="default: $MOVIEREC_WORKDIR/serving")
    tfl = sub.add_parser("export-tflite", help="convert the newest ranking model to TFLite")
    tfl.add_argument("--serving-dir", help="default: $MOVIEREC_WORKDIR/serving")
    tfl.add_argument("--out", help="default: <serving dir>/tflite/ranking-<version>.tflite")
    compile_command.add_compile_command(sub)
    serving_commands.add_serve_command(sub)
    embeddings.add_export_embeddings_command(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    env = Environment.from_env(os.environ)
    commands = {
        "run": cmd_run,
        "retrain": retrain.cmd_retrain,
        "recommend": cmd_recommend,
        "export-tflite": cmd_export_tflite,
        "compile": compile_command.cmd_compile,
        "serve": lambda args, env: serving_commands.cmd_serve(args, env.workdir),
        "export-embeddings": embeddings.cmd_export_embeddings,
    }
    return commands[args.command](args, env)


if __name__ == "__main__":
    sys.exit(main())
