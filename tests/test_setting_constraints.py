"""Settings declare their constraints as small objects that write their own messages; a method's
notes are data in its TOML."""
from __future__ import annotations

import math

import pytest

from t3al.adapt.config import (SETTINGS, UNPUBLISHED, AdaptConfig, AtLeast, ConfigError, Finite, OneOf, Option,
                               SomeOf, Within, method_values)


@pytest.mark.parametrize("constraint, value, message", [
    (OneOf(("fast", "direct")), "slow", "x must be one of fast, direct; got 'slow'"),
    (SomeOf(("visual", "text")), ("text", "pv", "pt"), "x takes values among visual, text; got pv, pt"),
    (AtLeast(2), 1, "x must be a number >= 2, got 1"),
    (AtLeast(0.0), math.inf, "x must be a number >= 0.0, got inf"),
    (Within(0.0, 1.0, "[0, 1)", upper_open=True), 1.0, "x must be in [0, 1), got 1.0"),
    (Finite(), math.nan, "x must be a finite number, got nan"),
])
def test_each_constraint_refuses_a_value_outside_it_in_its_own_words(constraint, value, message):
    assert not constraint.satisfied_by(value)
    assert constraint.message("x", value) == message


@pytest.mark.parametrize("constraint, text", [
    (OneOf(("fast", "direct")), "one of fast, direct"), (SomeOf(("visual", "text")), "values among visual, text"),
    (AtLeast(2), "a number >= 2"), (Within(0.0, 1.0, "[0, 1)", upper_open=True), "in [0, 1)"),
    (Finite(), "a finite number"), (Option("mean", None), "'mean'"),
])
def test_every_constraint_says_what_it_asks_for_so_any_two_can_share_a_setting(constraint, text):
    assert constraint.describe() == text


def test_a_value_inside_a_constraint_satisfies_it():
    assert OneOf(("a", "b")).satisfied_by("b") and SomeOf(("a", "b")).satisfied_by(("b", "a"))
    assert AtLeast(0).satisfied_by(0) and Within(-1.0, 1.0, "[-1, 1]").satisfied_by(1.0) and Finite().satisfied_by(-3)


def test_the_thresholds_mean_is_a_declared_option_standing_for_the_curves_own_mean():
    declared = SETTINGS["threshold"]
    assert declared.options == {"mean": None} and Option("mean", None) in declared.constraints
    assert AdaptConfig(threshold="mean").threshold is None and AdaptConfig(threshold=0.5).threshold == 0.5


@pytest.mark.parametrize("value, message", [
    ("high", "threshold must be a number or 'mean', got 'high'"),
    (math.nan, "threshold must be a finite number or 'mean', got nan"),
])
def test_a_setting_with_an_option_names_it_in_its_messages(value, message):
    with pytest.raises(ConfigError) as error:
        AdaptConfig(threshold=value)
    assert str(error.value) == message and error.value.setting == "threshold"


def test_no_other_setting_takes_a_word_besides_its_type():
    assert {name for name, declared in SETTINGS.items() if declared.options} == {"threshold"}
    with pytest.raises(ConfigError, match="^presence_threshold must be a number, got 'mean'$"):
        AdaptConfig(presence_threshold="mean")


def test_the_unpublished_note_comes_from_the_methods_toml_and_is_no_setting():
    assert UNPUBLISHED == {"adazad": "AdaZAD's optimiser settings and step count are unpublished; these results use "
                                     "T3AL's preset values."}
    assert "unpublished" not in method_values("adazad", "thumos14")
    with pytest.raises(ConfigError, match=r"^method adazad has no settings for preset nope \(has: thumos14, "
                                          r"activitynet\)$"):
        method_values("adazad", "nope")
