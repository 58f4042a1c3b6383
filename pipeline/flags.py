"""The flags ``movierec run``, ``retrain`` and ``compile`` share, and the one config they build.

``pipeline.cli`` (``run``), ``pipeline.retrain`` and ``pipeline.compile_command`` add these
flags with :func:`add_config_flags` and build their :class:`~pipeline.config.PipelineConfig`
with :func:`config_from_flags`; each command adds only where things live (a workdir, or
gs:// URIs) and its dataset. Defaults are read from ``PipelineConfig`` and, for the split,
from ``data.splits.SplitConfig``: no default is written here. Light on purpose (no TFX or
TensorFlow import), so the commands start quickly.
"""

import argparse
import json

from data import splits
from pipeline.config import WARM_START_SOURCES, PipelineConfig, default
from serving.names import INDEX_KINDS
from trainer.config import TrainerConfig

_SPLIT = splits.SplitConfig()
# What each span of a span root holds, unless --span-layout says (retrain, compile).
DEFAULT_SPAN_LAYOUT = "movielens-latest"


# In-process Beam keeps start-up cheap for data of MovieLens size.
DEFAULT_BEAM_ARGS = ("--direct_running_mode=in_memory", "--direct_num_workers=1")


def beam_args(workers: int = 1) -> tuple[str, ...]:
    """DirectRunner options (``movierec run --beam-workers``, ``pipeline.local_runner``): in
    the runner's process for 1 worker (the default: no start-up cost, one core), Beam's
    multi-processing mode with ``workers`` processes otherwise (each stage's bundles spread
    over the cores; worth it once a stage's work outweighs the workers' start-up, see the
    README's Beam section).

    Raises:
      ValueError: ``workers`` < 1.
    """
    if workers < 1:
        raise ValueError(f"--beam-workers must be >= 1, got {workers}")
    if workers == 1:
        return DEFAULT_BEAM_ARGS
    return ("--direct_running_mode=multi_processing", f"--direct_num_workers={workers}")


def add_config_flags(
    parser: argparse.ArgumentParser, warm_start: str = default("warm_start_from")
) -> None:
    """Adds the split, Trainer, blessing, index and refit flags.

    Args:
      parser: a command's parser.
      warm_start: the command's default of ``--warm-start`` (``retrain`` starts from the
        latest blessed model; the others from ``PipelineConfig``'s default).
    """
    group = parser.add_argument_group("pipeline")
    group.add_argument("--split", choices=splits.SPLIT_KINDS, default=_SPLIT.kind)
    group.add_argument("--seed", type=int, default=_SPLIT.seed, help="seed of the random split")
    group.add_argument(
        "--eval-fraction", type=float, default=_SPLIT.eval_fraction, help="random and time splits"
    )
    group.add_argument(
        "--leave-last-n", type=int, default=_SPLIT.leave_last_n, help="leave_last_n split"
    )
    group.add_argument("--index", choices=INDEX_KINDS, default=default("index_kind"))
    group.add_argument("--trainer-config", help="JSON overrides, e.g. '{\"epochs\": 3}'")
    group.add_argument(
        "--max-reject-fraction",
        type=float,
        default=default("max_reject_fraction"),
        help="stop before training when more rating rows than this are rejected",
    )
    group.add_argument(
        "--warm-start",
        choices=WARM_START_SOURCES,
        default=warm_start,
        help="initial weights: the latest blessed model's (ids it knows), or fresh",
    )
    group.add_argument(
        "--refit",
        action=argparse.BooleanOptionalAction,
        default=default("refit"),
        help="after blessing, push the evaluated recipe refit on every ingested rating "
        "(measured by `make bench ARGS=refit`)",
    )


def config_fields(args: argparse.Namespace) -> dict:
    """The PipelineConfig fields the flags of :func:`add_config_flags` set, checked.

    Commands call it before any work, so that a bad flag fails at once, not minutes later
    inside ExampleGen.

    Raises:
      ValueError: naming the bad field, or --trainer-config when it is not JSON.
    """
    return {
        "trainer": TrainerConfig.from_custom_config(trainer_json(args.trainer_config)),
        "split": splits.SplitConfig(args.split, args.seed, args.eval_fraction, args.leave_last_n),
        "index_kind": args.index,
        "max_reject_fraction": args.max_reject_fraction,
        "warm_start_from": args.warm_start,
        "refit": args.refit,
    }


def trainer_json(text: str | None):
    """``--trainer-config``'s JSON text as a dict ({} when absent).

    Raises:
      ValueError: naming --trainer-config and the column when the text is not JSON.
    """
    if not text:
        return {}
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{err.msg} at column {err.colno} of --trainer-config") from err
    except RecursionError as err:
        raise ValueError("--trainer-config is nested too deeply to be a config") from err


def config_from_flags(
    args: argparse.Namespace,
    *,
    pipeline_name: str,
    pipeline_root: str,
    dataset,
    schema_path: str,
    serving_dir: str,
) -> PipelineConfig:
    """The one PipelineConfig of ``run``, ``retrain`` and ``compile``.

    Args:
      args: parsed flags of :func:`add_config_flags`.
      pipeline_name, pipeline_root, dataset, schema_path, serving_dir: where the command
        runs and what it reads (``PipelineConfig``'s fields of the same names).

    Raises:
      ValueError: naming the bad flag's field.
    """
    return PipelineConfig(
        pipeline_name=pipeline_name,
        pipeline_root=pipeline_root,
        dataset=dataset,
        schema_path=schema_path,
        serving_dir=serving_dir,
        **config_fields(args),
    )
