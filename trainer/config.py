"""Typed Trainer hyperparameters, parsed once from the TFX Trainer's ``custom_config``.

``run_fn`` builds a :class:`TrainerConfig` first; nothing else reads ``custom_config``.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
    """Hyperparameters of the joint retrieval + ranking model.

    Attributes:
      embedding_dim: width of the user and movie embeddings.
      epochs: passes over the train split.
      batch_size: examples per step; also the number of in-batch negatives for retrieval.
      learning_rate: Adam learning rate.
      retrieval_weight: weight of the retrieval loss (1/0 = retrieval only).
      ranking_weight: weight of the ranking loss (0/1 = ranking only).
      rating_hidden_units: hidden layer widths of the rating MLP.
      temperature: softmax temperature of the retrieval task.
      l2: L2 regularisation of the embeddings, per example.
      sampling_correction: subtract each movie's log train frequency from its in-batch
        logits (logQ correction), so popular movies are not over-penalised as negatives.
      seed: seed of weight initialisation and shuffling.
    """

    embedding_dim: int = 16
    epochs: int = 5
    batch_size: int = 1024
    learning_rate: float = 0.01
    retrieval_weight: float = 1.0
    ranking_weight: float = 1.0
    rating_hidden_units: tuple[int, ...] = (64, 32)
    temperature: float = 0.2
    l2: float = 0.0
    sampling_correction: bool = True
    seed: int = 42

    def __post_init__(self):
        for name in ("embedding_dim", "epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"trainer config: {name} must be > 0, got {getattr(self, name)}")
        if self.retrieval_weight < 0 or self.ranking_weight < 0:
            raise ValueError("trainer config: loss weights must be >= 0")
        if self.retrieval_weight == 0 and self.ranking_weight == 0:
            raise ValueError("trainer config: retrieval_weight and ranking_weight are both 0")
        if self.temperature <= 0:
            raise ValueError(f"trainer config: temperature must be > 0, got {self.temperature}")

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
                    kwargs[name] = tuple(int(v) for v in value)
                else:
                    kwargs[name] = type(default)(value)
            except (TypeError, ValueError) as e:
                raise ValueError(
                    f"trainer config: {name}={value!r} is not a {type(default).__name__}"
                ) from e
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-friendly dict (the inverse of from_custom_config)."""
        d = dataclasses.asdict(self)
        d["rating_hidden_units"] = list(self.rating_hidden_units)
        return d
