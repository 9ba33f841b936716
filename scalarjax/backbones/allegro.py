"""Allegro (Musaelian et al., Nat. Commun. 2023): strictly local, every feature lives on an ordered edge.

The math of nequip-allegro 0.8 (the reference; read, not copied). Edge e = (j → i), centre i.
F = num_scalar_features, U = num_tensor_features, n = l_max + 1, Y = spherical harmonics of r̂_e.

Two-body scalar embedding (the only place the cutoff envelope u enters; every later map is
bias-free and SiLU(0) = 0, so all edge features vanish smoothly at r_max):

    e0_e = edge_scalars(B(r_e) · u(r_e))                                       [E, num_bessel]
    e1_e = [E_c[s_i] ‖ E_n[s_j]] ⊙ Linear(e0_e)                                 [E, F]   (E_c, E_n: [S, F/2])
    x_e  = MLP_2body(e1_e)                                                       [E, F]   (hidden: model.radial_mlp)

Tensor features and the first environment weights (two separate linears of x):

    V⁰_e[l, m, u] = Linear_V(x_e)[l, u] · Y_lm(r̂_e)                           {l: [E, 2l+1, U]}
    [h⁰_e ‖ w⁰_e]  = Linear_0(x_e)                                              [E, F + n·U]

Layer t = 0 … L−1:

    Γ_i[l, m, u]  = aggregate_{e: centre i}  w^t_e[l, u] · Y_lm(r̂_e)           (Σ / avg_num_neighbors; the ℓ=0 hook)
    V^{t+1}_e     = Σ_paths W_t[p, u] · (V^t_e ⊗ Γ_{i(e)})_p                     (channelwise "uuu" product, pruned irreps)
    [h^{t+1}_e ‖ w^{t+1}_e] = MLP_t([h⁰_e ‖ … ‖ h^t_e ‖ V^{t+1}_e[0e]])          (the last layer has no w)
    h^{t+1}_e     ← node_scalars(h^{t+1}_e)                                      (the in-place scalar hook, per edge)

Readout: ``E_e = MLP_out([readout_scalars(h⁰_e) ‖ … ‖ readout_scalars(h^L_e)])`` and
``E_i = (1/sqrt(2·avg_num_neighbors)) Σ_{e: centre i} E_e`` (the reference's factor: the pair ij and
ji both carry the bond). Atom i's energy depends only on the atoms within r_max of i.

Where the scalar-pathway hooks act (:mod:`scalarjax.scalar.pathway`): ``edge_scalars`` on the
two-body radial features e0 (before the embedding; layer 0); ``aggregate`` on the environment sum
Γ, a channelwise product of a constant scalar with Y whose ℓ=0 path is the scalar environment —
its ℓ=0 weights w^t_e[0] (``scalar_edge_weights``) and its per-atom ℓ=0 normalisation
(``scalar_aggregate``); ``node_scalars`` on the scalar latent h^{t+1}_e after each layer;
``readout_scalars`` on each latent h^t_e before the readout MLP (so per edge, ``[E, F]``, where
MACE and NequIP pass per-atom scalars).

Differences from the reference, on purpose: the environment sum is normalised by avg_num_neighbors
(the reference: its square root), as in every scalarjax backbone and in PAN; the Bessel basis is
scalarjax's sqrt(2/r_max)·sin(nπr/r_max)/r (a constant factor from the reference's, absorbed by the
first linear); SiLU is normalised to unit second moment; weights are N(0, 1) with 1/sqrt(fan_in)
in the forward pass; the per-species scale and shift are scalarjax's E0 + shift + scale.
"""

from __future__ import annotations

import functools

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp

from scalarjax.backbones.common import Backbone, edge_inputs
from scalarjax.graph.inputs import GraphInputs
from scalarjax.nn.features import Features, natural_irreps, sort_irreps
from scalarjax.nn.linear import MLP
from scalarjax.nn.tensor_product import channelwise_tp_plan, edge_tensor_product, edge_tp_plan
from scalarjax.scalar import pathway


@functools.cache
def allegro_layer_irreps(num_layers: int, l_max: int, parity: bool) -> tuple[tuple[str, ...], ...]:
    """Output irreps of each layer's product ``V^t ⊗ Γ``: those reachable from V⁰ (the spherical
    harmonics' irreps, ℓ ≤ l_max; both parities if ``parity``) that can still reach the last layer's
    0e. The reference prunes the same way: for two layers parity changes nothing."""
    sh = natural_irreps(l_max)
    hidden = {str(e3nn.Irrep(l, p)) for l in range(l_max + 1) for p in ((1, -1) if parity else ((-1) ** l,))}

    def products(ir1: str) -> set:
        return {str(ir3) for ir2 in sh for ir3 in e3nn.Irrep(ir1) * e3nn.Irrep(ir2)}

    forward, irreps = [], set(sh)
    for _ in range(num_layers):
        irreps = {ir for ir1 in irreps for ir in products(ir1)} & hidden
        forward.append(irreps)
    out, needed = [None] * num_layers, {"0e"}
    for t in reversed(range(num_layers)):
        out[t] = forward[t] & needed
        needed = {ir1 for ir1 in hidden if products(ir1) & out[t]}
    return tuple(sort_irreps(o) for o in out)


class TwoBodyEmbedding(nn.Module):
    """``x_e = MLP_2body([E_c[s_i] ‖ E_n[s_j]] ⊙ Linear(e0_e))``: ``[E, num_bessel] → [E, F]``."""

    num_species: int
    features: int
    hidden: tuple[int, ...]
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, e0: jnp.ndarray, onehot: jnp.ndarray, senders: jnp.ndarray, receivers: jnp.ndarray) -> jnp.ndarray:
        half = self.features // 2
        normal = lambda k, s: jax.random.normal(k, s, self.dtype)
        centre = self.param("centre_embedding", normal, (self.num_species, half))
        neighbour = self.param("neighbour_embedding", normal, (self.num_species, half))
        chem = jnp.concatenate([onehot[receivers] @ centre, onehot[senders] @ neighbour], axis=-1)
        e1 = chem * MLP(features=(self.features,), dtype=self.dtype, name="basis_linear")(e0)
        return MLP(features=tuple(self.hidden) + (self.features,), dtype=self.dtype, name="mlp")(e1)


class AllegroEnvironment(nn.Module):
    """``Γ_i = aggregate_{e: centre i} w_e ⊙ Y(r̂_e)``: ``w [E, n, U]`` → ``{l: [N, 2l+1, U]}``.

    The environment is the channelwise product of a constant scalar with Y, so it goes through the
    shared ``aggregate`` hook; its ℓ=0 path (the first) is the scalar environment that PAN and PGS
    may re-weight, and the ℓ>0 paths are always ``(1/avg_num_neighbors) Σ``."""

    l_max: int
    layer: int
    transforms: tuple = ()

    @nn.compact
    def __call__(self, env_w: jnp.ndarray, sh: jnp.ndarray, ctx) -> Features:
        plan = channelwise_tp_plan(("0e",), self.l_max, natural_irreps(self.l_max))  # 0e ⊗ Y_l → l, ℓ=0 first
        ones = {"0e": jnp.ones((ctx.node_mask.shape[0], 1, env_w.shape[-1]), sh.dtype)}  # node features, read at senders
        env = pathway.aggregate(self.transforms, plan, ones, sh, env_w, ctx, self.layer)  # {l: [N, 1, 2l+1, U]}
        return {ir: block[:, 0] for ir, block in env.items()}


class AllegroLayer(nn.Module):
    """One layer: environment Γ of every centre, the product ``V ⊗ Γ`` on each edge, the latent MLP.

    ``settings``: the :class:`~scalarjax.config.AllegroConfig`. Returns ``(V^{t+1} {ir: [E, 2l+1, U]},
    h^{t+1} [E, F], w^{t+1} [E, n, U] or None after the last layer)``."""

    settings: object
    irreps_out: tuple[str, ...]
    layer: int
    transforms: tuple = ()

    @nn.compact
    def __call__(self, V: Features, latents: list, env_w: jnp.ndarray, sh: jnp.ndarray, ctx) -> tuple:
        bb = self.settings
        F, U, n = bb.num_scalar_features, bb.num_tensor_features, bb.l_max + 1
        env = AllegroEnvironment(l_max=bb.l_max, layer=self.layer, transforms=self.transforms, name="environment")(env_w, sh, ctx)
        env_e = {ir: block[ctx.receivers] for ir, block in env.items()}
        tp = edge_tp_plan(tuple(sorted(V)), natural_irreps(bb.l_max), self.irreps_out)
        dtype = sh.dtype  # the model's dtype
        W = self.param("tp_weights", lambda k, s: jax.random.normal(k, s, dtype), (tp.num_paths, U))
        V_next = edge_tensor_product(tp, V, env_e, W)
        last = self.layer == bb.num_layers - 1
        inputs = jnp.concatenate([*latents, V_next["0e"][:, 0, :]], axis=-1)
        out = MLP(features=tuple(bb.latent_mlp) + (F + (0 if last else n * U),), dtype=dtype, name="latent_mlp")(inputs)
        w = None if last else out[:, F:].reshape(-1, n, U)
        return V_next, out[:, :F], w


class Allegro(Backbone):
    """Allegro (equations in the module docstring; settings: :class:`~scalarjax.config.AllegroConfig`)."""

    @nn.compact
    def __call__(self, graph: GraphInputs) -> jnp.ndarray:
        cfg, bb, S = self.config, self.config.backbone, self.num_species
        dtype = jnp.dtype(cfg.dtype)
        F, U, n = bb.num_scalar_features, bb.num_tensor_features, bb.l_max + 1
        sh, ctx = edge_inputs(cfg, bb.l_max, graph, S)

        e0 = pathway.edge_scalars(self.transforms, ctx.radial, ctx, 0)
        embed = TwoBodyEmbedding(num_species=S, features=F, hidden=cfg.radial_mlp, dtype=dtype, name="two_body")
        x = embed(e0, ctx.onehot, graph.senders, graph.receivers)
        wV = MLP(features=(n * U,), dtype=dtype, name="tensor_embedding")(x).reshape(-1, n, U)
        V = {ir: wV[:, l, None, :] * sh[:, l * l : (l + 1) ** 2, None] for l, ir in enumerate(natural_irreps(bb.l_max))}
        first = MLP(features=(F + n * U,), dtype=dtype, name="first_projection")(x)
        latents, env_w = [first[:, :F]], first[:, F:].reshape(-1, n, U)

        for t, irreps_out in enumerate(allegro_layer_irreps(bb.num_layers, bb.l_max, bb.parity)):
            layer = AllegroLayer(settings=bb, irreps_out=irreps_out, layer=t, transforms=self.transforms, name=f"layer_{t}")
            V, h, env_w = layer(V, latents, env_w, sh, ctx)
            latents.append(pathway.node_scalars(self.transforms, h, ctx, t))

        scalars = [pathway.readout_scalars(self.transforms, h, ctx, t) for t, h in enumerate(latents)]
        edge_energy = MLP(features=tuple(bb.readout_mlp) + (1,), dtype=dtype, name="edge_energy")(jnp.concatenate(scalars, -1))[:, 0]
        edge_energy = edge_energy * ctx.edge_mask
        per_atom = jax.ops.segment_sum(edge_energy, graph.receivers, num_segments=graph.species.shape[0])
        return per_atom * (2.0 * cfg.avg_num_neighbors) ** -0.5
