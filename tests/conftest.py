"""Shared test setup: movierec's packages set TF_USE_LEGACY_KERAS before TensorFlow loads."""

import trainer  # noqa: F401  (must run before any test module imports TensorFlow)
