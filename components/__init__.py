"""TFX components of movierec: ExampleGen, Evaluator, Pusher and their plain helpers."""

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
