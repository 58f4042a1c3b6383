"""Loading a pushed SavedModel, with ScaNN's custom ops registered when it needs them.

A retrieval SavedModel holding a ScaNN index (``publish.index``) uses ``Scann>*`` custom ops,
which exist in a process only after ``import scann``. ScaNN is an optional heavy dependency:
without it brute-force SavedModels load the same way, and one with a ScaNN index raises
:data:`SCANN_MISSING`.
"""

import os

import tensorflow as tf

SCANN_MISSING = "pip install scann==1.3.2 to use the ScaNN index"


def import_scann() -> None:
    """Registers ScaNN's TensorFlow ops in this process.

    Raises:
      ImportError: saying how to install scann, when it is not installed.
    """
    try:
        import scann  # noqa: F401  (registers the Scann>* TensorFlow ops)
    except ImportError as err:
        raise ImportError(SCANN_MISSING) from err


def load_saved_model(path: str | os.PathLike):
    """``tf.saved_model.load`` that first registers ScaNN's ops when scann is installed.

    Args:
      path: SavedModel directory.

    Returns:
      The loaded object (``.signatures`` holds the serving signatures).

    Raises:
      ImportError: if the SavedModel needs ScaNN's ops and scann is not installed.
    """
    try:
        import_scann()
        have_scann = True
    except ImportError:
        have_scann = False
    try:
        return tf.saved_model.load(os.fspath(path))
    except (RuntimeError, ValueError, tf.errors.NotFoundError) as err:
        if have_scann or "Scann" not in str(err):
            raise
        raise ImportError(f"{path} holds a ScaNN index: {SCANN_MISSING}") from err
