"""The `scopegate` command line (SPEC §1): parse, call one function, return the exit code."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from scopegate import __version__

DEFAULT_CONFIG = "scopegate.yaml"


def default_config_path() -> str:
    return os.environ.get("SCOPEGATE_CONFIG") or DEFAULT_CONFIG


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        metavar="FILE",
        help=f"configuration file (default: $SCOPEGATE_CONFIG, then ./{DEFAULT_CONFIG})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scopegate",
        description="A reverse-proxy API gateway that enforces OAuth 2.0 scopes on bearer JWTs.",
    )
    parser.add_argument("--version", action="version", version=f"scopegate {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway. SIGHUP reloads the configuration; SIGTERM drains and exits.",
    )
    _add_config_option(serve)
    serve.add_argument(
        "--workers", type=int, default=1, metavar="N", help="processes sharing the port (default 1)"
    )

    check = commands.add_parser(
        "check",
        help="validate a configuration file and print its route table",
        description="Validate a configuration file. Exit 0 when valid, 1 with every error.",
    )
    _add_config_option(check)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = Path(args.config or default_config_path())
    if args.command == "serve":
        if args.workers != 1:
            print("scopegate: --workers other than 1 is not supported yet", file=sys.stderr)
            return 2
        from scopegate.serve import run  # noqa: PLC0415 - keep `check` free of server imports

        return run(path)
    if args.command == "check":
        from scopegate.explain import run_check  # noqa: PLC0415

        return run_check(path, sys.stdout, sys.stderr)
    raise AssertionError(f"unhandled command {args.command}")  # argparse refuses unknown ones
