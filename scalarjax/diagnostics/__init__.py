"""Physical diagnostics of a trained potential: repulsive walls, phonons, radial distribution.

Library functions returning JSON-serialisable dicts (floats, lists, None), plus ``plot_*``
helpers that overlay one result or several labelled ones (``{"base": r1, "pan+pgs": r2}``) into
a PNG/PDF without touching pyplot. phonopy and matplotlib are imported only when used.

| module | functions |
|---|---|
| :mod:`~scalarjax.diagnostics.repulsion` | ``dimer_curve``, ``compression_curve``, ``softening_flags``, ``compression_flags``, ``shortest_distance`` |
| :mod:`~scalarjax.diagnostics.phonons` | ``phonons`` (phonopy), ``gamma_frequencies_fd`` (independent Γ check), Si Γ references |
| :mod:`~scalarjax.diagnostics.reference` | ``pair_forces``, ``short_pair_force_errors``, ``pressure``, ``stress_errors`` (signed errors against the data's labels) |
| :mod:`~scalarjax.diagnostics.rdf` | ``rdf``, ``first_peak``, ``onset``, ``liquid_structure`` (model vs AIMD at one state point) |
"""

from .phonons import (
    SI_DFT_PBE_GAMMA_OPTICAL_THZ,
    SI_EXPERIMENT_GAMMA_OPTICAL_THZ,
    gamma_frequencies_fd,
    phonons,
    plot_phonon_bands,
)
from .rdf import first_peak, liquid_structure, onset, plot_rdfs, rdf
from .reference import pair_forces, pressure, short_pair_force_errors, stress_errors
from .repulsion import (
    compression_curve,
    compression_flags,
    dimer_curve,
    plot_compression_curves,
    plot_dimer_curves,
    shortest_distance,
    softening_flags,
)

__all__ = [
    "SI_DFT_PBE_GAMMA_OPTICAL_THZ",
    "SI_EXPERIMENT_GAMMA_OPTICAL_THZ",
    "compression_curve",
    "compression_flags",
    "dimer_curve",
    "first_peak",
    "gamma_frequencies_fd",
    "liquid_structure",
    "onset",
    "pair_forces",
    "phonons",
    "plot_compression_curves",
    "plot_dimer_curves",
    "plot_phonon_bands",
    "plot_rdfs",
    "pressure",
    "rdf",
    "short_pair_force_errors",
    "shortest_distance",
    "softening_flags",
    "stress_errors",
]
