"""Shared test setup: movierec's packages set TF_USE_LEGACY_KERAS before TensorFlow loads."""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads
