"""The movierec TFX pipeline: factory, local runner and the ``movierec`` CLI."""

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
