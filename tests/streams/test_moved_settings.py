"""Settings the worker once read for itself and every component now shares: an old variable stops the worker
with the name of the new one, instead of being ignored."""

from __future__ import annotations

import pytest

from streamrec.errors import ConfigError
from streams.settings import MOVED_TO_CORE_SETTINGS, StreamsSettings


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_TO_CORE_SETTINGS.items()))
def test_a_moved_variable_names_its_shared_replacement(monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> None:
    monkeypatch.setenv(old, "600")
    with pytest.raises(ConfigError, match=new):
        StreamsSettings.load()


def test_the_skew_bound_is_no_worker_setting_any_more() -> None:
    assert "max_future_skew_s" not in StreamsSettings.model_fields
