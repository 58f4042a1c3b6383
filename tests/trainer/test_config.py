"""Strict TrainerConfig types: every bad ``--trainer-config`` / custom_config value is a
ValueError naming the field (``pipeline.flags`` turns it into exit 2), never a traceback or
a silently different value."""

import dataclasses
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trainer.config import TrainerConfig

FIELDS = [f.name for f in dataclasses.fields(TrainerConfig)]


@pytest.mark.parametrize(
    "text, message",
    [
        ("[1, 2]", "must be a JSON object of field -> value, got an array"),
        ('"epochs"', "must be a JSON object of field -> value, got a string"),
        ("3", "must be a JSON object of field -> value, got a number"),
        ('{"embedding_dim": Infinity}', "embedding_dim=inf is not an int"),
        ('{"embedding_dim": NaN}', "embedding_dim=nan is not an int"),
        ('{"embedding_dim": 32.5}', "embedding_dim=32.5 is not an int"),
        ('{"embedding_dim": true}', "embedding_dim=True is not an int"),
        ('{"embedding_dim": 0}', "embedding_dim must be > 0, got 0"),
        ('{"embedding_dim": 1' + "0" * 30 + "}", "embedding_dim must be in [1, "),
        ('{"sampling_correction": "false"}', "unknown keys ['sampling_correction']"),
        ('{"refit": "false"}', "refit='false' is not a bool (true or false)"),
        ('{"refit": 0}', "refit=0 is not a bool"),
        ('{"blend_weights": "0.5"}', "blend_weights='0.5' is not a tuple"),
        ('{"ease_lambdas": "64"}', "ease_lambdas='64' is not a tuple"),
        ('{"ease_lambdas": {"a": 1}}', "ease_lambdas={'a': 1} is not a tuple"),
        ('{"ease_lambdas": ["1", true]}', "ease_lambdas=[" + "'1', True] is not a tuple"),
        ('{"ease_lambdas": []}', "ease_lambdas must be a non-empty tuple"),
        ('{"ease_lambdas": [1, -2]}', "ease_lambdas must be finite and > 0.0"),
        ('{"ease_lambdas": [1e400]}', "ease_lambdas must be finite and > 0.0"),
        ('{"learning_rate": NaN}', "learning_rate must be finite and > 0.0, got nan"),
        ('{"learning_rate": -0.001}', "learning_rate must be finite and > 0.0, got -0.001"),
        ('{"learning_rate": 0}', "learning_rate must be finite and > 0.0, got 0.0"),
        ('{"rating_learning_rate": Infinity}', "rating_learning_rate must be finite"),
        ('{"learning_rate": "nan"}', "learning_rate='nan' is not a float"),
        ('{"learning_rate": "1e-3x"}', "learning_rate='1e-3x' is not a float"),
        ('{"learning_rate": null}', "learning_rate=None is not a float"),
        ('{"l2": -1}', "l2 must be finite and >= 0.0, got -1.0"),
        ('{"dropout": 1}', "dropout must be in [0.0, 1.0), got 1.0"),
        ('{"validation_fraction": 0}', "validation_fraction must be in (0.0, 1.0), got 0.0"),
        ('{"validation_fraction": 1.0}', "validation_fraction must be in (0.0, 1.0)"),
        ('{"seed": -1}', "seed must be in [0, 4294967295], got -1"),
        ('{"rerank": 1}', "rerank=1 is not a str"),
        ('{"rerank": "maybe"}', "rerank must be one of auto, on, off, got 'maybe'"),
        ('{"epochs": "3.5"}', "epochs='3.5' is not an int"),
        ('{"epochs": [3]}', "epochs=[3] is not an int"),
    ],
)
def test_bad_trainer_configs_are_value_errors_naming_the_field(text, message):
    with pytest.raises(ValueError) as err:
        TrainerConfig.from_custom_config(json.loads(text))
    assert message in str(err.value)
    assert str(err.value).startswith("trainer config: ")


def test_good_values_and_the_coercions_kept():
    cfg = TrainerConfig.from_custom_config(
        {
            "epochs": "30",  # a string of digits is still an int (test_trainer keeps it)
            "learning_rate": "2e-3",
            "dropout": 0,
            "blend_weights": [0, 1],
            "ease_lambdas": (5,),
            "refit": True,
            "rerank": "off",
        }
    )
    assert (cfg.epochs, cfg.learning_rate, cfg.dropout) == (30, 0.002, 0.0)
    assert cfg.blend_weights == (0.0, 1.0) and cfg.ease_lambdas == (5.0,)
    assert type(cfg.dropout) is float and type(cfg.epochs) is int
    assert TrainerConfig.from_custom_config(None) == TrainerConfig()
    assert TrainerConfig.from_custom_config(cfg.to_dict()) == cfg
    # Built directly (tests do, from to_dict()): lists become tuples, the checks still run.
    assert TrainerConfig(**cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="hidden_dim must be an integer, got '16'"):
        TrainerConfig(hidden_dim="16")
    with pytest.raises(ValueError, match="refit must be a bool, got a string"):
        TrainerConfig(refit="false")
    with pytest.raises(ValueError, match="blend_weights must be a non-empty tuple"):
        TrainerConfig(blend_weights="0.5")
    with pytest.raises(ValueError, match="embedding_dim must be an integer, got inf"):
        TrainerConfig(embedding_dim=math.inf)


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.sampled_from(["30", "1e-3", "nan", "inf", "true", "false", "64", "auto"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(config=st.dictionaries(st.sampled_from(FIELDS), _JSON, max_size=3) | _JSON)
def test_any_json_is_a_config_or_a_value_error_naming_the_field(config):
    try:
        cfg = TrainerConfig.from_custom_config(config)
    except ValueError as err:
        message = str(err)
        assert message.startswith("trainer config: ")
        if isinstance(config, dict) and config:
            assert any(name in message for name in config) or "unknown keys" in message
        return
    assert TrainerConfig.from_custom_config(cfg.to_dict()) == cfg
    for name in ("learning_rate", "rating_learning_rate"):
        assert math.isfinite(getattr(cfg, name)) and getattr(cfg, name) > 0
    assert isinstance(cfg.refit, bool) and cfg.rerank in ("auto", "on", "off")
