"""Run names and config hashes tell every configuration apart: each declared setting, changed alone,
changes the hash, and the name spells it out unless more than four settings already differ (then
the hash alone tells the names apart)."""
from __future__ import annotations

from typing import Any

import pytest

from t3al.adapt.config import SETTINGS, AdaptConfig, make_config
from t3al.adapt.engine.spec import MAX_NAMED_CHANGES, config_hash, run_name, shown_value

PRESET = "thumos14"
BASE = make_config(PRESET)


def _other_value(name: str, value: Any) -> Any:
    """A valid value of setting ``name`` other than ``value``: another choice, the other switch, one
    more, a number inside the declared range."""
    declared = SETTINGS[name]
    if isinstance(value, tuple):
        return value[:-1] if value else declared.choices[:1]
    if declared.choices:
        return next(choice for choice in declared.choices if choice != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if value is None:  # threshold "mean"
        return 0.5
    if declared.high is not None:
        return (value + declared.high) / 2
    return 2 * value if value else 0.5


def _changed(config: AdaptConfig, name: str) -> AdaptConfig:
    return config.replace(**{name: _other_value(name, getattr(config, name))})


def _base_for(name: str, base: AdaptConfig = BASE) -> AdaptConfig:
    """The config a setting is read in: the online protocol's settings only under that protocol."""
    return base.replace(protocol="online") if SETTINGS[name].group == "online" else base


@pytest.mark.parametrize("name", list(SETTINGS))
def test_each_setting_changed_alone_changes_the_hash_and_the_name_shows_it(name):
    base = _base_for(name)
    changed = _changed(base, name)
    assert config_hash(changed) != config_hash(base)
    named = run_name(changed, PRESET)
    if name == "method":
        assert named.startswith(f"{changed.method}_") and not run_name(base, PRESET).startswith(f"{changed.method}_")
    else:
        assert f"_{name}={shown_value(getattr(changed, name))}_" in named


@pytest.mark.parametrize("name", [n for n in SETTINGS if SETTINGS[n].group == "online"])
def test_an_online_setting_leaves_the_other_protocols_runs_as_they_were(name):
    """Settings the reset and stream protocols never read are not part of their record or hash."""
    assert config_hash(_changed(BASE, name)) == config_hash(BASE)
    assert run_name(_changed(BASE, name), PRESET) == run_name(BASE, PRESET)


FIVE_CHANGES = {"steps": 30, "k": 5, "pool": 50, "window": 10, "stride": 10}  # more than the name spells out


@pytest.mark.parametrize("name", [n for n in SETTINGS if n not in FIVE_CHANGES])
def test_a_setting_the_name_leaves_out_still_changes_the_hash_and_the_name(name):
    crowded = _base_for(name, BASE.replace(**FIVE_CHANGES))
    changed = _changed(crowded, name)
    assert len(FIVE_CHANGES) > MAX_NAMED_CHANGES
    assert config_hash(changed) != config_hash(crowded)
    assert run_name(changed, PRESET) != run_name(crowded, PRESET)


def test_the_seed_changes_the_hash_and_the_name_even_when_the_name_is_full():
    crowded = BASE.replace(**FIVE_CHANGES)
    assert config_hash(crowded, seed=1) != config_hash(crowded, seed=0)
    assert run_name(crowded, PRESET, seed=1) != run_name(crowded, PRESET, seed=0)


def test_equal_configurations_share_their_hash_and_name():
    again = make_config(PRESET, steps=60, lr=1e-5)  # the preset's own values, given explicitly
    assert config_hash(again) == config_hash(BASE) and run_name(again, PRESET) == run_name(BASE, PRESET)
