"""Typed Trainer hyperparameters, parsed once from the TFX Trainer's ``custom_config``.

``run_fn`` builds a :class:`TrainerConfig` first; nothing else reads ``custom_config``.
"""

import dataclasses
import math
import numbers
import re
from collections.abc import Mapping
from typing import Any

from serving.names import DEFAULT_RETRIEVAL_K

# How the served list is ordered: "auto" re-ranks the retrieval candidates with the learned
# re-ranker only when that beats retrieval order on the validation cut; "off" never re-ranks;
# "on" always does.
RERANK_MODES = ("auto", "on", "off")
# The tf.distribute strategies the Trainer trains under (trainer.distribute says what each is).
STRATEGIES = ("auto", "default", "mirrored", "multi_worker_mirrored")
# The type of the autoencoder's whole-catalogue matmul in training: "auto" takes bfloat16
# where the hardware multiplies it natively (bf16_native), float32 elsewhere.
PRECISIONS = ("auto", "float32", "bfloat16")

# Bounds of the numeric fields: (low, high, low is allowed, high is allowed). Counts and
# widths stay within int32, what TensorFlow shapes and tf.data batch sizes take; the seed
# within what numpy's and TensorFlow's seeding both take.
_INT32_MAX = 2**31 - 1
_COUNT = (1, _INT32_MAX, True, True)
_RATE = (0.0, math.inf, False, False)  # learning rates: finite and > 0
_PENALTY = (0.0, math.inf, True, False)  # L2 penalties: finite and >= 0
_RANGES = {
    "hidden_dim": _COUNT,
    "batch_size": _COUNT,
    "epochs": _COUNT,
    "validate_every": _COUNT,
    "max_steps": _COUNT,
    "validation_users": _COUNT,
    "ease_rank": _COUNT,
    "embedding_dim": _COUNT,
    "rating_batch_size": _COUNT,
    "rating_epochs": _COUNT,
    "candidates": _COUNT,
    "seed": (0, 2**32 - 1, True, True),
    "dropout": (0.0, 1.0, True, False),
    "l2": _PENALTY,
    "learning_rate": _RATE,
    "rating_l2": _PENALTY,
    "rating_learning_rate": _RATE,
    "validation_fraction": (0.0, 1.0, False, False),
    "ease_lambdas": _RATE,
    "blend_weights": (0.0, 1.0, True, True),
}
_INT_TEXT = re.compile(r"[+-]?[0-9]{1,18}")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """Hyperparameters of the joint model (see ``trainer.model``) and how they are chosen.

    The retrieval model is a per-user multinomial autoencoder over the user's history blended
    with a low-rank EASE; the ranking task predicts ratings from biases and a dot product;
    the re-ranker orders the retrieval candidates. Settings marked "chosen" are picked on a
    validation cut of the train split (never on eval), then the model is refit on all of
    train with them.

    Attributes:
      hidden_dim: width of the history encoder (the user tower's hidden layer).
      dropout: share of history items dropped per training step.
      l2: L2 penalty on the encoder and decoder weights (summed squares, per step).
      learning_rate: Adam learning rate of the retrieval model.
      batch_size: users per retrieval training step.
      epochs: most passes over the users; the best multiple of ``validate_every`` is chosen.
      validate_every: epochs between validation checks of the retrieval model.
      max_steps: most training steps of the retrieval model's search. While ``epochs`` of
        the users fit in it the search goes by epochs as above; on more users (fewer, longer
        epochs) it goes by steps instead: ``epochs / validate_every`` checks spread evenly
        over ``max_steps`` steps, and the best check's steps are chosen.
      validation_users: most validation-cut users every choice is measured on (a seeded
        sample when the cut has more), so a check's cost stops growing with the users.
      ease_lambdas: EASE ridge penalties to choose from.
      ease_rank: rank of the EASE item-item weights kept in the towers.
      blend_weights: weights of the autoencoder against EASE to choose from (1 = autoencoder
        only, 0 = EASE only).
      embedding_dim: width of the rating model's user and movie factors.
      rating_l2: penalty on the squared norm of each factor row a rating touches.
      rating_learning_rate: learning rate of the rating model (``trainer.optimizers.LazyAdam``).
      rating_batch_size: ratings per rating training step.
      rating_epochs: most passes over the ratings; the best epoch is chosen.
      rerank: one of ``RERANK_MODES``.
      candidates: movies the retrieval stage hands to the re-ranker (the Pusher's
        retrieval_k).
      validation_fraction: share of each user's train ratings held out for the choices.
      seed: seed of initialisation, shuffling and the validation cut.
      strategy: one of ``STRATEGIES``: the ``tf.distribute`` strategy of training
        (``trainer.distribute``); ``auto`` takes ``TF_CONFIG``'s workers, else the GPUs.
      precision: one of ``PRECISIONS``: the type the autoencoder's whole-catalogue matmul
        (its training steps' main cost) runs in while training; the weights, the softmax and
        every score outside training stay float32.
      refit: train once with the choices recorded in the Trainer's base model (the model
        the Evaluator blessed) instead of choosing; the pipeline's refit Trainer sets it and
        hands it every ingested rating.
    """

    hidden_dim: int = 600
    dropout: float = 0.5
    l2: float = 0.01
    learning_rate: float = 2e-3
    batch_size: int = 512
    epochs: int = 150
    validate_every: int = 10
    max_steps: int = 3000
    validation_users: int = 10_000
    ease_lambdas: tuple[float, ...] = (100.0, 300.0, 1000.0)
    ease_rank: int = 128
    blend_weights: tuple[float, ...] = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    embedding_dim: int = 32
    rating_l2: float = 0.075
    rating_learning_rate: float = 3e-3
    rating_batch_size: int = 1024
    rating_epochs: int = 30
    rerank: str = "auto"
    candidates: int = DEFAULT_RETRIEVAL_K
    validation_fraction: float = 0.2
    seed: int = 42
    strategy: str = "auto"
    precision: str = "float32"
    refit: bool = False

    def __post_init__(self):
        for field in dataclasses.fields(self):  # frozen: normalise through object
            object.__setattr__(
                self, field.name, _check_field(field.name, getattr(self, field.name))
            )
        if self.rerank not in RERANK_MODES:
            raise ValueError(
                f"trainer config: rerank must be one of {', '.join(RERANK_MODES)}, "
                f"got {self.rerank!r}"
            )
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"trainer config: precision must be one of {', '.join(PRECISIONS)}, "
                f"got {self.precision!r}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"trainer config: strategy must be one of {', '.join(STRATEGIES)}, "
                f"got {self.strategy!r}"
            )

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None) -> "TrainerConfig":
        """Builds the config from the Trainer's custom_config dict (or ``--trainer-config``).

        Strict about types: a bool field takes only true/false, a list field only a JSON
        array of numbers, a string field only a string; an int field takes an integer or a
        string of decimal digits (``"30"``), a float field a number or a string of one
        (``"1e-3"``); every number must be finite and in the field's range
        (``__post_init__``).

        Raises:
          ValueError: naming the field, on a key that is not a field, a value of the wrong
            type or out of range, or a config that is not a JSON object (a mapping).
        """
        if custom_config is None:
            custom_config = {}
        if not isinstance(custom_config, Mapping):
            raise ValueError(
                "trainer config: must be a JSON object of field -> value, got "
                f"{_type_name(custom_config)}"
            )
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(custom_config) - set(fields), key=str)
        if unknown:
            raise ValueError(f"trainer config: unknown keys {unknown}; known: {sorted(fields)}")
        kwargs = {name: _coerce(name, value) for name, value in custom_config.items()}
        return cls(**kwargs)

    def train_precision(self) -> str:
        """``precision`` resolved: ``"bfloat16"`` or ``"float32"``."""
        if self.precision == "auto":
            return "bfloat16" if bf16_native() else "float32"
        return self.precision

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-friendly dict (the inverse of from_custom_config)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions that multiply bfloat16


def bf16_native(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this machine multiplies bfloat16 natively: a GPU of compute capability 8.0 or
    later (A100, L4, H100) when TensorFlow sees GPUs, else a CPU with AVX512-BF16 or AMX."""
    import tensorflow as tf  # only where a model is built: the config itself stays light

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capability = tf.config.experimental.get_device_details(gpus[0]).get(
            "compute_capability", (0, 0)
        )
        return tuple(capability) >= (8, 0)
    try:
        with open(cpuinfo) as f:
            flags = next(
                (line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []
            )
    except OSError:
        return False
    return any(flag in flags for flag in _BF16_FLAGS)


def retrieval_length(chosen: dict) -> str:
    """How long the autoencoder trained, from a summary's ``chosen`` dict: "N epochs" or,
    when its search went by steps, "N steps"."""
    if chosen.get("retrieval_steps"):
        return f"{chosen['retrieval_steps']:,} steps"
    return f"{chosen.get('retrieval_epochs')} epochs"


def _kind(name: str) -> type:
    """The type of a field: int, float, tuple (of floats), bool or str."""
    return type(getattr(TrainerConfig, name))


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, numbers.Number):
        return "a number"
    if isinstance(value, str | bytes):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _coerce(name: str, value: Any) -> Any:
    """A custom_config (JSON) value as the field's type; ranges are ``__post_init__``'s.

    Raises:
      ValueError: "trainer config: <name>=<value> is not a <type>".
    """
    kind = _kind(name)
    expected = {
        int: "an int (an integer)",
        float: "a float (a number)",
        tuple: "a tuple (a JSON array of numbers)",
        bool: "a bool (true or false)",
        str: "a str (a string)",
    }[kind]
    error = ValueError(f"trainer config: {name}={_shown(value)} is not {expected}")
    if kind is tuple:
        if not isinstance(value, list | tuple):
            raise error
        return tuple(_number(value_, float, error) for value_ in value)
    if kind is bool or kind is str:
        if not isinstance(value, kind):
            raise error
        return value
    return _number(value, kind, error)


def _number(value: Any, kind: type, error: ValueError) -> int | float:
    if isinstance(value, str):
        text = value.strip()
        pattern = _INT_TEXT if kind is int else _FLOAT_TEXT
        if not pattern.fullmatch(text):
            raise error
        value = kind(text)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise error
    if kind is int:
        if not isinstance(value, numbers.Integral):
            raise error
        return int(value)
    return float(value)


def _check_field(name: str, value: Any) -> Any:
    """``value`` of field ``name`` normalised (ints, floats, tuples of floats), checked.

    Raises:
      ValueError: naming the field when the value has the wrong type or is out of range.
    """
    kind = _kind(name)
    if kind is tuple:
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(
                f"trainer config: {name} must be a non-empty tuple of numbers, got "
                f"{_shown(value)}"
            )
        values = tuple(_checked_number(name, v, float) for v in value)
        if any(not _in_range(name, v) for v in values):
            raise ValueError(
                f"trainer config: {name} must be {_range_text(name)}, got {_shown(value)}"
            )
        return values
    if kind is bool or kind is str:
        if not isinstance(value, kind):
            raise ValueError(
                f"trainer config: {name} must be a {kind.__name__}, got {_type_name(value)}"
            )
        return value
    value = _checked_number(name, value, kind)
    if not _in_range(name, value):
        low, _, low_ok, _ = _RANGES[name]
        if kind is int and low == 1 and low_ok and value < 1:  # a count: say it plainly
            raise ValueError(f"trainer config: {name} must be > 0, got {value}")
        raise ValueError(f"trainer config: {name} must be {_range_text(name)}, got {value}")
    return value


def _checked_number(name: str, value: Any, kind: type) -> int | float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind is int:
        ok = ok and isinstance(value, numbers.Integral)
    if not ok:
        raise ValueError(
            f"trainer config: {name} must be {'an integer' if kind is int else 'a number'}, "
            f"got {_shown(value)}"
        )
    return kind(value)


def _in_range(name: str, value: int | float) -> bool:
    low, high, low_ok, high_ok = _RANGES[name]
    if not math.isfinite(value):
        return False
    return (low <= value if low_ok else low < value) and (
        value <= high if high_ok else value < high
    )


def _range_text(name: str) -> str:
    low, high, low_ok, high_ok = _RANGES[name]
    if high == math.inf:
        return f"finite and {'>=' if low_ok else '>'} {low}"
    return f"in {'[' if low_ok else '('}{low}, {high}{']' if high_ok else ')'}"
