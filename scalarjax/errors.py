"""User errors: a mistake in the input (a file, a frame, a key, a value), not a bug.

The command line (:func:`scalarjax.cli.main`) prints a :class:`UserError` as one line naming what
is wrong and exits with status 2; any other exception is a bug and keeps its traceback. The
subclasses also derive from the built-in exception a library caller would expect (``ValueError``,
``KeyError``, ``TypeError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input: the message alone (one line) tells the user what to change."""

    def __str__(self) -> str:  # KeyError would repr() its message
        return str(self.args[0]) if self.args else ""


class InputError(UserError, ValueError):
    """A value, file or frame that cannot be used (non-finite positions, a malformed file, ...)."""


class ConfigKeyError(UserError, KeyError):
    """An unknown key or section in a configuration."""


class ConfigTypeError(UserError, TypeError):
    """A configuration value of the wrong type."""


class RunDirError(UserError, ValueError):
    """A run directory that cannot be used as asked (another model/data, a corrupted checkpoint)."""
