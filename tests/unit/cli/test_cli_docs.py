"""docs/cli.md is generated from the parser: it must list every command and be current.

Regenerate with ``pytest tests/unit/cli/test_cli_docs.py --update-golden`` (or
``python -m ciliate.cli.docs``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ciliate.cli.docs import iter_commands, main, render_cli_reference
from ciliate.cli.main import build_parser

CLI_MD = Path(__file__).resolve().parents[3] / "docs" / "cli.md"


def test_docs_cli_md_is_current(update_golden: bool) -> None:
    text = render_cli_reference(build_parser())
    if update_golden:
        CLI_MD.write_text(text, encoding="utf-8")
    assert CLI_MD.read_text(encoding="utf-8") == text, (
        "docs/cli.md is out of date: run pytest tests/unit/cli/test_cli_docs.py --update-golden"
    )


def test_every_command_has_a_section_and_a_contents_line() -> None:
    parser = build_parser()
    text = render_cli_reference(parser)
    commands = [" ".join(path) for path, _sub, _help in iter_commands(parser)]
    assert {"apply", "get", "bpf map lookup", "trace", "reach", "policy explain"} <= set(commands)
    for command in commands:
        assert f"## `ciliate {command}`" in text
        anchor = "ciliate-" + command.replace(" ", "-")
        assert f"](#{anchor})" in text


def test_rendering_reads_the_parser_not_the_terminal() -> None:
    parser = argparse.ArgumentParser(prog="ciliate", epilog="Exit status: 0 ok.")
    parser.add_argument("--state", metavar="DIR", help="state | directory")
    parser.add_argument("--ip", metavar="IP|CIDR", help="an address")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    get = sub.add_parser("get", aliases=["g"], help="list objects", description="Get them.")
    get.add_argument("kind", help="the kind")
    get.add_argument("names", metavar="NAME", nargs="*")
    get.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    get.add_argument("--hidden", help=argparse.SUPPRESS)
    get.add_argument("-A", "--all", action="store_true", help="every namespace")
    text = render_cli_reference(parser)
    assert text.count("## `ciliate get`") == 1  # the alias is not a second command
    assert "ciliate get kind [NAME ...] [--output {yaml,json}] [--all]" in text
    assert "| `-o`, `--output` | `{yaml,json}` | `yaml` |  |" in text
    assert "| `NAME` | `zero or more` |  |  |" in text
    assert "| `-A`, `--all` |  |  | every namespace |" in text
    assert "state \\| directory" in text  # a | cannot end the table cell
    assert "| `--ip` | `IP\\|CIDR` |  | an address |" in text
    assert "--hidden" not in text


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    target = tmp_path / "cli.md"
    assert main(["--check", str(target)]) == 1
    assert main([str(target)]) == 0
    assert main(["--check", str(target)]) == 0
