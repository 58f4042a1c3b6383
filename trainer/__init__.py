"""The TFRS model of movierec: Transform preprocessing_fn and the TFX Trainer's run_fn.

TFRS 0.7 needs Keras 2, chosen by ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is first
imported. Each entry point sets it (the ``movierec`` console script, the component executors
in ``components``, the server, the tests' conftest, ``bench``); this package only checks it,
so that a process that forgot fails here with the reason instead of deep inside Keras 3.
"""

import os

if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    raise RuntimeError(
        "movierec's trainer needs Keras 2 (TFRS 0.7): set TF_USE_LEGACY_KERAS=1 in the "
        "environment or the entry point before TensorFlow is imported"
    )
