"""The local broker's KRaft storage formats whatever its random cluster id looks like."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from streamrec.settings import KafkaSettings, StackSettings
from streamrec.stack import kafka as kafka_module
from streamrec.stack.kafka import KafkaComponent
from tests.conftest import StackHandle


def test_kraft_storage_formats_with_a_cluster_id_starting_with_a_dash(
    stack: StackHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0xF8 encodes to "-" in URL-safe base64: 1 random id in 64 starts so, and the tool read it as an option.
    monkeypatch.setattr(kafka_module.uuid, "uuid4", lambda: uuid.UUID(bytes=b"\xf8" + bytes(15)))
    kafka = KafkaSettings(local_port=29992, local_controller_port=29993)
    comp = KafkaComponent(tmp_path / "run", StackSettings.load(), kafka)  # the session's jars (stack fixture)
    comp.dir.mkdir(parents=True)
    comp.prepare()
    assert "cluster.id=-" in (comp.data_dir / "meta.properties").read_text()
