"""Option values of the command-line tools, checked where argparse reads them.

    p.add_argument("--erase-prob", type=number(low=0, high=1, says="between 0 and 1"), default=0.0)
    args = parse_args(p, argv, "fer-train")   # None after printing "fer-train: --erase-prob must be ..., got 1.5"

`number(...)` makes a `type=` that refuses a value outside its range, NaN and (unless asked) infinity with "must be
<says>, got <value>";
`parse_args` reports such a refusal (and any other bad option value) as one line on stderr instead of argparse's
usage text, so every tool says what is wrong the same way. --help and a missing or unknown option still end in
argparse's own exit. `HelpFormatter` makes --help give each option's default beside its meaning. `out_problem`
checks a tool's output file before a long run, so a file it cannot write is found before the run, not after it.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable, Sequence


def number(kind: type = float, *, low: float | None = None, high: float | None = None, low_open: bool = False,
           high_open: bool = False, finite: bool = True, says: str) -> Callable[[str], float]:
    """An argparse type: `kind(text)` within [low, high] (open at an end with low_open / high_open; NaN never, an
    infinity only with finite=False, for an option where infinity means something). A value outside raises
    ArgumentTypeError("must be <says>, got <value>")."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {says}, got {text!r}") from None
        inside = not (isinstance(value, float) and (math.isnan(value) or (finite and math.isinf(value))))
        if low is not None:
            inside = inside and (value > low if low_open else value >= low)
        if high is not None:
            inside = inside and (value < high if high_open else value <= high)
        if not inside:
            raise argparse.ArgumentTypeError(f"must be {says}, got {value}")
        return value

    parse.__name__ = kind.__name__
    return parse


class HelpFormatter(argparse.HelpFormatter):
    """--help that gives every option's default after its meaning, as "(default: X)", unless the help already
    says what the default is (any help with the word "default"); flags (on when given) show none, and an on/off
    pair (--int8/--no-int8) shows the one in force, as "(default: --int8)"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, argparse.SUPPRESS) or "default" in text.lower():
            return text
        if isinstance(action, argparse.BooleanOptionalAction):
            off = [s for s in action.option_strings if s.startswith("--no-")]
            on = [s for s in action.option_strings if s not in off]
            return text + f" (default: {(on if action.default else off)[0]})"
        if action.nargs == 0:
            return text
        if not action.option_strings and action.nargs not in ("?", "*"):
            return text  # a required positional
        return text + " (default: %(default)s)"


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None, prefix: str) -> argparse.Namespace | None:
    """parser.parse_args(argv); for a bad option value, print `<prefix>: <option> <what is wrong>` to stderr and
    return None (the caller exits with status 2)."""
    parser.exit_on_error = False
    try:
        return parser.parse_args(argv)
    except argparse.ArgumentError as exc:
        name = exc.argument_name or "an argument"
        print(f"{prefix}: {name} {exc.message}", file=sys.stderr)
        return None


def out_problem(out: Path) -> str | None:
    """Why the file `out` cannot be written (it is a directory, its folder cannot be made or written to), or None;
    makes its folder. Writes nothing to `out` itself."""
    import tempfile
    if out.is_dir():
        return "is a directory; name a file"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            with open(out, "a"):  # opened for appending, not written: what it holds stays
                pass
        else:
            with tempfile.TemporaryFile(dir=out.parent):
                pass
    except OSError as exc:
        return f"cannot be written ({exc.strerror or exc})"
    return None
