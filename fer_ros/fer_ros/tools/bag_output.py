"""Where a new bag is written: in a hidden folder beside its destination, moved there only once it is complete.

A run that fails or is interrupted (a model that cannot load, an unreadable source, a full disk, Ctrl-C) so leaves
an existing output as it was and no partial bag behind; with --overwrite the old bag is replaced only by a finished
one. `StagedWriter` (what `bagtools.open_writer` returns) wraps a rosbags Writer: `close()` finishes the bag and
moves it into place, `discard()` removes it. A process killed outright leaves its hidden `.<name>.*.partial` folder.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from fer_ros.tools.bagtools import BagError, not_only_a_bag

# rosbags opens a sqlite3 bag's file through a `file:` URI, where these characters are not part of the file name
# (`#` starts a fragment, `?` a query, `%` an escape): the data would go to another file or nowhere
SQLITE_URI_CHARS = "#?%"


def check_storage_path(path: Path, storage: str) -> None:
    """Refuses a sqlite3 bag at a path holding a character sqlite reads as URI syntax (SQLITE_URI_CHARS)."""
    bad = [c for c in SQLITE_URI_CHARS if c in str(path)]
    if storage == "sqlite3" and bad:
        raise BagError(f"a sqlite3 bag cannot be written at {path}: sqlite opens it through a URI, in which "
                       f"{' and '.join(repr(c) for c in bad)} {'is' if len(bad) == 1 else 'are'} not part of a file "
                       "name; rename the output without it, or write an mcap bag (fer-make-bag --storage mcap, "
                       "fer-replay --out-bag-storage mcap)")


def check_destination(path: Path, overwrite: bool) -> None:
    """Refuses an existing `path` without `overwrite`, and with it anything but a bag (bagtools.not_only_a_bag)."""
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise BagError(f"{path} already exists; choose another output or pass --overwrite")
        why = not_only_a_bag(path)
        if why:
            raise BagError(f"{why}; --overwrite only replaces a bag: choose another output or remove it yourself")


def write_failure(path: Path, storage: str, index: int, shape: tuple, nbytes: int, exc: Exception) -> str:
    """One line saying that the storage refused frame `index` (of array `shape`, an `nbytes` message), and, for a
    message too large for sqlite, how to make it smaller."""
    size = f"{shape[1]}x{shape[0]} px, a {nbytes / 1e6:.1f} MB message"
    why = (str(exc).splitlines() or [""])[0]
    text = f"the {storage} storage could not write frame {index} ({size}) to {path}: {type(exc).__name__}: {why}"
    if isinstance(exc, (sqlite3.DataError, OverflowError)) or "too big" in why:
        text += "; make the frames smaller with --scale, compress them with --compressed jpeg, or use --storage mcap"
    return text


class StagedWriter:
    """A rosbags Writer of a new bag at `path`, written in a hidden sibling folder (`.<name>.*.partial`) until
    `close()` moves it to `path` (replacing the bag there when `overwrite`). `discard()` removes the unfinished bag
    and leaves `path` as it was. Raises BagError, having created nothing, for an output that may not be written
    (exists without `overwrite`, not a bag, a sqlite3 path sqlite cannot open) or that the writer cannot open."""

    def __init__(self, path: Path, storage: str, storage_plugin, overwrite: bool) -> None:
        from rosbags.rosbag2 import Writer
        path = Path(path)
        if path.name in ("", ".", ".."):
            path = Path(os.path.abspath(path))
        self.path, self.storage, self.overwrite = path, storage, overwrite
        check_storage_path(path, storage)
        check_destination(path, overwrite)
        self.replaces = path.exists()
        made = [p for p in (path.parent, *path.parent.parents) if not p.exists()]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._stage = Path(tempfile.mkdtemp(prefix=f".{path.name[:64]}.", suffix=".partial", dir=path.parent))
        except OSError as exc:
            _remove_made(made)
            raise BagError(f"cannot write a bag at {path} ({exc.strerror or exc}); choose another output") from None
        self._made = made
        self._writer = Writer(self._stage / "new" / path.name, version=9, storage_plugin=storage_plugin)
        try:
            self._writer.open()
        except Exception as exc:  # rosbags, sqlite and the file system raise assorted errors
            self._writer = None
            self._remove_stage()
            raise BagError(f"cannot create the {storage} bag {path} ({type(exc).__name__}: "
                           f"{(str(exc).splitlines() or [''])[0]}); choose another output") from None

    def add_connection(self, *args, **kwargs):
        return self._writer.add_connection(*args, **kwargs)

    def write(self, connection, timestamp: int, data) -> None:
        self._writer.write(connection, timestamp, data)

    def close(self) -> None:
        """Finish the bag and move it to `path` (the old bag there, if any, is removed then). Raises BagError when
        that fails: the new bag is removed and `path` left as it was."""
        if self._writer is None:
            return
        writer, self._writer = self._writer, None
        try:
            writer.close()
            check_destination(self.path, self.overwrite)  # what is there now may differ from what was at open
            self._move_into_place()
        except BaseException as exc:
            self._remove_stage()
            if isinstance(exc, BagError) or not isinstance(exc, Exception):
                raise
            raise BagError(f"finishing the bag {self.path} failed ({type(exc).__name__}: "
                           f"{(str(exc).splitlines() or [''])[0]}); it was not written") from None

    def discard(self) -> None:
        """Close the writer and remove the unfinished bag; `path` is left as it was."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            try:
                writer.close()
            except Exception:  # the bag is removed anyway
                pass
            self._remove_stage()

    def _move_into_place(self) -> None:
        new, old = self._stage / "new" / self.path.name, self._stage / "old"
        if self.path.exists() or self.path.is_symlink():
            os.replace(self.path, old)  # the same folder's file system: renames, never copies
            try:
                os.replace(new, self.path)
            except BaseException:
                os.replace(old, self.path)
                raise
        else:
            os.replace(new, self.path)
        shutil.rmtree(self._stage, ignore_errors=True)

    def _remove_stage(self) -> None:
        shutil.rmtree(self._stage, ignore_errors=True)
        _remove_made(self._made)


def _remove_made(made: list[Path]) -> None:
    """Remove the (empty) parent folders a writer made, innermost first."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:  # not empty (something else was put there) or already gone
            break
