"""The model's elements: atomic number ↔ species index (a model concept: one table per model)."""

from __future__ import annotations

import dataclasses

import numpy as np
from ase.data import chemical_symbols

from scalarjax.errors import InputError


@dataclasses.dataclass(frozen=True)
class ElementTable:
    """The model's elements: atomic number ↔ species index (sorted by atomic number)."""

    atomic_numbers: tuple[int, ...]

    def __post_init__(self):
        zs = tuple(sorted(int(z) for z in set(self.atomic_numbers)))
        if not zs:
            raise InputError("a model needs at least one element (none given)")
        object.__setattr__(self, "atomic_numbers", zs)

    def __len__(self) -> int:
        return len(self.atomic_numbers)

    def index(self, numbers: np.ndarray, source: str = "configuration") -> np.ndarray:
        numbers = np.asarray(numbers, dtype=np.int64)
        lookup = np.full(max(max(self.atomic_numbers), int(numbers.max(initial=0))) + 1, -1, np.int32)
        lookup[list(self.atomic_numbers)] = np.arange(len(self.atomic_numbers), dtype=np.int32)
        idx = lookup[numbers]
        if (idx < 0).any():
            unknown = sorted({int(z) for z in numbers[idx < 0]})
            names = ", ".join(f"{chemical_symbols[z] if z < len(chemical_symbols) else '?'} (Z={z})" for z in unknown)
            known = ", ".join(chemical_symbols[z] for z in self.atomic_numbers)
            raise InputError(f"{source}: unknown element(s) {names}; the model knows {known}")
        return idx
