"""Write the catalog contract's JSON Schema files next to the event schemas.

``python -m streamrec.catalog.jsonschema [DIR]`` (default: ``streamrec/schemas/jsonschema``); a test checks
that the committed files equal what the models render.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from streamrec.catalog.models import CATALOG_SCHEMA_VERSION, CatalogItem, ItemTombstone, UserProfile, UserTombstone

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas" / "jsonschema"
MODELS: dict[str, type[BaseModel]] = {
    "catalog_item": CatalogItem,
    "catalog_item_tombstone": ItemTombstone,
    "catalog_user": UserProfile,
    "catalog_user_tombstone": UserTombstone,
}


def json_schema(name: str) -> dict[str, Any]:
    schema = MODELS[name].model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://streamrec.dev/schemas/{name}.v{CATALOG_SCHEMA_VERSION}.json"
    return schema


def schema_path(name: str, directory: Path = SCHEMA_DIR) -> Path:
    return directory / f"{name}.v{CATALOG_SCHEMA_VERSION}.json"


def render(name: str) -> str:
    return json.dumps(json_schema(name), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    directory = Path(argv[0]) if argv else SCHEMA_DIR
    directory.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        schema_path(name, directory).write_text(render(name))
        print(schema_path(name, directory))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
