"""Logging configured once: third-party request and import chatter stays out of INFO output."""

from __future__ import annotations

import io
import logging

from streamrec import logging as streamrec_logging


def test_chatty_libraries_are_quiet_at_info_and_speak_at_debug() -> None:
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    try:
        streamrec_logging.configure("test", level="info", stream=io.StringIO())
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert logging.getLogger("streamrec.anything").isEnabledFor(logging.INFO)
        streamrec_logging.configure("test", level="debug", stream=io.StringIO())
        assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "streamrec"]:
            root.removeHandler(handler)
        root.setLevel(saved[0])
        for handler in saved[1]:
            if handler not in root.handlers:
                root.addHandler(handler)
        for name in streamrec_logging.CHATTY_LIBRARIES:
            logging.getLogger(name).setLevel(logging.NOTSET)
