"""The `tidings` command: `dev` (the local stack), `token`, `submit`, `watch` and `generate-event`.

Output rule: stdout carries only what a script captures (a token, a job id, JSON lines, the
watch display of `tidings watch`); everything said to a person goes to stderr. Expected
failures print one line and exit 2 (usage, no stack) or 1 (the job or the server failed).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from tidings_core.tokens import MAX_LIFETIME_SECONDS

from . import client, sample_events
from .watch_view import Mode

DEFAULT_TTL_SECONDS = 3600
# top-level modules of the `local` extra (pyproject.toml): `dev`, `invoke`, `submit` need them
LOCAL_EXTRA_MODULES = frozenset(
    {"moto", "aiohttp", "samtranslator", "watchfiles", "yaml", "cfnlint", "jsonpath_ng", "pynamodb",
     "msgspec", "pydantic", "aws_lambda_powertools", "imageio_ffmpeg", "av", "multidict", "airspeed"}
)  # fmt: skip
DEMO_USER = "demo"


def _default_user() -> str:
    try:
        return os.environ.get("USER") or getpass.getuser() or DEMO_USER
    except (KeyError, OSError):  # no passwd entry (containers)
        return DEMO_USER


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _token_ttl(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_LIFETIME_SECONDS:
        raise argparse.ArgumentTypeError(f"at most {MAX_LIFETIME_SECONDS} seconds (24 h)")
    return value


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", metavar="NAME", help="a deployed stack (default: the local stack)")
    parser.add_argument("--region", help="AWS region of --stack (default: your AWS configuration)")
    parser.add_argument(
        "--template",
        default=None,
        help="template of the local stack; its folder holds .tidings/state.json (default: ./template.yaml)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tidings", description="Real-time job notifications: local stack and client tools."
    )
    parser.add_argument("--version", action="version", version=f"tidings {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser(
        "dev", help="run the local stack (options: tidings dev --help)", add_help=False
    )  # its options are parsed by tidings.local.stack, its add-ons chosen by tidings.devtools
    commands.add_parser(
        "invoke",
        help="run one function locally, like sam local invoke (tidings invoke --help)",
        add_help=False,
    )  # its options are parsed by tidings.local.invoke

    token = commands.add_parser("token", help="print a connection token (JWT) for a user")
    token.add_argument("user_arg", nargs="?", metavar="USER", help="the user id (same as --user)")
    token.add_argument("--user", help="the user id (the token's sub)")
    token.add_argument("--ttl", type=_token_ttl, default=DEFAULT_TTL_SECONDS, metavar="SECONDS")
    _add_target_options(token)

    submit = commands.add_parser("submit", help="upload a video and start a transcoding job")
    submit.add_argument("file", type=Path, metavar="FILE")
    submit.add_argument("--user", default=None, help="the job's owner (default: $USER or demo)")
    submit.add_argument("--watch", action="store_true", help="then follow the job until it ends")
    _add_target_options(submit)

    watch = commands.add_parser("watch", help="follow a job's progress until it completes or fails")
    watch.add_argument("job_id", metavar="JOB_ID")
    watch.add_argument("--user", default=None, help="the job's owner (default: $USER or demo)")
    watch.add_argument("--json", action="store_true", help="print each job message as a JSON line")
    _add_target_options(watch)

    generate = commands.add_parser(
        "generate-event", help="print a sample event in AWS's shape (like sam local generate-event)"
    )
    generate.add_argument(
        "kind", choices=sample_events.KINDS, metavar="KIND", help=", ".join(sample_events.KINDS)
    )
    generate.add_argument("--route", help="WebSocket route key, or 'METHOD /path' for http-api")
    generate.add_argument("--body", help="message or request body")
    generate.add_argument("--stage", default="dev")
    generate.add_argument("--region", default="us-east-1")
    generate.add_argument("--header", action="append", default=[], metavar="NAME=VALUE")
    generate.add_argument("--query", action="append", default=[], metavar="NAME=VALUE")
    generate.add_argument("--authorizer", type=_json_object, default={}, metavar="JSON",
                          help="the authorizer context the event carries")  # fmt: skip
    generate.add_argument("--source", default="my.app", help="eventbridge: the source")
    generate.add_argument("--detail-type", default="Sample", help="eventbridge: the detail-type")
    generate.add_argument("--detail", type=_json_object, default=None, metavar="JSON", help="eventbridge")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tidings")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _json_object(text: str) -> dict[str, object]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _pairs(items: list[str], option: str, parser: argparse.ArgumentParser) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"{option} takes NAME=VALUE, not {item!r}")
        pairs.append((name, value))
    return tuple(pairs)


def _generate_event(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from tidings.local.ids import new_id

    sample = sample_events.Sample(
        epoch_s=time.time(),
        ids=(new_id(), new_id(), new_id()),
        stage=args.stage,
        region=args.region,
        route=args.route,
        body=args.body,
        headers=_pairs(args.header, "--header", parser),
        query=_pairs(args.query, "--query", parser),
        authorizer=args.authorizer,
        source=args.source,
        detail_type=args.detail_type,
        detail=args.detail,
    )
    try:
        event = sample_events.generate(args.kind, sample)
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps(event, indent=2))
    return 0


def _token_user(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    user: str | None = args.user or getattr(args, "user_arg", None)
    if args.user and getattr(args, "user_arg", None) and args.user != args.user_arg:
        parser.error("give the user once: either USER or --user")
    if not user:
        parser.error("the token command needs a user: tidings token --user USER")
    return user


def _watch_mode(stream: IO[str], as_json: bool) -> Mode:
    if as_json:
        return "json"
    return "tty" if stream.isatty() else "plain"


def _upload_progress(stream: IO[str]) -> Callable[[int, int], None]:
    """Whole-percent steps on a terminal; nothing when stderr is a pipe or a file."""
    last = -1

    def report(sent: int, total: int) -> None:
        nonlocal last
        percent = sent * 100 // max(total, 1)
        if percent != last:
            last = percent
            stream.write(f"\ruploading {percent:3d}%" + ("\n" if sent >= total else ""))
            stream.flush()

    return report


def _run_watch(target: client.Target, user: str, job_id: str, stream: IO[str], mode: Mode) -> int:
    secret = client.signing_secret(target)  # read once; tokens are minted per connection
    from tidings_core.tokens import issue_token

    def fresh_token() -> str:
        return issue_token(secret, user, DEFAULT_TTL_SECONDS, issuer=target.issuer)

    printer = client.WatchPrinter(stream, mode)
    try:
        return asyncio.run(client.watch_job(target.websocket_url, fresh_token, job_id, printer))
    finally:  # Ctrl-C included: end the live block and show the cursor again
        printer.close()


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.command == "generate-event":
        return _generate_event(args, parser)
    if args.command == "token":
        user = _token_user(args, parser)
        target = client.resolve_target(args.stack, args.region, args.template)
        print(client.make_token(target, user, args.ttl))
        return 0
    if args.command == "submit":
        path: Path = args.file
        if not path.is_file():
            raise client.CliError(f"{path}: no such file")
        if path.stat().st_size == 0:
            raise client.CliError(f"{path}: the file is empty")
        user = args.user or _default_user()
        target = client.resolve_target(args.stack, args.region, args.template)
        if not target.jobs_api_url:
            raise client.CliError(f"{target.description} has no jobs API (JobsApiUrl)")
        token = client.make_token(target, user, DEFAULT_TTL_SECONDS)
        progress = _upload_progress(sys.stderr) if sys.stderr.isatty() else None
        job_id = asyncio.run(client.submit_job(target.jobs_api_url, token, path, on_progress=progress))
        print(job_id, flush=True)
        print(f"job {job_id} started for {user}", file=sys.stderr)
        if not args.watch:
            return 0
        # stdout stays the job id alone, so `JOB=$(tidings submit f --watch)` still works
        return _run_watch(target, user, job_id, sys.stderr, _watch_mode(sys.stderr, False))
    if args.command == "watch":
        user = args.user or _default_user()
        target = client.resolve_target(args.stack, args.region, args.template)
        return _run_watch(target, user, args.job_id, sys.stdout, _watch_mode(sys.stdout, args.json))
    parser.error(f"unknown command {args.command}")  # argparse already refuses these


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(arguments)
    except ModuleNotFoundError as exc:  # a `pip install tidings` without the local stack's extra
        if (exc.name or "").split(".")[0] not in LOCAL_EXTRA_MODULES:
            raise
        command = arguments[0] if arguments else "tidings"
        print(
            f"tidings {command}: needs {exc.name}, part of the local extra: pip install 'tidings[local]'",
            file=sys.stderr,
        )
        return 2


def _main(arguments: list[str]) -> int:
    if arguments[:1] == ["dev"]:
        from tidings.devtools.dev import main as dev_main  # lazy: the local stack is heavy

        return int(dev_main(arguments[1:]) or 0)
    if arguments[:1] == ["invoke"]:
        from tidings.local.invoke import main as invoke_main

        return invoke_main(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(arguments)
    try:
        return run(args, parser)
    except client.CliError as exc:
        print(f"tidings {args.command}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `tidings generate-event ... | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
