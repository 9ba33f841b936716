"""Writes that are never half done and never follow a symlink out of their directory.

Every file of a run (and every output of ``md``/``relax``) is written under a temporary name in
the destination's own directory and then ``os.replace``-d onto its name. ``rename(2)`` is atomic
on POSIX file systems, so a reader (or a run killed with SIGKILL at any moment) sees the old file
or the new one, never a mixture; and it replaces a symlink *itself*, so a link planted in a run
directory is never written through. Directories (orbax checkpoints) are swapped with two renames,
see :func:`replace_dir`.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import tempfile
from typing import Iterator

from scalarjax.errors import InputError


@contextlib.contextmanager
def atomic_path(path, suffix: str = "") -> Iterator[pathlib.Path]:
    """Yields a temporary path beside ``path``; on success it is renamed onto ``path`` (on error removed).

    ``suffix`` keeps an extension for writers that pick the format from it (matplotlib, ase.io).
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.tmp-", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp = pathlib.Path(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path, text: str) -> None:
    """Atomically replace ``path`` with ``text`` (flushed to disk before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def write_json(path, obj, indent: int = 1) -> None:
    """Atomically replace ``path`` with ``obj`` as JSON (a trailing newline), via :func:`write_text`."""
    write_text(path, json.dumps(obj, indent=indent) + "\n")


def replace_dir(new: pathlib.Path, path: pathlib.Path) -> None:
    """Swap the complete directory ``new`` in as ``path``: ``path → path.old``, ``new → path``, drop ``.old``.

    At every moment one complete copy exists under ``path``, ``path.new`` or ``path.old``;
    :func:`recover_dir` puts it back under ``path`` after a crash.
    """
    old = path.with_name(path.name + ".old")
    if path.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(path, old)
    os.replace(new, path)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(path: pathlib.Path) -> None:
    """After a crash inside :func:`replace_dir`: bring ``path.new`` (newer) or ``path.old`` back as ``path``."""
    if path.exists():
        return
    for cand in (path.with_name(path.name + ".new"), path.with_name(path.name + ".old")):
        if cand.is_dir():
            os.replace(cand, path)
            return


def check_inside(base, path, what: str = "output") -> pathlib.Path:
    """``path`` if it resolves inside ``base`` (symlinks followed), else an :class:`InputError`.

    A run directory received from someone else may hold symlinks (``md -> /home/...``); its outputs
    must not land outside it.
    """
    base, path = pathlib.Path(base), pathlib.Path(path)
    real_base, real = base.resolve(), path.resolve()
    if real != real_base and real_base not in real.parents:
        raise InputError(
            f"{path}: is a symlink (or under one) pointing to {real}, outside {base}; "
            f"refusing to write the {what} there (remove the link or choose another output)"
        )
    return path


def fresh_name(path, is_taken=None) -> pathlib.Path:
    """``path`` if free, else the first free ``stem-2.suffix``, ``stem-3.suffix``, ... (never overwrites)."""
    path = pathlib.Path(path)
    taken = is_taken or (lambda p: os.path.lexists(p))
    if not taken(path):
        return path
    k = 2
    while taken(path.with_name(f"{path.stem}-{k}{path.suffix}")):
        k += 1
    return path.with_name(f"{path.stem}-{k}{path.suffix}")


def create_exclusive(path, mode: str = "w"):
    """Open a *new* file (never an existing file or a symlink's target): ``O_CREAT | O_EXCL``."""
    return open(path, mode.replace("w", "x"))
