"""The TFRS model of movierec: Transform preprocessing_fn and the TFX Trainer's run_fn.

This package is also the single place that sets ``TF_USE_LEGACY_KERAS``: TFRS 0.7 needs
Keras 2, and the switch only works before TensorFlow is first imported. Every other package
of the project imports ``trainer`` first for that reason.
"""

import os
import sys

if "tensorflow" in sys.modules and os.environ.get("TF_USE_LEGACY_KERAS") != "1":
    raise RuntimeError(
        "TensorFlow was imported before movierec could set TF_USE_LEGACY_KERAS=1 (TFRS needs "
        "Keras 2). Import movierec's packages first or export TF_USE_LEGACY_KERAS=1."
    )
os.environ["TF_USE_LEGACY_KERAS"] = "1"
