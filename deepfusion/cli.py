"""The ``deepfusion`` command line.

Each sub-command lives in the package that owns it; this module only routes.
A command module exposes ``add_arguments(parser)`` and ``run(args) -> int``
and is imported only when its command runs, so ``deepfusion verify`` never
pays for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from deepfusion.errors import DeepFusionError

# name -> (module, one-line help). Order is the order shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "reproduce": ("paper_figures.reproduce", "the main job: theory checks, sanity runs, head comparison and figures"),
    "train": ("model.train_cli", "train a SimCLR model (backbone + projection head) from a preset and overrides"),
    "eval": ("model.eval_cli", "evaluate a trained run: kNN, linear probe, head 1-NN, random-backbone baseline"),
    "verify": ("theory.verify", "run every symbolic, numeric and property check of the theory (S1-S7)"),
    "analyze": ("experiments.analyze_cli", "measure a trained head's attention layer by layer against the theory"),
    "sanity": ("experiments.sanity", "synthetic sanity experiments: idealised layers and a small trained head"),
    "figures": ("paper_figures.cli", "regenerate the paper's figures and tables into one folder with an index"),
    "bench": ("experiments.bench", "benchmarks: head, training step and theory, printed as a table and JSON"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deepfusion",
        description=(
            "Deep Fusion verification suite: a SimCLR model whose projection head is a "
            "transformer attending across the batch, the theory of why its attention "
            "fuses same-class samples (S1-S7), and experiments that tie the two together."
        ),
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def _command_parser(name: str) -> tuple[argparse.ArgumentParser, object]:
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"deepfusion {name}",
        description=(module.__doc__ or help_text).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    module.add_arguments(parser)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    # Split off the global options and the command name; the rest belongs to the command.
    debug = "--debug" in argv
    rest = [a for a in argv if a != "--debug"]
    if not rest or rest[0] in ("-h", "--help"):
        top.print_help()
        return 0 if rest else 2
    name = rest[0]
    if name not in COMMANDS:
        top.error(f"unknown command {name!r}; choose from {', '.join(COMMANDS)}")
    try:
        parser, module = _command_parser(name)
        # Intermixed: `train --no-progress model.head=mlp` puts overrides after options too.
        args = parser.parse_intermixed_args(rest[1:])
        args.debug = debug or args.debug
        return int(module.run(args) or 0)
    except DeepFusionError as err:
        if debug:
            raise
        print(f"deepfusion {name}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"deepfusion {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
