"""Request validation of the product endpoints: JSON bodies and query strings to typed args.

``serving.server`` calls :func:`parse_recommend`, :func:`parse_rate` and
:func:`parse_similar` before ``serving.service`` runs a model; every problem is a 400
:class:`ApiError` naming the field, so no client input reaches a model malformed. The limits
here are also the ones ``serving.openapi`` documents.
"""

import json
import math
import sys
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


def parse_json(body: bytes) -> Any:
    """A request body as JSON; any body a client can send that is not JSON is a 400 naming why.

    Accepted as ``json.loads`` does, except numbers JSON can write but this server cannot
    hold: an integer of more than :data:`MAX_INT_DIGITS` digits (no dtype nor field takes
    one). A float literal that overflows a double (``1e400``) is an infinite
    :class:`OverflowedNumber`, rejected by the field or input it is in. The bare tokens ``NaN``,
    ``Infinity`` and ``-Infinity`` are accepted everywhere, since TF Serving takes them in
    ``:predict`` float inputs; the product endpoints have no float field, so there they are
    a wrong type of their field. Lone surrogates (``"\\ud800"``) parse; the fields that
    hold text reject them.

    Nesting is bounded by the recursion limit of ``json``'s C scanner (about 1,000 deep),
    which raises instead of overflowing the stack; ``:predict`` takes at most rank 32.

    Raises:
      ApiError: 400 for an empty body, invalid UTF-8, malformed JSON, nesting too deep for
        the scanner, or one of the numbers above.
    """
    if not body:
        raise bad_request("the request needs a JSON body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise bad_request(f"the body is not UTF-8: {err.reason} at byte {err.start}") from err
    try:
        return json.loads(text, parse_int=_parse_int, parse_float=_parse_float)
    except _BadNumber as err:
        raise bad_request(f"the body has {err}") from err
    except json.JSONDecodeError as err:
        where = f"line {err.lineno} column {err.colno}"
        raise bad_request(f"malformed JSON: {err.msg} at {where}") from err
    except RecursionError as err:  # json's C scanner stops at the recursion limit
        raise bad_request(
            f"malformed JSON: nested too deeply (at most about {sys.getrecursionlimit()})"
        ) from err
    except ValueError as err:  # no client input should get here
        raise bad_request(f"malformed JSON: {err}") from err


# No dtype :predict takes holds more than 20 digits, nor does any product field.
MAX_INT_DIGITS = 100


class _BadNumber(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _BadNumber(
            f"an integer of {len(text.lstrip('-'))} digits ({text[:12]}...); "
            f"at most {MAX_INT_DIGITS} digits"
        )
    return int(text)


class OverflowedNumber(float):
    """A JSON number literal beyond a double (``1e400``): infinite, as ``json`` makes it,
    but told apart from the ``Infinity`` token, so ``:predict`` can name the input it
    overflows and a product field calls it a non-finite number."""

    def __new__(cls, text: str):
        number = super().__new__(cls, text)
        number.text = text if len(text) <= 24 else f"{text[:20]}..."
        return number


def _parse_float(text: str) -> float:
    value = float(text)
    return OverflowedNumber(text) if math.isinf(value) else value
