"""What a stage needs besides the export files: written as ``stage.json`` next to each Triton model version by
``streamrec serve prepare`` and read once when Triton loads that version."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from serving.settings import ServingSettings
from streamrec.catalog.settings import CatalogSettings
from streamrec.settings import BloomSettings, FeastSettings

STAGE_CONFIG_FILE = "stage.json"


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    export_dir: Path
    export_version: str
    serving: ServingSettings = Field(default_factory=ServingSettings)
    bloom: BloomSettings = Field(default_factory=BloomSettings)
    feast: FeastSettings = Field(default_factory=FeastSettings)  # paths absolute: stages run in Triton's cwd
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)  # the live catalog's key prefix
    redis_url: str = "redis://127.0.0.1:16379/0"
    device: str = "cpu"

    def write(self, path: Path) -> None:
        path.write_text(self.model_dump_json(indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> StageConfig:
        return cls.model_validate(json.loads(Path(path).read_text()))
