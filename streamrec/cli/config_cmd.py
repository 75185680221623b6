"""``streamrec config``: the effective configuration, secrets masked."""

from __future__ import annotations

import argparse
import json

from streamrec.cli.plugins import CommandHandler, PluginRegistry
from streamrec.settings import describe


def register(registry: PluginRegistry) -> None:
    def setup(parser: argparse.ArgumentParser) -> CommandHandler:
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--describe", action="store_true", help="also print each setting's description")

        def run(args: argparse.Namespace) -> int:
            sections = {cls.section: describe(cls.load()) for cls in registry.settings}
            if args.json:
                print(json.dumps({s: {env: val for env, val, _ in rows} for s, rows in sections.items()}, indent=2))
                return 0
            for section, rows in sections.items():
                print(f"[{section}]")
                for env, value, doc in rows:
                    print(f"  {env} = {value}" + (f"    # {doc}" if args.describe else ""))
            return 0

        return run

    registry.add_command("config", "print the effective configuration (secrets masked)", setup)
