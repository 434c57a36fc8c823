"""Tests of the shared config checks (maxent.training.config.check_choice / check_range): the
one-line messages every config raises through them, and the interval ends they honour."""

from __future__ import annotations

import math

import pytest

from maxent.agents.ads import ADSConfig
from maxent.agents.qarl import QARLConfig
from maxent.training.config import ConfigError, check_choice, check_range


def test_check_choice_names_owner_field_choices_and_value():
    check_choice("Cfg", "mode", "b", ("a", "b"))
    with pytest.raises(ConfigError, match=r"^Cfg\.mode must be one of \['a', 'b'\], got 'c'$"):
        check_choice("Cfg", "mode", "c", ("a", "b"))
    with pytest.raises(ConfigError, match=r"^mode must be one of"):
        check_choice("", "mode", "c", ("a", "b"))


@pytest.mark.parametrize("value, kwargs, ok", [
    (0.0, {}, True), (1.0, {}, True), (-0.1, {}, False), (1.1, {}, False),
    (0.0, {"open_low": True}, False), (1.0, {"open_high": True}, False),
    (math.nan, {}, False), (None, {"allow_none": True}, True),
])
def test_check_range_honours_open_and_closed_ends(value, kwargs, ok):
    if ok:
        check_range("Cfg", "p", value, 0, 1, **kwargs)
    else:
        with pytest.raises(ConfigError, match=r"^Cfg\.p must be in [\[(]0, 1[\])]"):
            check_range("Cfg", "p", value, 0, 1, **kwargs)


def test_check_range_message_shows_the_interval_kind_and_none():
    with pytest.raises(ConfigError, match=r"^Cfg\.p must be a probability in \[0, 1\], got 2$"):
        check_range("Cfg", "p", 2, 0, 1, kind="a probability")
    with pytest.raises(ConfigError, match=r"^Cfg\.p must be in \(0, 1\) or None, got 1$"):
        check_range("Cfg", "p", 1, 0, 1, open_low=True, open_high=True, allow_none=True)


def test_agent_configs_raise_through_the_shared_checks():
    # ConfigError is a ValueError, so callers catching ValueError from these configs still do.
    with pytest.raises(ValueError, match=r"ADSConfig\.ema_decay must be in \[0, 1\), got 1\.0"):
        ADSConfig(ema_decay=1.0)
    with pytest.raises(ConfigError, match=r"QARLConfig\.tau must be in \(0, 1\], got 0\.0"):
        QARLConfig(tau=0.0)


def test_require_counts_refuses_non_counts_and_stores_ints():
    assert ADSConfig(n_particles=4.0).n_particles == 4
    assert type(ADSConfig(n_particles=4.0).n_particles) is int
    with pytest.raises(ConfigError, match=r"^ADSConfig\.n_particles must be an integer >= 1, got 0$"):
        ADSConfig(n_particles=0)
