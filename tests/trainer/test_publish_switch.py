"""After publishing, the trainer hands the switch to serving's CLI command and reports its failure in one line."""

from __future__ import annotations

import pytest

from streamrec.errors import StoreUnavailableError
from trainer.export.triton import switch_serving


def test_failed_switch_names_the_command_and_the_server() -> None:
    with pytest.raises(StoreUnavailableError) as info:
        switch_serving("http://127.0.0.1:9", ["no-such-command"], timeout_s=60)
    message = str(info.value)
    assert "'streamrec no-such-command' failed against http://127.0.0.1:9" in message
    assert "\n" not in message


def test_successful_command_is_reported() -> None:
    assert switch_serving("http://127.0.0.1:9", ["config"], timeout_s=60) == ["config"]
