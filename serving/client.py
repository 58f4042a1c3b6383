"""``movierec recommend`` and the closing demo of ``movierec run``: one list, read back.

Loads the newest pushed retrieval and ranking versions of a serving directory (what TF
Serving and ``movierec serve`` would load) and answers with ``serving.service.recommend``,
so the command line returns exactly the list ``POST /v1/recommend`` returns.
"""

from pathlib import Path

from serving import names, service


def recommend(serving_dir: str | Path, user_id: str, k: int = 10) -> dict:
    """The ``/v1/recommend`` response for one user from the newest pushed models.

    Raises:
      FileNotFoundError: naming the directory when no loadable version has been pushed.
      ValueError: when k is out of range.
    """
    serving_dir = Path(serving_dir)
    store = service.open_store(serving_dir, (names.RETRIEVAL, names.RANKING))
    store.poll()
    for name in (names.RETRIEVAL, names.RANKING):
        if name in store.snapshot.views:
            continue
        if not names.list_versions(serving_dir / name):
            raise FileNotFoundError(
                f"no pushed {name} model under {serving_dir / name}; run `movierec run` first"
            )
        raise FileNotFoundError(
            f"no version of the pushed {name} model under {serving_dir / name} loads "
            "(see the log above); push a new one with `movierec run`"
        )
    product = service.product_of(store.snapshot)
    try:
        return service.recommend(product, str(user_id), k)
    except service.ApiError as e:
        raise ValueError(e.message) from e
