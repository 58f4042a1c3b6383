"""Runs the pipeline locally: LocalDagRunner, SQLite ML-Metadata, Beam DirectRunner.

A config in (``pipeline.config.PipelineConfig``), a pipeline out (``create_pipeline``), run;
the results are read back from ML-Metadata (``pipeline.metadata.collect_results``).
``movierec run`` and ``retrain`` start this module in a child process (``python -m
pipeline.local_runner``, see ``pipeline.launch.run_child``) with its output going to a log
file, so TensorFlow and Beam noise stays out of the terminal. It can also be run by hand
with the same arguments.
"""

import argparse
import json
import os
import sys

from absl import logging
from tfx import v1 as tfx

from pipeline.config import PipelineConfig, config_from_dict
from pipeline.flags import DEFAULT_BEAM_ARGS, beam_args
from pipeline.metadata import collect_results
from pipeline.pipeline import create_pipeline


def run(
    config: PipelineConfig,
    metadata_path: str,
    beam_args=DEFAULT_BEAM_ARGS,
    enable_cache: bool = False,
) -> dict:
    """Runs the whole pipeline and returns ``pipeline.metadata.collect_results``.

    With ``enable_cache``, a component whose inputs and parameters match an execution
    recorded in ML-Metadata reuses its outputs instead of running (a rerun after a crash
    resumes where the first run stopped).
    """
    os.makedirs(os.path.dirname(os.path.abspath(metadata_path)), exist_ok=True)
    p = create_pipeline(
        config,
        beam_pipeline_args=beam_args,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path
        ),
        enable_cache=enable_cache,
    )
    tfx.orchestration.LocalDagRunner().run(p)
    return collect_results(metadata_path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="JSON file of a PipelineConfig")
    parser.add_argument("--metadata", required=True, help="SQLite ML-Metadata path")
    parser.add_argument("--results", required=True, help="where to write the results JSON")
    parser.add_argument(
        "--enable-cache", action="store_true", help="reuse outputs recorded in ML-Metadata"
    )
    parser.add_argument(
        "--beam-workers",
        type=int,
        default=1,
        help="Beam DirectRunner workers: 1 in this process, more in multi-processing mode",
    )
    args = parser.parse_args(argv)
    # INFO carries LocalDagRunner's "Component X is running/finished" lines that
    # `movierec run` follows in this process's log.
    logging.set_verbosity(logging.INFO)
    with open(args.config) as f:
        config = config_from_dict(json.load(f))
    results = run(
        config,
        args.metadata,
        beam_args=beam_args(args.beam_workers),
        enable_cache=args.enable_cache,
    )
    with open(args.results, "w") as f:
        json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
