"""Reads ExampleGen's tf.Example splits back into numpy columns.

Used by the Evaluator and Pusher components (and by tests) to read the rating and catalogue
examples an upstream ExampleGen wrote in TFX's ``Split-<name>/*.gz`` layout.
"""

import os

import numpy as np
import tensorflow as tf

from trainer import features
from trainer.data import read_records

# How each raw feature is parsed; every scalar feature ExampleGen writes is listed here.
RAW_SPECS = {
    features.USER_ID: tf.io.FixedLenFeature([], tf.string),
    features.MOVIE_ID: tf.io.FixedLenFeature([], tf.string),
    features.MOVIE_TITLE: tf.io.FixedLenFeature([], tf.string, default_value=""),
    features.RATING: tf.io.FixedLenFeature([], tf.float32),
    features.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    features.RELEASE_YEAR: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    features.USER_AGE: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    features.USER_GENDER: tf.io.FixedLenFeature([], tf.string, default_value=""),
}


def split_files(artifact_uri: str, split: str) -> list[str]:
    """The TFRecord files of one split of an Examples artifact.

    Raises:
      FileNotFoundError: naming the split directory when it holds no files.
    """
    pattern = os.path.join(artifact_uri, f"Split-{split}", "*")
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no examples for split '{split}' at {pattern}")
    return files


def read_columns(artifact_uri: str, split: str, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Reads scalar features of one split into arrays.

    Args:
      artifact_uri: the Examples artifact's uri.
      split: split name, e.g. ``"eval"``.
      keys: raw feature keys (from ``trainer.features``) to read.

    Returns:
      dict of key -> ``[n]`` array; strings are decoded to Python ``str`` (object arrays).
    """
    spec = {k: RAW_SPECS[k] for k in keys}
    out = read_records(split_files(artifact_uri, split), spec)
    for k in keys:
        if spec[k].dtype == tf.string:
            out[k] = np.array([v.decode("utf-8") for v in out[k]], dtype=object)
    return out


def write_columns(artifact_uri: str, split: str, columns: dict[str, np.ndarray]) -> str:
    """Writes columns as tf.Examples in ExampleGen's ``Split-<name>/*.gz`` layout.

    For benchmarks and tests that feed the Evaluator and the servable builder without
    running ExampleGen; :func:`read_columns` reads them back.

    Args:
      artifact_uri: the Examples artifact's directory.
      split: split name.
      columns: raw feature key -> ``[n]`` values (str, float or int by the key's spec).

    Returns:
      The file written.
    """
    directory = os.path.join(artifact_uri, f"Split-{split}")
    tf.io.gfile.makedirs(directory)
    path = os.path.join(directory, "data.gz")
    n = len(next(iter(columns.values())))
    with tf.io.TFRecordWriter(path, "GZIP") as writer:
        for i in range(n):
            feature = {}
            for key, values in columns.items():
                dtype = RAW_SPECS[key].dtype
                if dtype == tf.string:
                    feature[key] = tf.train.Feature(
                        bytes_list=tf.train.BytesList(value=[str(values[i]).encode()])
                    )
                elif dtype == tf.float32:
                    feature[key] = tf.train.Feature(
                        float_list=tf.train.FloatList(value=[float(values[i])])
                    )
                else:
                    feature[key] = tf.train.Feature(
                        int64_list=tf.train.Int64List(value=[int(values[i])])
                    )
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    return path
