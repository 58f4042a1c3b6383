"""The ``movierec`` command line: ``run`` the pipeline, ``recommend`` from pushed models.

Environment and flags are parsed here, once, into typed configs; everything below takes
plain arguments. ``movierec run`` runs the pipeline in a child process whose output goes to
a log file, and prints one line per component as it finishes.
"""

import argparse
import dataclasses
import importlib.resources
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
from components import data_home, splits
from components.sources import DATASET_NAMES, DatasetSpec, dataset_spec
from pipeline import kubeflow_v2_runner
from pipeline.config import PipelineConfig, config_to_dict
from trainer.config import TrainerConfig

_COMPONENT_LINE = re.compile(r"Component (\S+) is (running|finished)\.")
_METRICS_SHOWN = (
    "recall@10",
    "recall@100",
    "ndcg@10",
    "map@10",
    "user_recall@10",
    "top_k_accuracy_incl_seen@10",
    "top_k_accuracy_incl_seen@100",
    "coverage@10",
    "popularity_percentile@10",
    "rmse",
    "mae",
)


@dataclasses.dataclass(frozen=True)
class Environment:
    """The environment variables movierec reads, parsed once."""

    data_home: Path
    workdir: Path

    @classmethod
    def from_env(cls, env) -> "Environment":
        return cls(
            data_home=data_home.resolve_data_home(env),
            workdir=Path(env.get("MOVIEREC_WORKDIR", "movierec_work")).resolve(),
        )


def schema_path() -> str:
    """The curated schema shipped with the package."""
    return str(importlib.resources.files("pipeline") / "schema" / "schema.pbtxt")


def _follow(proc: subprocess.Popen, log_path: Path, out) -> dict[str, float]:
    """Prints a line per component as the child's log reports it; returns durations."""
    durations, started = {}, {}
    with open(log_path, errors="replace") as log:
        while True:
            line = log.readline()
            if not line:
                if proc.poll() is not None:
                    break
                time.sleep(0.2)
                continue
            m = _COMPONENT_LINE.search(line)
            if not m:
                continue
            name, state = m.groups()
            if state == "running":
                started[name] = time.perf_counter()
                print(f"  {name:<30}", end=" ", file=out, flush=True)
            elif name in started:
                durations[name] = time.perf_counter() - started[name]
                print(f"done in {durations[name]:6.1f} s", file=out, flush=True)
    return durations


def _print_ingest(ingest: dict, out) -> None:
    rejects = {reason: n for reason, n in ingest["rejects"].items() if n}
    print(
        f"\nIngested {ingest['rows']:,} rating rows: {ingest['train']:,} train, "
        f"{ingest['eval']:,} eval examples; {sum(rejects.values()):,} rows rejected"
        + (f" ({', '.join(f'{r} {n:,}' for r, n in sorted(rejects.items()))})" if rejects else "")
        + (
            f"; {ingest['below_implicit_threshold']:,} at or below the implicit threshold"
            if ingest["below_implicit_threshold"]
            else ""
        ),
        file=out,
    )
    print(f"  rejects: {ingest['rejects_file']}", file=out)


def _print_results(results: dict, out) -> None:
    if results.get("ingest"):
        _print_ingest(results["ingest"], out)
    evaluation = results.get("evaluation")
    if evaluation:
        columns = {"model": evaluation["model"], **evaluation["baselines"]}
        if evaluation.get("previous_model"):
            columns["previous"] = evaluation["previous_model"]["metrics"]
        print(
            "\nEvaluation on the eval split (every movie a candidate; recall/ndcg/map exclude "
            "each user's train movies):",
            file=out,
        )
        print(f"  {'metric':<30}" + "".join(f"{name:>12}" for name in columns), file=out)
        for key in _METRICS_SHOWN:
            cells = "".join(
                f"{scorer[key]:>12.4f}" if key in scorer else f"{'-':>12}"
                for scorer in columns.values()
            )
            print(f"  {key:<30}{cells}", file=out)
        verdict = "BLESSED" if evaluation["blessed"] else "NOT BLESSED"
        print(f"\nBlessing: {verdict}", file=out)
        for reason in evaluation["reasons"]:
            print(f"  {reason}", file=out)
    if results.get("report"):
        print(f"\nReport: {results['report']}", file=out)
    push = results.get("push", {})
    if push.get("pushed"):
        print("\nPushed models (TF Serving layout):", file=out)
        for name, pushed in push.items():
            if isinstance(pushed, dict):
                print(f"  {name:<22} v{pushed['version']:<4} {pushed['path']}", file=out)
        print(f"  {'models.config':<22}       {push['models_config']}", file=out)
    elif push:
        print(
            f"\nNothing pushed: {push.get('reason')}; the previous model keeps serving.", file=out
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


def _validation_failure(log_lines: list[str]) -> list[str]:
    """The DataValidationGate's message in a failed run's log, or [] when it did not fail."""
    marker = "DataValidationError: "
    for i in range(len(log_lines) - 1, -1, -1):
        if marker in log_lines[i]:
            message = [log_lines[i][log_lines[i].index(marker) :]]
            for line in log_lines[i + 1 :]:
                if not (line.startswith("  ") or line.startswith("rejected rows: ")):
                    break
                message.append(line)
            return message
    return []


def cmd_run(args, env: Environment, out=sys.stdout) -> int:
    try:
        trainer_config = TrainerConfig.from_custom_config(
            json.loads(args.trainer_config) if args.trainer_config else {}
        )
        # Checked here so a bad flag fails at once, not minutes later inside ExampleGen.
        splits.SplitConfig(args.split, args.seed, args.eval_fraction, args.leave_last_n)
    except ValueError as e:  # json.JSONDecodeError is a ValueError too
        print(f"movierec: invalid option: {e}", file=sys.stderr)
        return 2
    try:
        dataset = dataset_from_args(args, env)
    except data_home.DatasetUnavailableError as e:
        print(f"movierec: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"movierec: invalid option: {e}", file=sys.stderr)
        return 2
    workdir = env.workdir
    run_id = time.strftime("%Y%m%d-%H%M%S")
    run_dir = workdir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    config = PipelineConfig(
        pipeline_name="movierec",
        pipeline_root=str(workdir / "pipeline_root"),
        dataset=dataset,
        schema_path=schema_path(),
        serving_dir=str(workdir / "serving"),
        trainer=trainer_config,
        split_kind=args.split,
        split_seed=args.seed,
        eval_fraction=args.eval_fraction,
        leave_last_n=args.leave_last_n,
        index_kind=args.index,
        max_reject_fraction=args.max_reject_fraction,
    )
    config_file = run_dir / "config.json"
    config_file.write_text(json.dumps(config_to_dict(config), indent=2))
    log_path = run_dir / "pipeline.log"
    results_file = run_dir / "results.json"
    print(f"movierec: training on {_describe(dataset)} (log: {log_path})", file=out, flush=True)
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.local_runner",
                "--config",
                str(config_file),
                "--metadata",
                str(workdir / "metadata.sqlite"),
                "--results",
                str(results_file),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_env(),
        )
    durations = _follow(proc, log_path, out)
    total = time.perf_counter() - start
    if proc.returncode != 0:
        print(
            f"\nmovierec: the pipeline failed (exit {proc.returncode}); last lines of {log_path}:",
            file=sys.stderr,
        )
        lines = log_path.read_text(errors="replace").splitlines()
        print("\n".join(_validation_failure(lines) or lines[-25:]), file=sys.stderr)
        return 1
    results = json.loads(results_file.read_text())
    print(f"  {'total':<30} {total:6.1f} s", file=out)
    _print_results(results, out)
    summary = {
        "run_id": run_id,
        "dataset": json.loads(dataset.to_json()),
        "config": config_to_dict(config),
        "seconds_total": total,
        "seconds_per_component": durations,
        "evaluation": results.get("evaluation"),
        "blessed": bool(results.get("evaluation", {}).get("blessed")),
        "push": results.get("push"),
        "report": results.get("report"),
        "log": str(log_path),
    }
    if results.get("push", {}).get("pushed") or (workdir / "serving").exists():
        summary["demo"] = _demo(workdir / "serving", args.user, log_path, out)
    summary_path = run_dir / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=2))
    print(f"\nRun summary: {summary_path}", file=out)
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
            env=_child_env(),
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
    for i, r in enumerate(demo["recommendations"], 1):
        print(
            f"  {i:>2}. {r['title']}  (movie {r['movie_id']}, "
            f"predicted rating {r['predicted_rating']:.2f})",
            file=out,
        )
    return demo


def _child_env() -> dict:
    return {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def cmd_recommend(args, env: Environment, out=sys.stdout) -> int:
    from serving.client import PushedModels

    serving_dir = Path(args.serving_dir) if args.serving_dir else env.workdir / "serving"
    try:
        models = PushedModels(serving_dir)
        recs, known = models.recommend(args.user, args.k)
    except (FileNotFoundError, ValueError) as e:
        print(f"movierec: {e}", file=sys.stderr)
        return 2
    if args.json:
        payload = {
            "user_id": args.user,
            "known_user": known,
            "model_versions": models.versions,
            "recommendations": [dataclasses.asdict(r) for r in recs],
        }
        print(json.dumps(payload, indent=2), file=out)
        return 0
    if not known:
        print(
            f"user {args.user} is unknown to the model: showing its default recommendations",
            file=out,
        )
    for i, r in enumerate(recs, 1):
        print(
            f"{i:>3}. {r.title}  (movie {r.movie_id}, score {r.score:.3f}, "
            f"predicted rating {r.predicted_rating:.2f})",
            file=out,
        )
    return 0


def cmd_export_tflite(args, env: Environment, out=sys.stdout) -> int:
    from serving import push, tflite

    serving_dir = Path(args.serving_dir) if args.serving_dir else env.workdir / "serving"
    versions = push.list_versions(serving_dir / push.RANKING)
    if not versions:
        print(
            f"movierec: no pushed ranking model under {serving_dir / push.RANKING}", file=sys.stderr
        )
        return 2
    source = serving_dir / push.RANKING / str(versions[-1])
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
    run.add_argument("--split", choices=("random", "time", "leave_last_n"), default="random")
    run.add_argument("--seed", type=int, default=42, help="seed of the random split")
    run.add_argument("--eval-fraction", type=float, default=0.2, help="random and time splits")
    run.add_argument("--leave-last-n", type=int, default=1, help="leave_last_n split")
    run.add_argument("--index", choices=("scann", "brute_force"), default="scann")
    run.add_argument("--trainer-config", help="JSON overrides, e.g. '{\"epochs\": 3}'")
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
    data.add_argument(
        "--max-reject-fraction",
        type=float,
        default=0.05,
        help="stop before training when more rating rows than this are rejected",
    )
    rec = sub.add_parser("recommend", help="top-k movies for a user from the pushed models")
    rec.add_argument("--user", required=True)
    rec.add_argument("--k", type=int, default=10)
    rec.add_argument("--json", action="store_true", help="print JSON")
    rec.add_argument("--serving-dir", help="default: $MOVIEREC_WORKDIR/serving")
    tfl = sub.add_parser("export-tflite", help="convert the newest ranking model to TFLite")
    tfl.add_argument("--serving-dir", help="default: $MOVIEREC_WORKDIR/serving")
    tfl.add_argument("--out", help="default: <serving dir>/tflite/ranking-<version>.tflite")
    kubeflow_v2_runner.add_compile_command(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    env = Environment.from_env(os.environ)
    commands = {
        "run": cmd_run,
        "recommend": cmd_recommend,
        "export-tflite": cmd_export_tflite,
        "compile": kubeflow_v2_runner.cmd_compile,
    }
    return commands[args.command](args, env)


if __name__ == "__main__":
    sys.exit(main())
