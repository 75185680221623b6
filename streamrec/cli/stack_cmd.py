"""``streamrec stack up|down|status|logs``."""

from __future__ import annotations

import argparse
import sys
import time

from streamrec.cli.plugins import CommandHandler, PluginRegistry
from streamrec.stack import LocalStack
from streamrec.stack.base import tail


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _up(args: argparse.Namespace) -> int:
    stack = LocalStack()
    started = stack.up(_progress, with_triton=False if args.no_triton else None)
    print(f"started: {', '.join(started)}" if started else "already running (nothing started)")
    return _status(args)


def _down(args: argparse.Namespace) -> int:
    stopped = LocalStack().down(_progress)
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing to stop")
    return 0


def _status(args: argparse.Namespace) -> int:
    rows = LocalStack().status()
    width = max(len(r.name) for r in rows)
    for row in rows:
        pid = f"pid {row.pid}" if row.pid else ""
        print(f"{row.name:<{width}}  {row.state:<9}  {pid:<10}  {row.health.detail}")
    wanted = [r for r in rows if r.state != "stopped" or not getattr(args, "all_required", False)]
    return 0 if all(r.health.ok for r in wanted if r.state != "stopped") else 1


def _logs(args: argparse.Namespace) -> int:
    stack = LocalStack()
    names = [args.component] if args.component else [c.name for c in stack.components(with_triton=True)]
    for name in names:
        comp = stack.component(name)
        print(f"==> {comp.log_path} <==")
        print(tail(comp.log_path, args.lines))
    if args.follow and args.component:
        comp = stack.component(args.component)
        with open(comp.log_path, "rb") as handle:
            handle.seek(0, 2)
            while True:
                line = handle.readline()
                if line:
                    sys.stdout.write(line.decode("utf-8", "replace"))
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)
    return 0


def _setup(parser: argparse.ArgumentParser) -> CommandHandler:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    up = actions.add_parser("up", help="start Kafka, Valkey(+bf) and Triton; a no-op for running ones")
    up.add_argument("--no-triton", action="store_true", help="do not start Triton")
    up.set_defaults(_action=_up)
    actions.add_parser("down", help="stop what 'up' started").set_defaults(_action=_down)
    actions.add_parser("status", help="health of every component").set_defaults(_action=_status)
    logs = actions.add_parser("logs", help="print component logs")
    logs.add_argument("component", nargs="?", choices=["kafka", "valkey", "triton"])
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.add_argument("-f", "--follow", action="store_true", help="follow one component's log")
    logs.set_defaults(_action=_logs)
    return lambda args: int(args._action(args))


def register(registry: PluginRegistry) -> None:
    registry.add_command("stack", "manage the embedded local stack (real servers, no Docker)", _setup)
