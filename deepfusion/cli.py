"""The ``deepfusion`` command line.

Each sub-command lives in the package that owns it; this module only routes.
A command module (``deepfusion/commands/``) exposes ``add_arguments(parser)``
and ``run(args) -> int`` and is imported only when its command runs, so
``deepfusion --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from deepfusion.errors import DataWarning, DeepFusionError, first_line

# name -> (module, one-line help). Order is the order shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "reproduce": (
        "deepfusion.commands.reproduce",
        "the main job: theory checks, sanity runs, head comparison and figures",
    ),
    "train": (
        "deepfusion.commands.train",
        "train a SimCLR model (backbone + projection head) from a preset and overrides",
    ),
    "eval": (
        "deepfusion.commands.evaluate",
        "evaluate a trained run: kNN, linear probe, head 1-NN, random-backbone baseline",
    ),
    "verify": ("deepfusion.commands.verify", "run every symbolic, numeric and property check of the theory (S1-S15)"),
    "analyze": ("deepfusion.commands.analyze", "measure a trained head's attention layer by layer against the theory"),
    "heads": (
        "deepfusion.commands.heads",
        "compare projection heads trained on the same seeds: transformer minus each, paired",
    ),
    "sanity": ("deepfusion.commands.sanity", "synthetic sanity experiments: idealised layers and a small trained head"),
    "figures": (
        "deepfusion.commands.figures",
        "regenerate the paper's figures and tables into one folder with an index",
    ),
    "predict": (
        "deepfusion.commands.predict",
        "predict from the config, before training, where a head's attention fuses (S13-S15)",
    ),
    "bench": ("deepfusion.commands.bench", "benchmarks: head, training step and theory, printed as a table and JSON"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error format: one line on stderr, exit code 2, no usage dump."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message}; see {self.prog} --help", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="deepfusion",
        description=(
            "Deep Fusion verification suite: a SimCLR model whose projection head is a "
            "transformer attending across the batch, the theory of why its attention "
            "fuses same-class samples (S1-S15), and experiments that tie the two together."
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
    parser = _Parser(
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
        previous = warnings.showwarning
        warnings.showwarning = _one_line_warnings(name, previous)
        try:
            return int(module.run(args) or 0)
        finally:
            warnings.showwarning = previous
    except DeepFusionError as err:
        if debug:
            raise
        print(f"deepfusion {name}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"deepfusion {name}: interrupted", file=sys.stderr)
        return 130
    except OSError as err:  # a path or the disk, not the code: the modules name paths where they can
        if debug:
            raise
        print(f"deepfusion {name}: error: {os_message(err)}; rerun with --debug for the traceback", file=sys.stderr)
        return 3
    except (MemoryError, RuntimeError) as err:
        if debug or not is_out_of_memory(err):
            raise
        first = first_line(err, limit=160)
        print(
            f"deepfusion {name}: error: out of memory ({first}); lower the batch size (train.batch_size, "
            "eval.head_batch) or the model size; rerun with --debug for the traceback",
            file=sys.stderr,
        )
        return 3


def _one_line_warnings(name: str, default):
    """``warnings.showwarning`` printing the project's own warnings as one line, like its errors."""

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataWarning):
            print(f"deepfusion {name}: warning: {message}", file=sys.stderr, flush=True)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def os_message(err: OSError) -> str:
    """``cannot use PATH (reason)`` for an ``OSError``, naming both paths of a failed rename or link."""
    reason = err.strerror or str(err) or type(err).__name__
    paths = [p for p in (err.filename, err.filename2) if p is not None]
    if isinstance(err, FileExistsError) and paths and os.path.isfile(paths[0]):
        reason = "a file stands where a folder is needed"  # mkdir(parents=True) below a file
    if not paths:
        return f"{reason} (an input/output error; check free disk space and the output folder)"
    return f"cannot use {' -> '.join(map(str, paths))} ({reason}); check the path exists and is writable"


def is_out_of_memory(err: BaseException) -> bool:
    """Host ``MemoryError``, ``torch.OutOfMemoryError`` (CUDA) or the CPU allocator's RuntimeError
    (``can't allocate memory``, or C++'s ``std::bad_alloc`` for a model far too large)."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    return isinstance(err, RuntimeError) and any(s in str(err) for s in ("can't allocate memory", "bad_alloc"))


if __name__ == "__main__":
    raise SystemExit(main())
