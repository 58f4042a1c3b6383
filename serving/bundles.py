"""Bundles: the versions of the three models pushed together, served together or not at all.

The Pusher pushes ``retrieval``, ``retrieval_brute_force`` and ``ranking`` one after another,
then writes a bundle manifest, last, into ``<serving_dir>/bundles/<id>.json``::

    {"bundle": 3, "versions": {"retrieval": 3, "retrieval_brute_force": 3, "ranking": 3},
     "fingerprints": {"ranking": {"trained": "...", "vocabulary": "..."},
                      "retrieval": {"trained": "...", "vocabulary": "...", "catalogue": "..."},
                      ...}}

Fingerprints are SHA-256 digests read from each version's variables checkpoint (no graph is
loaded): ``trained``, of every variable of the trained model (the ranking model's, and the
copy each retrieval model holds under ``trained/``), so two models agree only if they come
from the same training run; ``vocabulary``, of its user and movie vocabularies; ``catalogue``,
of a retrieval model's catalogue movie ids. A bundle is consistent when every model's
fingerprints are the ones its manifest records, all models share ``trained`` and
``vocabulary``, and the retrieval models share ``catalogue`` (:func:`check`).

``movierec serve`` (``serving.store``) switches only to a whole, consistent bundle once a
serving directory holds any, and reports the bundle it serves in every response. Stock TF
Serving knows nothing of bundles and keeps loading each model's newest version.
"""

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path

BUNDLES_DIR = "bundles"
HEADER = "X-Movierec-Bundle"  # every response of movierec serve names the bundle it used
TRAINED_PREFIX = "trained/"  # where a retrieval model holds the trained model's variables
_USER_IDS = "user_ids/.ATTRIBUTES/VARIABLE_VALUE"
_MOVIE_IDS = "movie_ids/.ATTRIBUTES/VARIABLE_VALUE"
_CATALOGUE = "catalogue_movie_ids/.ATTRIBUTES/VARIABLE_VALUE"
_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_ID = re.compile(r"([0-9]+)\.json")


@dataclasses.dataclass(frozen=True)
class Bundle:
    """One manifest: ``id``, model name -> version, model name -> fingerprints."""

    id: int
    versions: Mapping[str, int]
    fingerprints: Mapping[str, Mapping[str, str]]

    def to_json(self) -> str:
        return json.dumps(
            {
                "bundle": self.id,
                "versions": dict(self.versions),
                "fingerprints": {k: dict(v) for k, v in self.fingerprints.items()},
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str, where: str) -> "Bundle":
        """Parses a manifest; ``ValueError`` naming ``where`` and the field if malformed."""
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{where}: not JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"{where}: a bundle manifest is a JSON object")
        bundle, versions, prints = (
            data.get("bundle"),
            data.get("versions"),
            data.get("fingerprints"),
        )
        if not isinstance(bundle, int) or isinstance(bundle, bool):
            raise ValueError(f"{where}: 'bundle' must be an integer, got {bundle!r}")
        if not isinstance(versions, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in versions.values()
        ):
            raise ValueError(f"{where}: 'versions' must map model names to integers")
        if not isinstance(prints, dict) or not all(isinstance(v, dict) for v in prints.values()):
            raise ValueError(f"{where}: 'fingerprints' must map model names to objects")
        return cls(bundle, versions, prints)


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for array in arrays:
        h.update(repr((array.dtype.str, array.shape)).encode())
        if array.dtype == object:
            for value in array.reshape(-1):
                h.update(len(value).to_bytes(8, "little") + value)
        else:
            h.update(array.tobytes())
    return h.hexdigest()


def fingerprints(version_dir: str | os.PathLike) -> dict[str, str]:
    """The fingerprints of one SavedModel version directory, from its variables checkpoint.

    Raises:
      ValueError: naming the directory if it holds no trained model's vocabularies.
    """
    import tensorflow as tf

    reader = tf.train.load_checkpoint(
        os.path.join(os.fspath(version_dir), "variables", "variables")
    )
    keys = set(reader.get_variable_to_shape_map()) - {_GRAPH_KEY}
    prefix = TRAINED_PREFIX if f"{TRAINED_PREFIX}{_USER_IDS}" in keys else ""
    if f"{prefix}{_USER_IDS}" not in keys or f"{prefix}{_MOVIE_IDS}" not in keys:
        raise ValueError(f"{version_dir}: no user and movie vocabularies in its variables")
    # The ranking model's variables are all the trained model's; a retrieval model holds the
    # same ones under trained/ (same names after the prefix, so the same sorted order).
    trained = sorted(k for k in keys if k.startswith(prefix))
    out = {
        "trained": _digest(*(reader.get_tensor(k) for k in trained)),
        "vocabulary": _digest(
            reader.get_tensor(f"{prefix}{_USER_IDS}"), reader.get_tensor(f"{prefix}{_MOVIE_IDS}")
        ),
    }
    if _CATALOGUE in keys:
        out["catalogue"] = _digest(reader.get_tensor(_CATALOGUE))
    return out


def check(bundle: Bundle, found: Mapping[str, Mapping[str, str]]) -> str | None:
    """Why the models ``found`` (name -> their fingerprints on disk) cannot serve as
    ``bundle``; None when they can."""
    for name, prints in found.items():
        recorded = bundle.fingerprints.get(name)
        if recorded is not None and dict(recorded) != dict(prints):
            differ = sorted(
                k for k in set(recorded) | set(prints) if recorded.get(k) != prints.get(k)
            )
            return (
                f"{name} version {bundle.versions[name]} does not match bundle {bundle.id}'s "
                f"manifest ({', '.join(differ)} differ)"
            )
    for key, what in (("vocabulary", "vocabularies"), ("trained", "training runs")):
        values = {name: prints.get(key) for name, prints in found.items()}
        if len(set(values.values())) > 1:
            groups = ", ".join(f"{name} v{bundle.versions[name]}" for name in sorted(values))
            return f"bundle {bundle.id}: the {what} of {groups} differ"
    catalogues = {n: p["catalogue"] for n, p in found.items() if "catalogue" in p}
    if len(set(catalogues.values())) > 1:
        return f"bundle {bundle.id}: the catalogues of {', '.join(sorted(catalogues))} differ"
    return None


def list_bundles(serving_dir: str | os.PathLike) -> list[int]:
    """The bundle ids under ``<serving_dir>/bundles/``, ascending (``[]`` if none)."""
    path = Path(serving_dir) / BUNDLES_DIR
    if not path.is_dir():
        return []
    return sorted(int(m.group(1)) for p in path.iterdir() if (m := _ID.fullmatch(p.name)))


def read_bundle(serving_dir: str | os.PathLike, bundle_id: int) -> Bundle:
    path = Path(serving_dir) / BUNDLES_DIR / f"{bundle_id}.json"
    bundle = Bundle.from_json(path.read_text(encoding="utf-8"), str(path))
    if bundle.id != bundle_id:
        raise ValueError(f"{path}: says it is bundle {bundle.id}")
    return bundle
