"""Request validation of the product endpoints: JSON bodies and query strings to typed args.

``serving.server`` calls :func:`parse_recommend`, :func:`parse_rate` and
:func:`parse_similar` before ``serving.service`` runs a model; every problem is a 400
:class:`ApiError` naming the field, so no client input reaches a model malformed. The limits
here are also the ones ``serving.openapi`` documents.
"""

import math
import urllib.parse
from typing import Any

from serving.errors import bad_request

DEFAULT_K = 10
MAX_SIMILAR_K = 100
MAX_ID_LENGTH = 256


def parse_recommend(body: Any, max_k: int) -> tuple[str, int, bool]:
    """``{user_id, k?, exclude_seen?}`` -> ``(user_id, k, exclude_seen)``.

    Raises:
      ApiError: 400 naming the field that is missing, unknown or of the wrong type/range.
    """
    _check_fields(body, required=("user_id",), optional=("k", "exclude_seen"))
    k = body.get("k", DEFAULT_K)
    if not isinstance(k, int) or isinstance(k, bool):
        raise bad_request(f"'k' must be an integer, got {_json_type(k)}")
    check_k(k, max_k)
    exclude_seen = body.get("exclude_seen", True)
    if not isinstance(exclude_seen, bool):
        raise bad_request(f"'exclude_seen' must be true or false, got {_json_type(exclude_seen)}")
    return _id(body, "user_id"), k, exclude_seen


def parse_rate(body: Any) -> tuple[str, str]:
    """``{user_id, movie_id}`` -> ``(user_id, movie_id)``; 400 like :func:`parse_recommend`."""
    _check_fields(body, required=("user_id", "movie_id"), optional=())
    return _id(body, "user_id"), _id(body, "movie_id")


def parse_similar(movie_id: str, query: str) -> tuple[str, int]:
    """The percent-encoded path segment and query string -> ``(movie_id, k)``.

    Raises:
      ApiError: 400 for an empty or overlong id, or a ``k`` that is not an integer.
    """
    try:
        movie_id = urllib.parse.unquote(movie_id, errors="strict")
    except UnicodeDecodeError as err:
        raise bad_request("the movie id in the path is not percent-encoded UTF-8") from err
    _check_id("movie id", movie_id)
    values = urllib.parse.parse_qs(query, keep_blank_values=True).get("k", [str(DEFAULT_K)])
    text = values[-1]
    if len(values) != 1 or not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise bad_request(f"query parameter k must be one positive integer, got {values}")
    return movie_id, int(text)


def check_k(k: int, max_k: int) -> None:
    """Raises a 400 :class:`ApiError` unless ``1 <= k <= max_k``."""
    if not 1 <= k <= max_k:
        raise bad_request(f"k must be between 1 and {max_k}, got {k}")


def _check_fields(body: Any, required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {_json_type(body)}")
    unknown = sorted(set(body) - set(required) - set(optional))
    if unknown:
        raise bad_request(f"unknown field(s) {unknown}; expected {[*required, *optional]}")
    for name in required:
        if name not in body:
            raise bad_request(f"missing required field {name!r}")


def _id(body: dict, name: str) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise bad_request(f'{name!r} must be a string (e.g. "42"), got {_json_type(value)}')
    _check_id(repr(name), value)
    return value


def _check_id(what: str, value: str) -> None:
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise bad_request(f"{what} must have 1 to {MAX_ID_LENGTH} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate escape such as "\ud800"
        raise bad_request(f"{what} is not valid Unicode text") from err


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number" if math.isfinite(value) else "a non-finite number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), "a value")
