"""``movierec recommend`` (serving.client) returns exactly the ``POST /v1/recommend`` list."""

import pytest

from serving import client


@pytest.mark.parametrize("user", ["u4", "u17", "stranger"], ids=["known", "known2", "unknown"])
def test_the_command_line_and_the_api_serve_the_same_list(live, serving_dir, user):
    _, api = live
    status, body = api.post("/v1/recommend", {"user_id": user, "k": 8})
    assert status == 200
    got = client.recommend(serving_dir, user, 8)
    assert got["recommendations"] == body["recommendations"]
    assert got["known_user"] == body["known_user"] == (user != "stranger")
    assert got.get("fallback") == body.get("fallback")
    assert len(got["recommendations"]) == 8


def test_k_out_of_range_and_an_empty_directory_are_named(serving_dir, tmp_path):
    with pytest.raises(ValueError, match="between 1 and 30"):
        client.recommend(serving_dir, "u1", 31)
    with pytest.raises(FileNotFoundError, match="no pushed retrieval model under"):
        client.recommend(tmp_path, "u1", 5)
