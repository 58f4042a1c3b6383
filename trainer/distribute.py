"""The ``tf.distribute`` strategy the Trainer trains under (``TrainerConfig.strategy``).

- ``"default"``: one device (TensorFlow's default strategy).
- ``"mirrored"``: ``MirroredStrategy`` over this machine's GPUs (a multi-GPU Vertex AI
  Training machine), or its CPU's logical devices when it has none (one, unless
  ``tf.config.set_logical_device_configuration`` made more: how the tests mirror).
- ``"multi_worker_mirrored"``: ``MultiWorkerMirroredStrategy`` across the tasks of
  ``TF_CONFIG`` (Vertex AI Training sets it for every replica of a worker pool: a ``chief``
  and ``worker`` tasks). Every task runs the same ``run_fn``; variables stay in sync by
  all-reducing gradients, each task reads its shard of every dataset (tf.data's auto-shard).
- ``"auto"`` (the default): ``multi_worker_mirrored`` when ``TF_CONFIG`` names more than one
  task, ``mirrored`` when the machine has more than one GPU, else ``default``.

Under any of them the global batch is ``batch_size`` (each of N replicas takes 1/N of it)
and a step's loss is the global batch's mean, so one configuration trains the same model on
1 device or N (``JointModel.train_step`` divides each replica's loss by N).

``MultiWorkerMirroredStrategy`` configures TensorFlow's collective ops, which must happen
before TensorFlow runs its first op in the process: :func:`make_strategy` is the first thing
``trainer.run.run_fn`` does.
"""

import json
import os

import tensorflow as tf

from trainer.config import STRATEGIES

_TASK_TYPES = ("chief", "worker")  # the tasks that train (an "evaluator" task would not)


def cluster_tasks(environ=os.environ) -> int:
    """Training tasks (chief + workers) in ``TF_CONFIG``; 0 when it is unset or names none.

    Raises:
      ValueError: when ``TF_CONFIG`` is set but is not a JSON object with a ``cluster``.
    """
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return 0
    try:
        config = json.loads(text)
    except ValueError as err:
        raise ValueError(f"TF_CONFIG is not JSON: {err}") from err
    cluster = config.get("cluster") if isinstance(config, dict) else None
    if not isinstance(cluster, dict):
        raise ValueError(f"TF_CONFIG has no cluster object: {text[:200]!r}")
    return sum(len(cluster.get(task, []) or []) for task in _TASK_TYPES)


def resolve(name: str, environ=os.environ) -> str:
    """The strategy ``name`` stands for here (``"auto"`` decided, the others as given)."""
    if name not in STRATEGIES:
        raise ValueError(f"trainer config: strategy must be one of {', '.join(STRATEGIES)}")
    if name != "auto":
        return name
    if cluster_tasks(environ) > 1:
        return "multi_worker_mirrored"
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "default"


def make_strategy(name: str, environ=os.environ) -> tf.distribute.Strategy:
    """The strategy ``name`` resolves to (:func:`resolve`).

    Raises:
      RuntimeError: ``multi_worker_mirrored`` after TensorFlow already ran an op in this
        process (collective ops are configured at program start).
      ValueError: an unknown name, or ``multi_worker_mirrored`` without a cluster in
        ``TF_CONFIG``.
    """
    resolved = resolve(name, environ)
    if resolved == "default":
        return tf.distribute.get_strategy()
    if resolved == "mirrored":
        # The GPUs; without any, the CPU's logical devices (one, unless configured as more).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if cluster_tasks(environ) < 1:
        raise ValueError(
            "trainer config: strategy multi_worker_mirrored needs TF_CONFIG naming the "
            "cluster's chief/worker tasks (Vertex AI Training sets it for a worker pool)"
        )
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    except RuntimeError as err:
        raise RuntimeError(
            "multi_worker_mirrored: the strategy must be created before TensorFlow runs "
            f"anything in the process ({err})"
        ) from err


def describe(strategy: tf.distribute.Strategy) -> dict:
    """What ``training.json`` records of the strategy: its name in ``STRATEGIES`` (else its
    class), replicas in sync, and the task (``"worker:1"``) in a multi-worker cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    task = None
    if resolver is not None and getattr(resolver, "task_type", None):
        task = f"{resolver.task_type}:{resolver.task_id}"
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        name = "multi_worker_mirrored"
    elif isinstance(strategy, tf.distribute.MirroredStrategy):
        name = "mirrored"
    else:
        name = "default" if strategy is tf.distribute.get_strategy() else type(strategy).__name__
    return {
        "strategy": name,
        "replicas": int(strategy.num_replicas_in_sync),
        "task": task,
    }


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the Trainer's outputs: always, except a non-chief task of
    a multi-worker cluster (the chief, or worker 0 of a cluster without one, writes)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief
