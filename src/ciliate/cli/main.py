"""Entry point: builds the argument parser from the command modules and runs one command.

Each command module exposes ``register(subparsers) -> None``; every sub-parser sets
``func(args, ctx) -> int`` with ``set_defaults``. Errors derived from ``CiliateError``
print their message on stderr and return their exit code (``errors.ExitCode``).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from ciliate import __version__
from ciliate.cli.context import Context
from ciliate.errors import CiliateError, DiagnosticError, ExitCode

# Command modules, in the order their commands appear in --help. A module that is not
# there yet is skipped, so the CLI grows with the package.
COMMAND_MODULES = (
    "ciliate.cli.cmd_cluster",  # cluster create|delete|show
    "ciliate.cli.cmd_resources",  # apply, delete, get, describe
    "ciliate.cli.cmd_cilium",  # endpoint list, identity list, bpf ..., service list
    "ciliate.cli.cmd_trace",  # trace
    "ciliate.cli.cmd_policy",  # reach, policy explain
    "ciliate.cli.cmd_kernel",  # up, down, status, exec, node exec, observe
    "ciliate.cli.cmd_exec",  # exec POD -- CMD, node exec NODE -- CMD (model views or real)
    "ciliate.cli.cmd_demo",  # demo
)

EPILOG = """\
Exit status: 0 ok; 1 invalid input (nothing changed); 2 not found; 3 conflict with the
current state; 4 unsupported here (root or kernel feature missing); 5 datapath error.
"""


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error; ciliate's 2 means "not found", so a bad flag
    or argument exits 1 (invalid input), as kubectl does."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(int(ExitCode.INVALID_INPUT), f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ciliate",
        description="A Cilium-style Kubernetes networking stack: model and kernel datapaths.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--state",
        metavar="DIR",
        type=Path,
        default=None,
        help="state directory (default: $CILIATE_STATE or ~/.local/state/ciliate)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    version = sub.add_parser(
        "version",
        help="print the version",
        description="Print ciliate's version.",
        epilog="Example:\n  ciliate version",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    version.set_defaults(func=_version)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        module.register(sub)
    return parser


def _version(args: argparse.Namespace, ctx: Context) -> int:
    ctx.out(f"ciliate version {__version__}")
    return ExitCode.OK


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """The parser, built once per process: building it costs ~10 ms (argparse looks up
    a translation for every help string), which callers running several commands in
    one process (tests, benchmarks, the demo) would otherwise pay per command. Parsing
    leaves it unchanged."""
    return build_parser()


def main(argv: Sequence[str] | None = None, ctx: Context | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if ctx is None:
        ctx = Context()
    if args.state is not None:
        ctx.state_dir = args.state
    if not getattr(args, "func", None):
        parser.print_help(ctx.stdout)
        return ExitCode.OK
    try:
        return int(args.func(args, ctx))
    except DiagnosticError as e:
        for d in e.diagnostics:
            ctx.err(d.render())
        ctx.err(f"error: {len(e.diagnostics)} problem(s) found; nothing was changed")
        return int(e.exit_code)
    except CiliateError as e:
        ctx.err(f"error: {e}")
        return int(e.exit_code)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # `ciliate get pods | head`: the reader went away; exit quietly like kubectl.
        _silence_stdout()
        return ExitCode.OK
    finally:
        ctx.close()


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    raise SystemExit(main())
