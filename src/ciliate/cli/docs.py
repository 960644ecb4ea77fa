"""The CLI reference (docs/cli.md), generated from the argument parser itself.

Role: walk the parser that ``cli.main.build_parser`` builds — every command and
sub-command, in --help order — and render one Markdown page: usage, description,
arguments (flags, value, default, help) and the examples each command carries in its
epilog. Output is text only; ``python -m ciliate.cli.docs [PATH]`` writes it, and
``--check`` exits 1 when the file on disk differs (tests/unit/cli/test_cli_docs.py does
the same with ``--update-golden``).

The rendering reads the parser's actions instead of ``format_help()`` on purpose:
argparse's help layout depends on the terminal width and changes between Python
versions, and a generated page must be byte-stable wherever it is regenerated.

Must not import anything but the standard library and ``ciliate.cli.main`` (for the
parser); it never runs a command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

HEADER = """\
# ciliate command reference

Generated from the argument parser by `python -m ciliate.cli.docs` — do not edit by hand.
`pytest tests/unit/cli/test_cli_docs.py` fails when this page is out of date;
`pytest tests/unit/cli/test_cli_docs.py --update-golden` rewrites it.
"""


def iter_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """Every (command path, parser, one-line help) below ``parser``, depth first, in the
    order the commands were registered (the order --help lists them)."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help or "" for a in action._choices_actions}
        seen: set[int] = set()
        for name, sub in action.choices.items():
            if id(sub) in seen:  # an alias names a parser already listed
                continue
            seen.add(id(sub))
            sub_path = (*path, name)
            yield sub_path, sub, helps.get(name, "")
            yield from iter_commands(sub, sub_path)


def _arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments a user passes: not --help, not suppressed, not the sub-command slot."""
    return [
        a
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
        and a.help != argparse.SUPPRESS
    ]


def _name(action: argparse.Action) -> str:
    if action.option_strings:
        return ", ".join(f"`{s}`" for s in action.option_strings)
    return f"`{_metavar(action)}`"


def _metavar(action: argparse.Action) -> str:
    """The word that stands for the value: the metavar, the choices, or the dest."""
    if action.choices is not None and action.metavar is None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    metavar = action.metavar or (action.dest.upper() if action.option_strings else action.dest)
    return " ".join(metavar) if isinstance(metavar, tuple) else str(metavar)


def _value(action: argparse.Action) -> str:
    """How the value is written after the flag; for a positional, only how many."""
    if action.nargs == 0:  # store_true, store_const, count: a flag without a value
        return ""
    if not action.option_strings:
        return {"*": "zero or more", "+": "one or more", "?": "optional"}.get(str(action.nargs), "")
    word = _metavar(action)
    if action.nargs in ("*", "+"):
        return f"{word} ..."
    if action.nargs == "?":
        return f"[{word}]"
    return word


def _usage_word(action: argparse.Action) -> str:
    metavar = _metavar(action)
    if action.option_strings:
        flag = action.option_strings[-1]
        value = _value(action)
        word = f"{flag} {value}" if value else flag
        return word if action.required else f"[{word}]"
    if action.nargs == "*":
        return f"[{metavar} ...]"
    if action.nargs == "+":
        return f"{metavar} [{metavar} ...]"
    if action.nargs == "?":
        return f"[{metavar}]"
    return metavar


def _default(action: argparse.Action) -> str:
    default = action.default
    if action.nargs == 0 or default in (None, "", [], argparse.SUPPRESS):
        return ""
    return f"`{default}`"


def _row(action: argparse.Action) -> str:
    value = _value(action)
    cells = (
        _name(action),
        f"`{value}`" if value else "",
        _default(action),
        str(action.help or ""),
    )
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _cell(text: str) -> str:
    # A Markdown table cell is one line; a literal | would end it.
    return " ".join(text.split()).replace("|", "\\|")


def _usage(path: Sequence[str], parser: argparse.ArgumentParser) -> str:
    parts = ["ciliate", *path]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            parts.append(f"{action.metavar or 'COMMAND'} ...")
        else:
            parts.append(_usage_word(action))
    return " ".join(parts)


def _section(path: Sequence[str], parser: argparse.ArgumentParser, summary: str) -> list[str]:
    lines = [f"## `ciliate {' '.join(path)}`", ""]
    description = parser.description or summary
    if description:
        lines += [description.strip(), ""]
    lines += ["```", _usage(path, parser), "```", ""]
    arguments = _arguments(parser)
    if arguments:
        lines += ["| argument | value | default | meaning |", "| --- | --- | --- | --- |"]
        lines += [_row(a) for a in arguments]
        lines.append("")
    if parser.epilog:
        lines += ["```", parser.epilog.strip("\n"), "```", ""]
    return lines


def render_cli_reference(parser: argparse.ArgumentParser) -> str:
    """docs/cli.md for ``parser``: a contents list, the global options, then one section
    per command."""
    commands = list(iter_commands(parser))
    lines = [HEADER, "## Contents", ""]
    for path, _sub, summary in commands:
        indent = "  " * (len(path) - 1)
        anchor = "ciliate-" + "-".join(path)
        lines.append(f"{indent}- [`{' '.join(path)}`](#{anchor}) — {_cell(summary)}")
    lines += ["", "## Global options", ""]
    lines += ["```", _usage((), parser), "```", ""]
    lines += ["| argument | value | default | meaning |", "| --- | --- | --- | --- |"]
    lines += [_row(a) for a in _arguments(parser)]
    lines.append("")
    if parser.epilog:
        lines += [parser.epilog.strip(), ""]
    for path, sub, summary in commands:
        lines += _section(path, sub, summary)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ciliate.cli.docs [--check] [PATH]`` (PATH defaults to docs/cli.md)."""
    from ciliate.cli.main import build_parser

    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    paths = [a for a in args if a != "--check"]
    target = Path(paths[0] if paths else "docs/cli.md")
    text = render_cli_reference(build_parser())
    if check:
        current = target.read_text(encoding="utf-8") if target.exists() else ""
        if current != text:
            print(f"{target} is out of date: run python -m ciliate.cli.docs", file=sys.stderr)
            return 1
        return 0
    target.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
