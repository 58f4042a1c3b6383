"""The OpenAPI 3 description of ``movierec serve``, served at ``GET /openapi.json``.

``serving.server`` calls :func:`build_spec` with the current snapshot, so the model names
and the largest ``k`` are those being served; the fuzz test (``tests/serving/test_fuzz.py``)
generates requests from it and checks every answer against it.
"""

from serving import names, service, tf_serving, validation
from serving.store import Snapshot

_ERROR = {"$ref": "#/components/schemas/Error"}
_ID = {"type": "string", "minLength": 1, "maxLength": validation.MAX_ID_LENGTH}
_VERSIONS = {
    "type": "object",
    "additionalProperties": {"type": "integer", "minimum": 0},
    "description": "model name -> the version that answered",
}


def build_spec(snapshot: Snapshot) -> dict:
    """The OpenAPI 3.0 document of every endpoint, for the models ``snapshot`` serves.

    Args:
      snapshot: the store's current snapshot (model names, the retrieval model's k).

    Returns:
      The document as a JSON-able dict.
    """
    model_names = sorted(snapshot.models) or list(names.MODEL_NAMES)
    retrieval = snapshot.views.get(names.RETRIEVAL)
    max_k = retrieval.k if retrieval is not None else names.DEFAULT_RETRIEVAL_K
    ranking = snapshot.views.get(names.RANKING)
    # Examples that answer 200 from the models being served (fuzzers try them first).
    user = min(ranking.users) if ranking is not None and ranking.users else "1"
    movie = str(ranking.movies[0]) if ranking is not None and len(ranking.movies) else "1"
    model = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"enum": model_names},
        "example": names.RANKING,
    }
    version = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
    }
    paths = {
        "/healthz": {"get": _op("Liveness: the process answers.", "Health")},
        "/readyz": {"get": _op("Readiness: retrieval and ranking are loaded.", "Ready")},
        "/openapi.json": {"get": _op("This document.", None)},
        "/v1/recommend": {
            "post": _op(
                "Top-k movies for a user: ScaNN retrieval of the candidate pool, re-ranked by "
                "the ranking model's predicted rating, best first. Unknown users get the most "
                "rated movies, flagged fallback=popularity.",
                "RecommendResponse",
                body=_recommend_request(max_k),
                example={"user_id": user, "k": validation.DEFAULT_K, "exclude_seen": True},
            )
        },
        "/v1/rate": {
            "post": _op(
                "The ranking model's predicted rating of a movie by a user.",
                "RateResponse",
                body={"$ref": "#/components/schemas/RateRequest"},
                example={"user_id": user, "movie_id": movie},
            )
        },
        "/v1/movies/{movie_id}/similar": {
            "get": _op(
                "The movies whose learned embeddings are most cosine-similar.",
                "SimilarResponse",
                params=[
                    {
                        "name": "movie_id",
                        "in": "path",
                        "required": True,
                        "schema": _ID,
                        "example": movie,
                    },
                    {
                        "name": "k",
                        "in": "query",
                        "required": False,
                        "schema": {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": validation.MAX_SIMILAR_K,
                            "default": validation.DEFAULT_K,
                        },
                    },
                ],
            )
        },
    }
    for prefix, params in (
        ("/v1/models/{name}", [model]),
        ("/v1/models/{name}/versions/{version}", [model, version]),
    ):
        paths[prefix] = {"get": _op("TF Serving model status.", "ModelStatus", params=params)}
        paths[f"{prefix}/metadata"] = {
            "get": _op(
                "TF Serving model metadata (signature defs).", "ModelMetadata", params=params
            )
        }
        paths[f"{prefix}:predict"] = {
            "post": _op(
                "TF Serving predict, row (instances) or columnar (inputs) format.",
                "PredictResponse",
                params=params,
                body={"$ref": "#/components/schemas/PredictRequest"},
                example={"instances": [{"user_id": user, "movie_id": movie}]},
            )
        }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "movierec serve",
            "version": "1",
            "description": "TF Serving's REST API over the pushed models, and recommendation "
            'endpoints. Errors are {"error": message}.',
        },
        "paths": paths,
        "components": {"schemas": _SCHEMAS},
    }


def _op(summary: str, response: str | None, params=None, body=None, example=None) -> dict:
    ok = {"type": "object"} if response is None else {"$ref": f"#/components/schemas/{response}"}
    op = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ok}}},
            **{
                code: {"description": text, "content": {"application/json": {"schema": _ERROR}}}
                for code, text in _ERRORS.items()
            },
        },
    }
    if params:
        op["parameters"] = params
    if body is not None:
        media = {"schema": body} if example is None else {"schema": body, "example": example}
        op["requestBody"] = {"required": True, "content": {"application/json": media}}
    return op


_ERRORS = {
    "400": "Malformed JSON, a missing, unknown or mistyped field, a value out of range.",
    "404": "Unknown model, version, movie or path.",
    "405": "Wrong method for this path.",
    "411": "A chunked body (send Content-Length).",
    "413": "A body over 1 MB.",
    "503": "The models this endpoint needs are not loaded yet.",
}


def _recommend_request(max_k: int) -> dict:
    return {
        "type": "object",
        "required": ["user_id"],
        "additionalProperties": False,
        "properties": {
            "user_id": _ID,
            "k": {
                "type": "integer",
                "minimum": 1,
                "maximum": max_k,
                "default": validation.DEFAULT_K,
            },
            "exclude_seen": {"type": "boolean", "default": True},
        },
    }


def _object(required: dict, optional: dict | None = None) -> dict:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }


_JSON_VALUE = {"description": "any JSON value (a tensor in nested lists)"}
_TENSOR_INFO = _object(
    {
        "dtype": {"type": "string"},
        "tensor_shape": _object(
            {
                "dim": {
                    "type": "array",
                    "items": _object({"size": {"type": "string"}, "name": {"type": "string"}}),
                },
                "unknown_rank": {"type": "boolean"},
            }
        ),
    },
    {"name": {"type": "string"}},
)
_SCHEMAS = {
    "Error": _object({"error": {"type": "string"}}),
    "Health": _object({"status": {"type": "string", "enum": ["ok"]}}),
    "Ready": _object(
        {"status": {"type": "string", "enum": ["ready"]}, "model_versions": _VERSIONS},
        {
            "bundle": {
                "type": "integer",
                "minimum": 1,
                "description": "the bundle served (the versions pushed together)",
            },
            "refused_bundles": {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "description": "newer bundle id -> why it is not served",
            },
        },
    ),
    "ModelStatus": _object(
        {
            "model_version_status": {
                "type": "array",
                "minItems": 1,
                "items": _object(
                    {
                        "version": {"type": "string", "pattern": "^[0-9]+$"},
                        "state": {"type": "string", "enum": ["AVAILABLE"]},
                        "status": _object(
                            {
                                "error_code": {"type": "string", "enum": ["OK"]},
                                "error_message": {"type": "string"},
                            }
                        ),
                    }
                ),
            }
        }
    ),
    "ModelMetadata": _object(
        {
            "model_spec": _object(
                {
                    "name": {"type": "string"},
                    "signature_name": {"type": "string"},
                    "version": {"type": "string", "pattern": "^[0-9]+$"},
                }
            ),
            "metadata": _object(
                {
                    "signature_def": _object(
                        {
                            "signature_def": {
                                "type": "object",
                                "additionalProperties": _object(
                                    {
                                        "inputs": {
                                            "type": "object",
                                            "additionalProperties": _TENSOR_INFO,
                                        },
                                        "outputs": {
                                            "type": "object",
                                            "additionalProperties": _TENSOR_INFO,
                                        },
                                        "method_name": {"type": "string"},
                                    }
                                ),
                            }
                        }
                    )
                }
            ),
        }
    ),
    "PredictRequest": {
        "type": "object",
        "description": "Row format (instances) or columnar format (inputs), not both. An "
        "instance is an object keyed by input name, or the bare value when the signature "
        'has one input; binary strings are {"b64": ...}. Float inputs take NaN and '
        "Infinity as TF Serving does. Limits (400 beyond, naming them): at most "
        + ", ".join(f"{n} rows for {m}" for m, n in tf_serving.MAX_ROWS.items())
        + f" per request; an answer of at most {tf_serving.MAX_RESPONSE_BYTES} bytes of "
        "JSON; every input of a signature with the same number of rows and no ragged "
        "lists; numbers within the input's dtype. Every JSON body: integers of at most "
        f"{validation.MAX_INT_DIGITS} digits (a literal beyond a double, 1e400, is "
        "out of range of any float input), nesting less than about 1,000 deep.",
        "properties": {
            "signature_name": {"type": "string", "default": "serving_default"},
            "instances": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "anyOf": [
                        {"type": "string"},
                        {"type": "object", "additionalProperties": {"type": "string"}},
                    ]
                },
            },
            "inputs": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "minItems": 1, "items": {"type": "string"}},
                    {
                        "type": "object",
                        "additionalProperties": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string"},
                        },
                    },
                ]
            },
        },
        "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
    },
    "PredictResponse": {
        "oneOf": [
            _object(
                {"predictions": {"type": "array", "items": _JSON_VALUE}},
            ),
            _object({"outputs": _JSON_VALUE}),
        ]
    },
    "Recommendation": _object(
        {
            "movie_id": {"type": "string"},
            "title": {"type": "string"},
            "ranking_score": {"type": "number", "description": "predicted rating"},
            "retrieval_score": {
                "type": "number",
                "nullable": True,
                "description": "dot product of the two towers; null in the fallback",
            },
            "num_ratings": {"type": "integer", "minimum": 0},
            "seen": {"type": "boolean", "description": "the user rated it in train"},
        }
    ),
    "RecommendResponse": _object(
        {
            "user_id": {"type": "string"},
            "known_user": {"type": "boolean"},
            "exclude_seen": {"type": "boolean"},
            "model_versions": _VERSIONS,
            "recommendations": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/Recommendation"},
            },
        },
        {"fallback": {"type": "string", "enum": [service.POPULARITY]}},
    ),
    "RateRequest": {
        **_object({"user_id": _ID, "movie_id": _ID}),
        "additionalProperties": False,
    },
    "RateResponse": _object(
        {
            "user_id": {"type": "string"},
            "movie_id": {"type": "string"},
            "title": {"type": "string"},
            "rating": {"type": "number"},
            "known_user": {"type": "boolean"},
            "known_movie": {"type": "boolean"},
            "model_version": {"type": "integer", "minimum": 0},
        }
    ),
    "SimilarResponse": _object(
        {
            "movie_id": {"type": "string"},
            "title": {"type": "string"},
            "similarity": {"type": "string", "enum": [service.SIMILARITY]},
            "model_version": {"type": "integer", "minimum": 0},
            "similar": {
                "type": "array",
                "items": _object(
                    {
                        "movie_id": {"type": "string"},
                        "title": {"type": "string"},
                        "score": {"type": "number", "minimum": -1.0001, "maximum": 1.0001},
                    }
                ),
            },
        }
    ),
}
