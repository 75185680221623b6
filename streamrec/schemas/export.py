"""Write the JSON Schema files of the contract: ``python -m streamrec.schemas.export [DIR]``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from streamrec.schemas.dead_letter import DEAD_LETTER_VERSION, DeadLetter, DeadLetterV1
from streamrec.schemas.events import SCHEMA_VERSION, InteractionEvent, RecommendationMessage

SCHEMA_DIR = Path(__file__).parent / "jsonschema"
#: Published schema files, "<message>.v<version>": the current version of each message, plus older
#: versions readers still accept.
MODELS: dict[str, type[BaseModel]] = {
    f"interaction_event.v{SCHEMA_VERSION}": InteractionEvent,
    f"recommendation.v{SCHEMA_VERSION}": RecommendationMessage,
    "dead_letter.v1": DeadLetterV1,
    f"dead_letter.v{DEAD_LETTER_VERSION}": DeadLetter,
}
CURRENT: dict[str, str] = {
    "interaction_event": f"interaction_event.v{SCHEMA_VERSION}",
    "recommendation": f"recommendation.v{SCHEMA_VERSION}",
    "dead_letter": f"dead_letter.v{DEAD_LETTER_VERSION}",
}


def _versioned(name: str) -> str:
    return CURRENT.get(name, name)


def json_schema(name: str) -> dict[str, Any]:
    """``name``: a file stem such as ``dead_letter.v1``, or a message name for its current version."""
    stem = _versioned(name)
    schema = MODELS[stem].model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://streamrec.dev/schemas/{stem}.json"
    return schema


def schema_path(name: str, directory: Path = SCHEMA_DIR) -> Path:
    return directory / f"{_versioned(name)}.json"


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
