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
    missing = [n for n in (names.RETRIEVAL, names.RANKING) if n not in store.snapshot.views]
    if missing:
        raise FileNotFoundError(
            f"no loadable pushed {' or '.join(missing)} model under {serving_dir}; "
            "run `movierec run` first"
        )
    product = service.product_of(store.snapshot)
    try:
        return service.recommend(product, str(user_id), k)
    except service.ApiError as e:
        raise ValueError(e.message) from e
