"""Serving side of movierec: the top-k index, the retrieval SavedModel and the push to TF Serving.

The Pusher component (``components/pusher.py``) and the ``movierec`` CLI's client use this
package; nothing in it runs during training.
"""

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
