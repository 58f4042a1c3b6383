"""Typed Trainer hyperparameters, parsed once from the TFX Trainer's ``custom_config``.

``run_fn`` builds a :class:`TrainerConfig` first; nothing else reads ``custom_config``.
"""

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from serving.names import DEFAULT_RETRIEVAL_K

# How the served list is ordered: "auto" re-ranks the retrieval candidates with the learned
# re-ranker only when that beats retrieval order on the validation cut; "off" never re-ranks;
# "on" always does.
RERANK_MODES = ("auto", "on", "off")


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
      ease_lambdas: EASE ridge penalties to choose from.
      ease_rank: rank of the EASE item-item weights kept in the towers.
      blend_weights: weights of the autoencoder against EASE to choose from (1 = autoencoder
        only, 0 = EASE only).
      embedding_dim: width of the rating model's user and movie factors.
      rating_l2: penalty on the squared norm of each factor row a rating touches.
      rating_learning_rate: Adam learning rate of the rating model.
      rating_batch_size: ratings per rating training step.
      rating_epochs: most passes over the ratings; the best epoch is chosen.
      rerank: one of ``RERANK_MODES``.
      candidates: movies the retrieval stage hands to the re-ranker (the Pusher's
        retrieval_k).
      validation_fraction: share of each user's train ratings held out for the choices.
      seed: seed of initialisation, shuffling and the validation cut.
      refit: train once with the choices recorded in the Trainer's base model (the model
        the Evaluator blessed) instead of choosing; the pipeline's refit Trainer sets it and
        hands it every ingested rating.
    """

    hidden_dim: int = 600
    dropout: float = 0.5
    l2: float = 0.01
    learning_rate: float = 1e-3
    batch_size: int = 128
    epochs: int = 150
    validate_every: int = 10
    ease_lambdas: tuple[float, ...] = (100.0, 300.0, 1000.0)
    ease_rank: int = 128
    blend_weights: tuple[float, ...] = (0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    embedding_dim: int = 32
    rating_l2: float = 0.05
    rating_learning_rate: float = 3e-3
    rating_batch_size: int = 256
    rating_epochs: int = 10
    rerank: str = "auto"
    candidates: int = DEFAULT_RETRIEVAL_K
    validation_fraction: float = 0.2
    seed: int = 42
    refit: bool = False

    def __post_init__(self):
        positive = (
            "hidden_dim",
            "batch_size",
            "epochs",
            "validate_every",
            "ease_rank",
            "embedding_dim",
            "rating_batch_size",
            "rating_epochs",
            "candidates",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"trainer config: {name} must be > 0, got {getattr(self, name)}")
        for name in ("learning_rate", "rating_learning_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"trainer config: {name} must be finite and > 0, got {value}")
        for name in ("l2", "rating_l2"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"trainer config: {name} must be finite and >= 0, got {value}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"trainer config: dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(
                "trainer config: validation_fraction must be in (0, 1), got "
                f"{self.validation_fraction}"
            )
        if not self.ease_lambdas or any(
            not (math.isfinite(v) and v > 0) for v in self.ease_lambdas
        ):
            raise ValueError(f"trainer config: ease_lambdas must be > 0, got {self.ease_lambdas}")
        if not self.blend_weights or any(not 0.0 <= w <= 1.0 for w in self.blend_weights):
            raise ValueError(
                f"trainer config: blend_weights must be in [0, 1], got {self.blend_weights}"
            )
        if self.rerank not in RERANK_MODES:
            raise ValueError(
                f"trainer config: rerank must be one of {', '.join(RERANK_MODES)}, "
                f"got {self.rerank!r}"
            )

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None) -> "TrainerConfig":
        """Builds the config from the Trainer's custom_config dict.

        Raises:
          ValueError: on a key that is not a field, or a value of the wrong type.
        """
        custom_config = dict(custom_config or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(custom_config) - set(fields))
        if unknown:
            raise ValueError(f"trainer config: unknown keys {unknown}; known: {sorted(fields)}")
        kwargs = {}
        for name, value in custom_config.items():
            default = getattr(cls, name)
            try:
                if isinstance(default, tuple):
                    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
                        raise TypeError("not a list")
                    kwargs[name] = tuple(type(default[0])(v) for v in value)
                else:
                    kwargs[name] = type(default)(value)
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"trainer config: {name}={value!r} is not a {type(default).__name__}"
                ) from e
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-friendly dict (the inverse of from_custom_config)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }
