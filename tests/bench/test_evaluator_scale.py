"""The Evaluator-at-scale benchmark on a tiny shape: real inputs, the Evaluator's real work."""

import json
import os

import numpy as np

from bench import evaluator_scale, scale
from publish import servables
from serving import names


def test_vocabulary_order_is_by_frequency_and_absent_indices_go_to_the_oov_row():
    indices = np.array([3, 1, 3, 0, 1, 3])
    order = evaluator_scale._by_frequency(indices, 5)
    assert order.tolist() == [3, 1, 0]  # 3 thrice, 1 twice, 0 once; 2, 4 absent
    np.testing.assert_array_equal(evaluator_scale._positions(order, 5), [2, 1, 3, 0, 3])


def test_the_inputs_and_the_evaluators_work_on_a_small_shape(tmp_path):
    users, movies = scale.shape_of(40_000)
    inputs = evaluator_scale.prepare(str(tmp_path), 40_000)
    assert (inputs["users"], inputs["movies"]) == (users, movies)
    total = inputs["train_pairs"] + inputs["eval_pairs"]
    assert abs(inputs["eval_pairs"] / total - evaluator_scale.EVAL_FRACTION) < 0.02
    with open(os.path.join(tmp_path, "servables", servables.SERVABLES_FILE)) as f:
        assert json.load(f)  # the servables the Evaluator serves from
    assert os.path.isdir(servables.model_dir(str(tmp_path / "servables"), names.RETRIEVAL))
    figures = evaluator_scale.evaluate(str(tmp_path))
    assert figures["num_eval"] == inputs["eval_pairs"]
    assert figures["num_catalogue"] == movies
    assert 0 < figures["read_seconds"] < figures["seconds"]
    assert figures["seconds"] >= figures["evaluate_seconds"] + figures["report_seconds"]
    assert (tmp_path / "report.html").stat().st_size > 1000
