"""Equivariant building blocks on channels-last features ``{irrep: [N, 2l+1, C]}`` (:mod:`.features`):
linear maps and MLPs, radial basis, channelwise tensor product and symmetric contraction."""
