"""The ``refsd`` command line.

Sub-commands live in their own modules, each with ``add_parser(subparsers)`` and
``main(args) -> int``; they are imported only when the command line is parsed.

* ``refsd run``: run a ComfyUI workflow over a folder of images on one or more servers
  (:mod:`refsd.comfyapi.run`).
* ``refsd pseudonymize``: the pipeline without ComfyUI, on diffusers, optionally on Ray
  (:mod:`refsd.cli.pseudonymize`).
* ``refsd eval``: the evaluation suite (face identity, pose kept, attributes) over a run's
  manifest (:mod:`refsd.cli.evaluate`).
* ``refsd models``: fetch (set-up time) and list the person detector's model files
  (:mod:`refsd.cli.models`).
* ``refsd study``: build, serve and report a perception study of a run's output
  (:mod:`refsd.cli.study`, :mod:`refsd.study`).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

#: sub-command -> its module, relative to this package (``add_parser(subparsers)`` in each)
SUBCOMMANDS = {"run": "..comfyapi.run", "pseudonymize": ".pseudonymize", "models": ".models", "eval": ".evaluate",
               "study": ".study"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="refsd", description="RefSD: replace people in photos with synthetic humans.")
    p.add_argument("--version", action="version", version=f"refsd {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS.values():
        mod = importlib.import_module(module, __package__)
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
