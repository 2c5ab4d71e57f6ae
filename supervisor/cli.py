"""``iii``: the command line. ``iii run [--config PATH]`` starts the engine for an app."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from importlib.metadata import PackageNotFoundError, version

from supervisor.errors import ConfigError


def _version() -> str:
    try:
        return version("iii-engine")
    except PackageNotFoundError:
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="iii", description="iii engine: functions and triggers for your app.")
    parser.add_argument("--version", "-V", action="version", version=f"iii-engine {_version()}")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the app described by config.yaml (the default command)")
    for p in (parser, run):
        p.add_argument("--config", "-c", default=None, help="config file (default: ./config.yaml, "
                       "or built-in defaults when there is none)")
        p.add_argument("--log-format", choices=["pretty", "json"], default=None,
                       help="pretty terminal lines (default) or one JSON object per line")
        p.add_argument("--log-level", choices=["debug", "info", "warn", "error"], default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from supervisor.config import load_config
    from supervisor.logview import LogViewHandler, make_log_view

    view = make_log_view(args.log_format or "pretty", args.log_level or "info")
    bridge = LogViewHandler(view)
    bridge.setLevel(logging.WARNING)
    logging.getLogger().addHandler(bridge)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"iii: config error: {exc}", file=sys.stderr)
        return 2
    from supervisor.engine import Engine

    try:
        return asyncio.run(Engine(config, view).run())
    except ConfigError as exc:
        print(f"iii: config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
