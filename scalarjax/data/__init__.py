"""Data: the :class:`Configuration` record and readers for the supported file formats."""

from .configuration import Configuration, full_to_voigt, voigt_to_full
from .io import (
    LabelKeys,
    data_dir,
    mlearn_stress,
    read_ase,
    read_configurations,
    read_mlearn_json,
    read_rmd17_npz,
)

__all__ = [
    "Configuration",
    "LabelKeys",
    "data_dir",
    "full_to_voigt",
    "mlearn_stress",
    "read_ase",
    "read_configurations",
    "read_mlearn_json",
    "read_rmd17_npz",
    "voigt_to_full",
]
