"""`python -m twostage_i2v VERB ...`.

Each verb is a module in ``twostage_i2v/commands/`` that defines ``VERB``,
``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``; new verbs need
no change here.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil

from . import __version__, commands


def _verb_modules():
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if not info.name.startswith("_"):
            yield importlib.import_module(f"{commands.__name__}.{info.name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m twostage_i2v",
        description="ComfyUI-TwoStage-I2V tools: SDXL still -> Wan 2.1 I2V (GGUF) video.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for mod in _verb_modules():
        p = sub.add_parser(mod.VERB, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)
