"""The ``refsd`` command line.

Sub-commands live in their own modules, each with ``add_parser(subparsers)`` and
``main(args) -> int``; they are imported only when the command line is parsed.

* ``refsd run``: run a ComfyUI workflow over a folder of images on one or more servers
  (:mod:`refsd.run`).
* ``refsd pseudonymize``: the pipeline without ComfyUI, on diffusers, optionally on Ray
  (:mod:`refsd.pseudonymize`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__

SUBCOMMANDS = ("run", "pseudonymize")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="refsd", description="RefSD: replace people in photos with synthetic humans.")
    p.add_argument("--version", action="version", version=f"refsd {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            mod = importlib.import_module(f".{name}", __package__)
        except ModuleNotFoundError as e:
            if e.name == f"{__package__}.{name}":
                continue  # sub-command not built in this version
            raise
        mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
