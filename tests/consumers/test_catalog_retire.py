"""The catalog sync deletes the live catalogs of export versions the trainer's retention removed, on a switch."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import redis

from consumers.catalog_plan import ExportCatalog
from consumers.catalog_sync import CatalogSync
from streamrec import artifacts as art
from streamrec.catalog.live import LiveCatalogWriter, LiveItem, LiveKeys, live_versions, retire_versions
from streamrec.catalog.settings import CatalogSettings
from tests.conftest import StackHandle


class Unused:
    """Stands for the feed, the dead letters, the live catalog and the embedder: a switch touches none."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} is not used by an export switch")


@pytest.mark.integration
def test_a_switch_deletes_live_catalogs_of_versions_gone_from_the_export_root(
    stack: StackHandle, catalog_export_root: Path, tmp_path: Path, unique_id: str
) -> None:
    export_root = tmp_path / "exports"
    shutil.copytree(catalog_export_root, export_root)
    current = art.read_current(export_root)
    client = redis.Redis.from_url(stack.redis.effective_url)
    prefix = f"switch-{unique_id}"
    removed = "v20000101000000-000000"  # retention removed it: not under versions/ any more
    try:
        for version in (removed, current):
            writer = LiveCatalogWriter(client, LiveKeys.for_version(version, prefix), n_export_items=5)
            writer.publish([LiveItem("sku-1", writer.index_for("sku-1"), True, 1)])

        def open_export(directory: Path, export: ExportCatalog) -> tuple[Any, Any]:
            return Unused(), Unused()

        sync = CatalogSync(
            Unused(),  # type: ignore[arg-type]
            Unused(),  # type: ignore[arg-type]
            export_root,
            open_export,
            None,
            CatalogSettings(),
            retire_versions=lambda keep: retire_versions(client, keep, prefix),
        )
        assert sync.check_export(force=True)
        assert live_versions(client, prefix) == {current}
        assert not sync.check_export(force=True)  # no switch, nothing retired
    finally:
        for version in live_versions(client, prefix):
            client.delete(*LiveKeys.for_version(version, prefix).all)
        client.close()
