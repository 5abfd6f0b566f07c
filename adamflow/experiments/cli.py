"""Argument types shared by the scripts' command lines: each checks one flag's value so a
bad value exits with status 2 and a message naming the flag (argparse's own mechanism)."""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def checked(convert: Callable[[str], Any], ok: Callable[[Any], bool], allowed: str) -> Any:
    """An argparse ``type=``: ``convert(text)``, which must satisfy ``ok``; otherwise argparse
    exits with status 2 and ``argument --flag: must be <allowed>, got <text>``."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {text}")
        return value

    parse.__name__ = allowed
    return parse


def integer(minimum: int) -> Any:
    """An argparse ``type=`` for an integer ``>= minimum``."""
    return checked(int, lambda n: n >= minimum, f"an integer >= {minimum}")


def number(low: float | None = None, *, low_open: bool = False, high: float | None = None) -> Any:
    """An argparse ``type=`` for a finite number ``>= low`` (``> low`` with ``low_open``)
    and ``< high``."""
    bounds = [f"{'>' if low_open else '>='} {low:g}"] if low is not None else []
    bounds += [f"< {high:g}"] if high is not None else []

    def ok(x: float) -> bool:
        above = low is None or (x > low if low_open else x >= low)
        return math.isfinite(x) and above and (high is None or x < high)

    return checked(float, ok, " ".join(["a finite number", " and ".join(bounds)]).strip())


def unwritable_reason(folder: Path) -> str | None:
    """Why ``folder`` cannot be written into, or ``None`` when it can: the nearest existing
    folder on its path must take a new file (tried for real, with a temporary file that is
    removed: permission bits do not tell, e.g. for root on /proc)."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        return f"{existing} is a file"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"{existing} does not take new files ({error.strerror or error})"
    return None


def writable_folder(text: str) -> Path:
    """An argparse ``type=`` for a folder to write into: not a file, and creatable."""
    path = Path(text)
    reason = unwritable_reason(path)
    if reason:
        raise argparse.ArgumentTypeError(f"must be a folder to write into, but {reason}")
    return path


def writable_file(text: str) -> Path:
    """An argparse ``type=`` for a file to write: not a folder, in a creatable folder."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"must be a file to write, but {path} is a folder")
    reason = unwritable_reason(path.parent)
    if reason:
        raise argparse.ArgumentTypeError(f"must be a file to write, but {reason}")
    return path


def exit_with_error(prog: str, message: str) -> None:
    """Print ``<prog>: error: <message>`` as one line on stderr and exit with status 2 (a
    command-line error, as argparse's), without a traceback."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)
