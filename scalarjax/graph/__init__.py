"""Graphs: neighbour lists (:mod:`.neighbors`), padded batches (:mod:`.batch`) and the model's typed
input (:mod:`.inputs`). Lengths in Å, energies in eV, forces in eV/Å, stress in eV/Å³ (ASE's sign)."""
