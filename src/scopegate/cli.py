"""The `scopegate` command line (SPEC §1): parse, call one function, return the exit code.

Each command imports what it needs only when it runs: `check` and `explain` never pay for the
server, and `serve --workers N` must set up multi-process metrics before prometheus-client is
imported at all.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
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
    # Added in the order `scopegate --help` lists them.
    _add_serve_command(commands)
    _add_check_command(commands)
    _add_demo_command(commands)
    _add_token_command(commands)
    _add_explain_command(commands)
    _add_import_openapi_command(commands)
    return parser


def _add_serve_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway. SIGHUP reloads the configuration; SIGTERM drains and exits.",
    )
    _add_config_option(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=os.environ.get("SCOPEGATE_WORKERS", "1"),  # argparse applies type= to it
        metavar="N",
        help="processes sharing the port (default: $SCOPEGATE_WORKERS, else 1)",
    )
    # Internal: how a supervisor starts its workers.
    serve.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--worker-state", type=Path, help=argparse.SUPPRESS)


def _add_check_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = commands.add_parser(
        "check",
        help="validate a configuration file and print its route table",
        description="Validate a configuration file. Exit 0 when valid, 1 with every error.",
    )
    _add_config_option(check)


def _add_demo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    demo = commands.add_parser(
        "demo",
        help="run an issuer, a contacts API and the gateway on loopback, and show what it does",
        description="Start a development token issuer, a demo contacts API and the gateway in "
        "front of it, all on loopback, with a browser app on an origin of its own (CORS, a live "
        "WebSocket feed), and print its address and curl commands to try. Ctrl-C stops it.",
    )
    demo.add_argument("--port", type=int, default=8080, help="gateway port (0: any free port)")
    demo.add_argument("--admin-port", type=int, default=9100, help="admin port (0: any free port)")
    demo.add_argument(
        "--page-port", type=int, default=0, help="the browser app's port (default: any free port)"
    )
    demo.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS with a throw-away local CA, and show a certificate-bound token",
    )


_TOKEN_EXAMPLES = """\
examples (the issuer is the one `scopegate demo` prints):
  TOKEN=$(scopegate token --issuer ISSUER --audience https://contacts.example.com \\
            --scopes read:contacts)
  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8080/contacts

  # an opaque token, which the gateway introspects at the demo issuer:
  TOKEN=$(scopegate token --opaque --issuer ISSUER --audience https://contacts.example.com)

  # a DPoP-bound token and a proof for one request (eval sets DPOP_TOKEN and DPOP_PROOF):
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out client.pem
  eval "$(scopegate token --issuer ISSUER --audience https://contacts.example.com \\
            --scopes read:contacts --dpop-key client.pem \\
            --url http://127.0.0.1:8080/contacts)"
  curl -H "Authorization: DPoP $DPOP_TOKEN" -H "DPoP: $DPOP_PROOF" \\
       http://127.0.0.1:8080/contacts

  # a proof is good for one request: a fresh one for the same token (sets DPOP_PROOF):
  eval "$(scopegate token --dpop-key client.pem --proof-for "$DPOP_TOKEN" \\
            --method GET --url http://127.0.0.1:8080/contacts)"

  # step-up (RFC 9470): signed in with MFA ten minutes ago
  scopegate token --issuer ISSUER --audience https://contacts.example.com \\
            --acr mfa --auth-time -600
"""


def _auth_time(text: str) -> int:
    """`--auth-time`: seconds since the epoch, or -N for N seconds ago."""
    try:
        seconds = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not whole seconds: give seconds since the epoch, or -N for N seconds ago"
        ) from None
    return seconds if seconds >= 0 else int(time.time()) + seconds


def _add_token_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser(
        "token",
        help="mint a development token (JWT, opaque or DPoP-bound)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Mint a development token signed with --key (a PEM private key), or by a\n"
        "running `scopegate demo` issuer when --key is left out. Never for production.\n\n"
        "The token alone is printed, so that TOKEN=$(scopegate token ...) works. With\n"
        "--dpop-key, the token is bound to that key (RFC 9449) and two shell assignments\n"
        "are printed instead, DPOP_TOKEN=... and DPOP_PROOF=... (a proof for --method and\n"
        '--url): run the command in eval "$(...)" and use both variables.',
        epilog=_TOKEN_EXAMPLES,
    )
    token.add_argument(
        "--key", type=Path, metavar="FILE", help="PEM private key to sign a JWT with"
    )
    token.add_argument("--kid", help="key id for the header (default: the key's thumbprint)")
    token.add_argument("--alg", help="signing algorithm (default: from the key type)")
    token.add_argument(
        "--issuer", help="the iss claim (a demo issuer's URL); required but with --proof-for"
    )
    token.add_argument("--audience", help="the aud claim; required but with --proof-for")
    token.add_argument("--subject", help="the sub claim (default dev-user)")
    token.add_argument("--scopes", help='space-separated scopes, e.g. "read:contacts"')
    token.add_argument("--lifetime", type=int, help="seconds until exp (default 300)")
    token.add_argument(
        "--opaque",
        action="store_true",
        help="an opaque token instead of a JWT, which the gateway introspects (RFC 7662) at the "
        "demo issuer: only with a demo issuer, not with --key",
    )
    token.add_argument(
        "--dpop-key",
        type=Path,
        metavar="FILE",
        help="PEM private key (EC, RSA or Ed25519) to bind the token to (cnf.jkt); prints "
        "DPOP_TOKEN=... and DPOP_PROOF=..., a proof for --method and --url",
    )
    token.add_argument(
        "--url", help="with --dpop-key: the gateway URL the request goes to (required)"
    )
    token.add_argument("--method", help="with --dpop-key: the request's method (default GET)")
    token.add_argument(
        "--proof-for",
        metavar="TOKEN",
        help="with --dpop-key and --url: print only DPOP_PROOF=..., a fresh proof for this "
        "token (a proof is good for one request)",
    )
    token.add_argument(
        "--acr", metavar="VALUE", help="the acr claim: how the user signed in, e.g. mfa"
    )
    token.add_argument(
        "--auth-time",
        type=_auth_time,
        metavar="SECONDS",
        help="the auth_time claim: when the user signed in, in seconds since the epoch, or -N "
        "for N seconds ago (--auth-time=-600: ten minutes ago)",
    )


def _add_explain_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    explain = commands.add_parser(
        "explain",
        help="say which route a request meets and whether it would be allowed",
        description="Explain a request: the route it matches, what that requires, what the "
        "token grants, and the verdict. Exit 0 allowed, 1 denied, 2 invalid file.",
    )
    _add_config_option(explain)
    explain.add_argument("method", metavar="METHOD")
    explain.add_argument("path", metavar="PATH", help="request target, e.g. /contacts/1?x=y")
    grants = explain.add_mutually_exclusive_group()
    grants.add_argument("--token", help="a bearer token, verified against its issuer's keys")
    grants.add_argument("--scopes", help='the scopes to assume, e.g. "read:contacts"')


def _add_import_openapi_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    command = commands.add_parser(
        "import-openapi",
        help="print routes and a scope catalogue for an OpenAPI 3.0 or 3.1 document",
        description="Map each operation of an OpenAPI document (JSON or YAML) to a route: its "
        "security becomes the route's scopes. Prints scopes: and routes: to paste into a "
        "configuration; what cannot be mapped is reported on stderr. Exit 1 if the document "
        "is invalid.",
    )
    command.add_argument("file", metavar="FILE", help="the OpenAPI document")
    command.add_argument("--upstream", required=True, metavar="NAME",
                         help="the upstream every route goes to")  # fmt: skip
    command.add_argument("--server-path", action="store_true",
                         help="put each path below the path of its first server's URL")  # fmt: skip


def _import_openapi(file: str, upstream: str, server_path: bool) -> int:
    from scopegate.commands.import_openapi import run_import

    return run_import(file, upstream, server_path, sys.stdout, sys.stderr)


def _serve(path: Path, workers: int, worker_fd: int | None, worker_state: Path | None) -> int:
    if workers < 1:
        print("scopegate serve: --workers must be at least 1", file=sys.stderr)
        return 2
    if workers > 1:
        from scopegate.commands.supervisor import supervise

        return supervise(path, workers)
    from scopegate.commands.serve import run

    return run(path, worker_fd=worker_fd, worker_state=worker_state)


def _demo(port: int, admin_port: int, page_port: int, tls: bool) -> int:
    import asyncio

    from scopegate.commands.serve import install_event_loop_policy
    from scopegate.devtools.demo import run_demo

    install_event_loop_policy()
    try:
        asyncio.run(run_demo(port, admin_port, page_port=page_port, tls=tls))
    except OSError as exc:
        print(f"scopegate demo: {exc} (try --port 0 --admin-port 0)", file=sys.stderr)
        return 1
    return 0


def _check(path: Path) -> int:
    from scopegate.commands.explain import run_check

    return run_check(path, sys.stdout, sys.stderr)


def _explain(path: Path, method: str, target: str, token: str | None, scopes: str | None) -> int:
    from scopegate.commands.explain import run_explain

    return run_explain(path, method, target, token, scopes, sys.stdout, sys.stderr)


def _token(args: argparse.Namespace) -> int:
    from scopegate.devtools.token_command import TokenOptions, run_token

    options = TokenOptions(
        issuer=args.issuer,
        audience=args.audience,
        key=args.key,
        kid=args.kid,
        alg=args.alg,
        subject=args.subject,
        scopes=args.scopes,
        lifetime=args.lifetime,
        opaque=args.opaque,
        dpop_key=args.dpop_key,
        url=args.url,
        method=args.method,
        acr=args.acr,
        auth_time=args.auth_time,
        proof_for=args.proof_for,
    )
    return run_token(options, sys.stdout, sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = Path(getattr(args, "config", None) or default_config_path())
    if args.command == "serve":
        return _serve(path, args.workers, args.worker_fd, args.worker_state)
    if args.command == "check":
        return _check(path)
    if args.command == "explain":
        return _explain(path, args.method, args.path, args.token, args.scopes)
    if args.command == "demo":
        return _demo(args.port, args.admin_port, args.page_port, args.tls)
    if args.command == "token":
        return _token(args)
    if args.command == "import-openapi":
        return _import_openapi(args.file, args.upstream, args.server_path)
    raise AssertionError(f"unhandled command {args.command}")  # argparse refuses unknown ones
