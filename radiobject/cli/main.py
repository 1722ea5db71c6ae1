"""Entry point of the ``radiobject`` command: builds the parser from the command modules."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module defines ``register(subparsers) -> None``, adding its commands with
# ``parser.set_defaults(func=callable(args) -> int)``.
COMMAND_MODULES: tuple[str, ...] = (
    "radiobject.cli.ingest",
    "radiobject.cli.inspect",
    "radiobject.cli.tiff",
    "radiobject.cli.bench",
    "radiobject.cli.layouts",
    "radiobject.cli.cohort",
)


def _version() -> str:
    from radiobject._version import __version__

    return __version__


def _add_examples(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Every command's ``--help`` ends with its examples (``radiobject.cli.examples``)."""
    from radiobject.cli.examples import EXAMPLES

    for name, p in sub.choices.items():
        if name in EXAMPLES and not p.epilog:
            p.epilog = EXAMPLES[name]
            if p.formatter_class is argparse.HelpFormatter:
                p.formatter_class = argparse.RawDescriptionHelpFormatter
        for action in p._actions:  # nested commands (radiobject bench storage)
            if isinstance(action, argparse._SubParsersAction):
                for child, q in action.choices.items():
                    key = f"{name} {child}"
                    if key in EXAMPLES and not q.epilog:
                        q.epilog = EXAMPLES[key]
                        if q.formatter_class is argparse.HelpFormatter:
                            q.formatter_class = argparse.RawDescriptionHelpFormatter


#: What ``radiobject --help`` says first (the module docstring is for developers).
DESCRIPTION = (
    "radiobject: ingest, inspect, verify and export stores of 3D medical images "
    "(NIfTI, DICOM, TIFF; BIDS, MSD, nnU-Net layouts)."
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every command module's sub-commands."""
    from radiobject.cli.examples import MAIN_EXAMPLES

    parser = argparse.ArgumentParser(
        prog="radiobject",
        description=DESCRIPTION,
        epilog=MAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"radiobject {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a command group not built yet
            if exc.name == name:
                continue
            raise
        module.register(sub)
    _add_examples(sub)
    return parser


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 2000 else text[:2000] + " ..."


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code.

    Any failure a command does not report itself ends as one line on stderr, never a traceback:
    a :class:`~radiobject.errors.RadiObjectError` or ``OSError`` (exit 2), anything else as an
    internal error naming its type (exit 2; ``RADIOBJECT_DEBUG=1`` shows the traceback),
    Ctrl-C exit 130.
    """
    import os

    from radiobject.errors import RadiObjectError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `radiobject info ... | head`
        return 1
    except (RadiObjectError, OSError) as exc:
        if os.environ.get("RADIOBJECT_DEBUG"):
            raise
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the CLI never ends in a traceback
        if os.environ.get("RADIOBJECT_DEBUG"):
            raise
        print(f"error: internal error ({type(exc).__name__}): {_one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
