"""Equivariant backbones (:mod:`.mace`, :mod:`.nequip`) on the shared pieces of :mod:`.common`: each maps
:class:`~scalarjax.graph.inputs.GraphInputs` to per-atom energies ``[N]`` in units of the model's ``scale``."""
