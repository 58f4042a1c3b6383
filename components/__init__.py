"""TFX components of movierec: thin executors over the plain functions of ``data``,
``evaluation`` and ``publish``.

TFX imports ``components.<module>`` to run an executor (in the ``movierec run`` process, a
Beam worker or a Vertex AI container), so this is the executors' entry point and sets
``TF_USE_LEGACY_KERAS`` for them, before any component module loads TensorFlow.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # TFRS needs Keras 2: set before TensorFlow loads
