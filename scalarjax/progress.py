"""Progress bars (tqdm, the field's usual one) for training epochs, MD and diagnostics.

Bars go to stderr and vanish when done (``leave=False``), so logs keep one line per epoch; they are
off when the stream is not a terminal (CI, redirected output) unless asked for.
"""

from __future__ import annotations

import sys
from typing import Iterable, Optional


def bar(iterable: Optional[Iterable] = None, total: Optional[int] = None, desc: str = "", enable: Optional[bool] = None, **kw):
    """``tqdm(iterable)`` when enabled (default: stderr is a terminal), else the iterable itself
    (or a no-op bar with ``update``/``set_postfix_str``/``close`` when ``iterable`` is None)."""
    enable = sys.stderr.isatty() if enable is None else enable
    if enable:
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr, **kw)
    return iterable if iterable is not None else _NoBar()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def close(self) -> None:
        pass
