"""Train/eval split strategies: random (hashed), global time cutoff, leave-last-N per user.

Plain Python and numpy: ExampleGen's Beam half (``data.ingest``) plans the split of the kept
ratings (:func:`plan_split`, :func:`time_cutoff`) and writes each batch to the splits
:meth:`SplitPlan.eval_mask` gives it; ``bench`` and tests reproduce ExampleGen's random split
with :func:`split_of`.
"""

import dataclasses
import hashlib
import heapq
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

from trainer import features

if TYPE_CHECKING:
    from data.records import Rating

_Pair = tuple[str, str]  # (user id, movie id)


def split_of(user_id: str, movie_id: str, seed: int, eval_fraction: float) -> str:
    """The split of one rating, from a hash of the pair: same in every run and process.

    Args:
      user_id: the rating's user id.
      movie_id: the rating's movie id.
      seed: changes the assignment of every pair.
      eval_fraction: expected fraction of pairs in the eval split, in [0, 1].

    Returns:
      ``features.EVAL_SPLIT`` or ``features.TRAIN_SPLIT``.

    Raises:
      ValueError: if ``eval_fraction`` is outside [0, 1].
    """
    if not 0.0 <= eval_fraction <= 1.0:
        raise ValueError(f"eval_fraction must be in [0, 1], got {eval_fraction}")
    digest = hashlib.blake2b(f"{seed}:{user_id}:{movie_id}".encode(), digest_size=8).digest()
    uniform = int.from_bytes(digest, "big") / 2.0**64
    return features.EVAL_SPLIT if uniform < eval_fraction else features.TRAIN_SPLIT


# Split kinds of SplitConfig.
SPLIT_RANDOM = "random"  # a hash of (seed, user, movie): see split_of
SPLIT_TIME = "time"  # one global timestamp cutoff
SPLIT_LEAVE_LAST_N = "leave_last_n"  # each user's latest ratings
SPLIT_KINDS = (SPLIT_RANDOM, SPLIT_TIME, SPLIT_LEAVE_LAST_N)
_CUTOFF_KEY = "cutoff_timestamp"  # recorded with the time split's config


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """How ExampleGen assigns kept ratings to the train and eval splits.

    Attributes:
      kind: one of ``SPLIT_KINDS``.
        ``"random"``: each rating by ``split_of(user, movie, seed, eval_fraction)``.
        ``"time"``: ratings after the (1 - eval_fraction) quantile of all kept ratings'
          timestamps are eval; ties at that cutoff stay in train (see ``plan_split``).
        ``"leave_last_n"``: each user's ``leave_last_n`` latest ratings are eval, by timestamp,
          then by movie id (as numbers when they are; the higher id counts as later). A user
          with at most ``leave_last_n`` ratings keeps them all in train: without history
          there is nothing to learn that user from.
      seed: seed of the random split; recorded, unused by the others.
      eval_fraction: in [0, 1]; expected eval share (random) or quantile (time).
      leave_last_n: ratings held out per user (leave_last_n), an integer >= 1.

    Raises:
      ValueError: naming the field, when a value is of the wrong type or out of range.
    """

    kind: str = SPLIT_RANDOM
    seed: int = 42
    eval_fraction: float = 0.2
    leave_last_n: int = 1

    def __post_init__(self):
        if self.kind not in SPLIT_KINDS:
            raise ValueError(f"kind must be one of {SPLIT_KINDS}, got {self.kind!r}")
        if not _is_int(self.seed):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        fraction = self.eval_fraction
        if not (_is_int(fraction) or isinstance(fraction, float)) or not 0 <= fraction <= 1:
            raise ValueError(f"eval_fraction must be a number in [0, 1], got {fraction!r}")
        if not _is_int(self.leave_last_n) or self.leave_last_n < 1:
            raise ValueError(f"leave_last_n must be an integer >= 1, got {self.leave_last_n!r}")
        # An int fraction (0 or 1) is stored as float, so to_json always writes the same type.
        object.__setattr__(self, "eval_fraction", float(fraction))

    def to_json(self) -> str:
        """``{"kind": ..., "seed": ..., "eval_fraction": ..., "leave_last_n": ...}``."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "SplitConfig":
        """Reads ``to_json``'s output, or a recorded split (``SplitPlan.to_dict`` as JSON).

        A recorded ``cutoff_timestamp`` is dropped: it follows from the data, not the config.
        Missing fields take their defaults.

        Raises:
          ValueError: on invalid JSON, a non-object, an unknown key or an invalid value.
        """
        values = json.loads(text)
        if not isinstance(values, dict):
            raise ValueError(f"a SplitConfig is a JSON object, got {text!r}")
        values.pop(_CUTOFF_KEY, None)
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown SplitConfig fields {unknown} in {text!r}")
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """A SplitConfig made concrete by one pass over the kept ratings.

    Attributes:
      config: the split.
      cutoff_timestamp: ``"time"`` only: ratings with a later timestamp are eval. None for the
        other kinds, and when there was no rating.
      eval_pairs: ``"leave_last_n"`` only: the (user id, movie id) pairs held out.
    """

    config: SplitConfig
    cutoff_timestamp: int | None = None
    eval_pairs: frozenset[_Pair] = frozenset()

    def split_of(self, rating: "Rating") -> str:
        """``features.EVAL_SPLIT`` or ``features.TRAIN_SPLIT`` for one kept rating, by
        :meth:`eval_mask`."""
        is_eval = self.eval_mask([rating.user_id], [rating.movie_id], [rating.timestamp])[0]
        return features.EVAL_SPLIT if is_eval else features.TRAIN_SPLIT

    def eval_mask(
        self, users: Sequence[str], movies: Sequence[str], timestamps: Sequence[int]
    ) -> np.ndarray:
        """The split rule over columns of kept ratings: True where a rating is eval.

        ``"random"``: :func:`split_of` of the pair; ``"time"``: a timestamp after
        ``cutoff_timestamp``; ``"leave_last_n"``: a pair of ``eval_pairs``.

        Args:
          users, movies: the ratings' ids, each ``[n]``. timestamps: their Unix seconds.

        Returns:
          a bool ``[n]`` array.
        """
        config = self.config
        n = len(users)
        if config.kind == SPLIT_TIME:
            return np.asarray(timestamps, np.int64) > self.cutoff_timestamp
        pairs = zip(users, movies, strict=True)
        if config.kind == SPLIT_RANDOM:
            seed, fraction = config.seed, config.eval_fraction
            is_eval = (split_of(u, m, seed, fraction) == features.EVAL_SPLIT for u, m in pairs)
        else:
            is_eval = ((u, m) in self.eval_pairs for u, m in pairs)
        return np.fromiter(is_eval, bool, n)

    def to_dict(self) -> dict:
        """The split used, as recorded: the config's fields and ``cutoff_timestamp``."""
        return {**dataclasses.asdict(self.config), _CUTOFF_KEY: self.cutoff_timestamp}


def plan_split(config: SplitConfig, ratings: Iterable[tuple[str, str, int]]) -> SplitPlan:
    """Scans the kept ratings once for what ``config`` needs to know about all of them.

    ``"time"``: the cutoff is the nearest-rank quantile, the smallest timestamp t such that at
    least ``ceil((1 - eval_fraction) * N)`` of the N ratings (and at least one) have a
    timestamp <= t. eval_fraction is taken as the decimal it prints as, so 0.7 of 10 ratings
    is rank 3, not 4 as float arithmetic gives. Memory: one count per distinct timestamp.

    ``"leave_last_n"``: memory is, per user, a count and at most ``leave_last_n``
    (timestamp, movie) entries, plus the held-out pairs.

    Args:
      config: the split.
      ratings: (user id, movie id, timestamp) of every kept rating, one per pair, any order.

    Returns:
      the plan; ``"random"`` ignores ``ratings``.
    """
    if config.kind == SPLIT_TIME:
        return SplitPlan(config, cutoff_timestamp=_time_cutoff(ratings, config.eval_fraction))
    if config.kind == SPLIT_LEAVE_LAST_N:
        return SplitPlan(config, eval_pairs=_last_n_per_user(ratings, config.leave_last_n))
    return SplitPlan(config)


def _time_cutoff(ratings: Iterable[tuple[str, str, int]], eval_fraction: float) -> int | None:
    return time_cutoff(Counter(timestamp for _, _, timestamp in ratings), eval_fraction)


def time_cutoff(counts: Counter, eval_fraction: float) -> int | None:
    """The time split's cutoff (see :func:`plan_split`) from a count of ratings per timestamp.

    Returns:
      the cutoff timestamp, None when ``counts`` is empty.
    """
    rank = max(1, math.ceil((1 - Fraction(repr(eval_fraction))) * counts.total()))
    seen = 0
    for timestamp in sorted(counts):
        seen += counts[timestamp]
        if seen >= rank:
            return timestamp
    return None  # no rating


def _last_n_per_user(ratings: Iterable[tuple[str, str, int]], n: int) -> frozenset[_Pair]:
    num_ratings: Counter = Counter()
    latest: dict[str, list[tuple[int, int, str]]] = {}  # user -> min-heap of its n latest
    for user_id, movie_id, timestamp in ratings:
        num_ratings[user_id] += 1
        heap = latest.setdefault(user_id, [])
        entry = (timestamp, *_movie_order(movie_id))
        if len(heap) < n:
            heapq.heappush(heap, entry)
        else:
            heapq.heappushpop(heap, entry)
    return frozenset(
        (user_id, movie_id)
        for user_id, heap in latest.items()
        if num_ratings[user_id] > n
        for _, _, _, movie_id in heap
    )


def _movie_order(movie_id: str) -> tuple[int, int, str]:
    """Numeric ids compare as numbers (``"9" < "10"``), any other id after them as text."""
    if movie_id.isdigit():
        return 0, int(movie_id), movie_id
    return 1, 0, movie_id
