"""The `infopro` command: one subcommand per job, each a parser builder plus a `main(args)`."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Callable, Sequence

from .errors import InfoProError, Interrupted, elide, shown
from .files import error_reason
from .flag_types import BadNumber, flag_name
from .registry import closest_name

# name -> (help, add_arguments(parser), main(args))
Subcommand = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int | None]]


def _subcommands() -> dict[str, Subcommand]:
    from .bench.cli import add_bench_arguments, bench_main
    from .analysis import add_probe_arguments, probe_main
    from .compare import add_compare_arguments, compare_main
    from .describe import add_describe_arguments, describe_main
    from .hub import add_pull_arguments, add_push_arguments, pull_main, push_main
    from .model_file import add_export_arguments, export_main
    from .predict import add_predict_arguments, predict_main
    from .reproduce import add_reproduce_arguments, reproduce_main
    from .train import add_train_arguments, train_main

    return {
        "train": ("train a network as K locally supervised pieces", add_train_arguments, train_main),
        "describe": ("show how a network is cut into pieces and what each piece trains", add_describe_arguments, describe_main),
        "bench": ("measure peak memory, FLOPs and time of a training step: E2E, checkpointing, local methods",
                  add_bench_arguments, bench_main),
        "probe": ("estimate I(h, x) and I(h, y) along the depth of trained runs", add_probe_arguments, probe_main),
        "export": ("write a run's trained network as one file (pt, safetensors, onnx or pt2)",
                   add_export_arguments, export_main),
        "predict": ("write a segmentation run's class masks of images: palette PNGs and overlays on the images",
                    add_predict_arguments, predict_main),
        "push": ("upload a run's model with a model card (its recipe and results) to the Hugging Face Hub",
                 add_push_arguments, push_main),
        "pull": ("download a model pushed by `infopro push` from the Hugging Face Hub", add_pull_arguments, pull_main),
        "compare": ("one table and one figure for several runs: test error by method and K, mean +- std over seeds",
                    add_compare_arguments, compare_main),
        "reproduce": ("run a published table's grid (methods x K x seeds) as train runs that resume, then compare "
                      "them with the paper's numbers", add_reproduce_arguments, reproduce_main),
    }


# Subcommands that hand the flags after `--` on to the runs they launch (as args.train_flags): argparse
# with subcommands does not keep what follows `--`, so it is split off before parsing.
PASSES_FLAGS_ON = {"reproduce"}


def flag_aliases() -> dict[str, str]:
    """Other tools' names of our settings as flags (--learning-rate -> --lr), for "did you mean"."""
    from .train.args import KEY_ALIASES

    return {f"--{k.replace('_', '-')}": f"--{v.replace('_', '-')}" for k, v in KEY_ALIASES.items()}


def unknown_arguments(parser: argparse.ArgumentParser, extras: Sequence[str]) -> str:
    """One line for the words `parser` did not recognise: each unknown flag with the closest real one."""
    flags = [o for action in parser._actions for o in action.option_strings]
    unknown, stray, after_flag = [], [], False
    for word in extras:
        if word.startswith("-") and len(word) > 1 and not word[1:2].isdigit():
            name = word.split("=", 1)[0]
            close = closest_name(name, flags, flag_aliases())
            unknown.append(elide(name, 60) + (f" (did you mean {close}?)" if close else ""))
            after_flag = "=" not in word
        elif not after_flag:  # a value right after an unknown flag is its value, not a word of its own
            stray.append(word)
        else:
            after_flag = False
    parts = []
    if unknown:
        parts.append(f"unknown flag{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    if stray:
        parts.append(f"unrecognized arguments: {elide(' '.join(stray))}")
    return "; ".join(parts)


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the usage is what --help is for) and "did you mean" for flags and choices.
    Subcommand parsers are of this class too (argparse makes them of their parent's class)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # argparse collects a subcommand's unknown words and reports them against the top parser
            sub = next((a for a in self._actions if isinstance(a, argparse._SubParsersAction)), None)
            owner = sub.choices.get(getattr(parsed, sub.dest, None), self) if sub is not None else self
            owner.error(unknown_arguments(owner, extras))
        return parsed

    def _check_value(self, action: argparse.Action, value: object) -> None:
        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            close = closest_name(str(value), choices)
            hint = f"; did you mean {close!r}?" if close else ""
            listed = ", ".join(map(repr, action.choices))
            raise argparse.ArgumentError(action, f"invalid choice {shown(str(value))}{hint} (choose from {listed})")

    def _get_value(self, action: argparse.Action, arg_string: str) -> object:
        """A numeric flag's refusal reads "--lr must be > 0, got 0" (argparse would prefix "argument --lr: ")."""
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError as error:
            if isinstance(error.__context__, BadNumber):
                raise argparse.ArgumentError(None, f"{flag_name(action)} {error.__context__}") from None
            raise


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = (action.help or "").strip()
        if "default" in help_text or not action.option_strings or action.required \
                or action.default is argparse.SUPPRESS or action.nargs == 0 and action.default is False:
            return action.help
        default = "none" if action.default is None else "%(default)s"
        return f"{help_text} (default: {default})".lstrip()


def get_args_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with `argv`, a `-c FILE` given to a subcommand becomes that subcommand's defaults."""
    from . import __version__
    from .train import apply_config_file

    parser = Parser(
        prog="infopro",
        description="Locally supervised deep learning: E2E, Greedy SL, DGL and InfoPro side by side.",
    )
    parser.add_argument("--version", action="version", version=f"infopro {__version__}")
    # The top-level parser has no options that take values, so the first bare word is the subcommand.
    command = next((a for a in argv or [] if not a.startswith("-")), None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add_arguments, main_fn) in _subcommands().items():
        p = sub.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                           formatter_class=DefaultsHelpFormatter)
        add_arguments(p)
        p.set_defaults(main=main_fn)
        if name == command and any(a.dest == "config" for a in p._actions):
            apply_config_file(p, argv[argv.index(name) + 1:])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    try:
        parser = get_args_parser(argv)
    except InfoProError as error:  # a -c file's keys or values
        print(f"infopro {command}: error: {error}", file=sys.stderr)
        return 2
    passed_on = None
    if command in PASSES_FLAGS_ON and "--" in argv:
        at = argv.index("--")
        passed_on = argv[at + 1:]
    try:
        args = parser.parse_args(argv if passed_on is None else argv[:at])
    except SystemExit as stop:  # argparse has printed its one line; --help and --version exit 0 as they do
        if stop.code in (0, None):
            raise
        return int(stop.code) if isinstance(stop.code, int) else 2
    if passed_on is not None:
        args.train_flags = passed_on
    args.command_line = ["infopro", *argv]  # for a run's provenance
    try:
        with _sigterm_interrupts():
            return int(args.main(args) or 0)
    except InfoProError as error:
        print(f"infopro {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # not caught closer to where it happened: still one line, path and cause
        where = f"{error.filename}: " if getattr(error, "filename", None) else ""
        print(f"infopro {args.command}: error: {where}{error_reason(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # a data-loading worker that died, wherever torch noticed it: one line
        from .data.stream import worker_death

        death = worker_death(error)
        if death is None:
            raise
        print(f"infopro {args.command}: error: {death}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:
        print(f"infopro {args.command}: interrupted" + (f" by {stop}" if str(stop) else ""), file=sys.stderr)
        return getattr(stop, "exit_code", 130)


class _sigterm_interrupts:
    """SIGTERM (what a cluster scheduler or `kill` sends) raises `Interrupted` where the program is, as Ctrl-C
    raises KeyboardInterrupt: the same clean stop, the same message, exit status 143. Ctrl-C gets Python's
    own handler back for the command, whatever a library loaded earlier in the process set it to."""

    def __enter__(self) -> None:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = (signal.signal(signal.SIGTERM, self._raise),
                             signal.signal(signal.SIGINT, signal.default_int_handler))

    @staticmethod
    def _raise(signum: int, frame: object) -> None:
        raise Interrupted("SIGTERM", exit_code=128 + signum)

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous[0])
            signal.signal(signal.SIGINT, self.previous[1])


if __name__ == "__main__":
    sys.exit(main())
