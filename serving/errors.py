"""The one error type of ``movierec serve``: an HTTP status and a message for the client.

``serving.tf_serving`` and ``serving.service`` raise :class:`ApiError` for anything a request
got wrong (or asked of a model that is not there); ``serving.server`` turns it into
``{"error": message}`` with its status, TF Serving's error body.
"""


class ApiError(Exception):
    """A request that cannot be answered, with the HTTP status that says why.

    Args:
      status: HTTP status code (4xx for the client's input, 503 when no model is loaded).
      message: shown to the client as ``{"error": message}``.
      headers: extra response headers, e.g. ``{"Allow": "GET"}`` for a 405.
    """

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    return ApiError(404, message)
