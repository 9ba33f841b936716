"""Interoperability with other implementations (mace-torch model import)."""
