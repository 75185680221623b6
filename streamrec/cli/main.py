"""``streamrec`` entry point: core commands plus those plugins register.

Every failure the user can fix ends in one line on stderr and exit code 2; no tracebacks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from streamrec import __version__, demo
from streamrec import logging as streamrec_logging
from streamrec.catalog import cli as catalog_cli
from streamrec.cli import config_cmd, events_cmd, metrics_cmd, stack_cmd
from streamrec.cli.plugins import PluginRegistry, load_plugins
from streamrec.errors import StreamrecError

PROG = "streamrec"


class OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus the error; we print the error alone, on one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def core_registry() -> PluginRegistry:
    registry = PluginRegistry()
    stack_cmd.register(registry)
    config_cmd.register(registry)
    events_cmd.register(registry)
    metrics_cmd.register(registry)
    demo.register(registry)
    catalog_cli.register(registry)
    return registry


def build_parser(registry: PluginRegistry) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=PROG, description="Event-driven streaming recommender.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    add_log_level(parser, default=None)
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    subs.required = True
    for command in registry.commands.values():
        sub = subs.add_parser(command.name, help=command.help, description=command.help)
        sub.set_defaults(_handler=command.setup(sub))
        add_log_level(sub, default=argparse.SUPPRESS)  # also accepted after the command; keeps the global one
    return parser


def add_log_level(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--log-level",
        choices=streamrec_logging.LEVELS,
        default=default,
        help=f"log level (default: ${streamrec_logging.LEVEL_ENV} or info); "
        f"${streamrec_logging.FORMAT_ENV}=json|text picks the format",
    )


def main(argv: Sequence[str] | None = None) -> int:
    registry = core_registry()
    failed = load_plugins(registry)
    parser = build_parser(registry)
    args = parser.parse_args(argv)
    if failed and getattr(args, "verbose", False):
        print(f"{PROG}: warning: plugins not loaded: {', '.join(failed)}", file=sys.stderr)
    try:
        streamrec_logging.configure(component=args.command, level=args.log_level)
        return int(args._handler(args) or 0)
    except StreamrecError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
