"""The command line as a new user meets it: ``--version``, ``--help`` of every command."""

from __future__ import annotations

import pytest


def test_main_help_describes_the_tool(capsys: pytest.CaptureFixture[str]) -> None:
    from radiobject.cli.main import build_parser

    text = build_parser().format_help()
    assert "Entry point" not in text and "builds the parser" not in text  # no developer docstring
    assert "medical images" in text and "examples:" in text


def test_every_command_help_has_examples() -> None:
    from radiobject.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():  # type: ignore[attr-defined]
        assert "examples:" in p.format_help(), name


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from radiobject.cli.main import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("radiobject ") and any(c.isdigit() for c in out)
