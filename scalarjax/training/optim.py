"""Optimiser (optax) and the jitted training step.

* Adam / AMSGrad / AdamW after global-norm clipping (AMSGrad as PyTorch and MACE define it, see
  :func:`scale_by_amsgrad`); weight decay on weight matrices only (ndim ≥ 2): decoupled for
  AdamW, coupled L2 (torch Adam's ``weight_decay``, as MACE uses) for Adam and AMSGrad; a linear
  warm-up in the step; the learning rate is an injected hyper-parameter that the host changes
  per epoch (plateau / cosine / stage two) without recompiling.
* EMA of the parameters (``ema_decay``; evaluation and checkpoints use it).
* A non-finite loss or gradient leaves the state untouched (the step is skipped, counted in
  ``metrics["skipped"]``); the loop stops after too many in a row.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from scalarjax.training.config import TrainingConfig
from scalarjax.training.loss import LossWeights, loss_terms


def scale_by_amsgrad(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """AMSGrad with the running maximum taken over the *raw* second moment (PyTorch, MACE).

    ``m_t = b1 m + (1-b1) g``, ``v_t = b2 v + (1-b2) g²``, ``v̂_t = max(v̂_{t-1}, v_t)``,
    update ``= (m_t / (1-b1^t)) / (sqrt(v̂_t / (1-b2^t)) + eps)``.

    ``optax.amsgrad`` instead keeps the maximum of the bias-*corrected* ``v_t/(1-b2^t)``: the first
    step's ``g_1²`` then stays in the denominator for the whole run. An interatomic potential's
    first gradients are orders of magnitude above later ones (the energy error at init is
    ~100× the final one), so with optax's variant the parameters that set the energy and stress
    keep a tiny effective learning rate (the measured effect: ``docs/performance-notes.md``).
    """

    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)
        return optax.ScaleByAmsgradState(count=jnp.zeros([], jnp.int32), mu=zeros(), nu=zeros(), nu_max=zeros())

    def update_fn(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)  # the max of the raw moment, then bias-corrected
        mu_hat, nu_hat = optax.tree.bias_correction(mu, b1, count), optax.tree.bias_correction(nu_max, b2, count)
        out = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + eps), mu_hat, nu_hat)
        return out, optax.ScaleByAmsgradState(count=count, mu=mu, nu=nu, nu_max=nu_max)

    return optax.GradientTransformation(init_fn, update_fn)


def amsgrad(learning_rate) -> optax.GradientTransformation:
    """:func:`scale_by_amsgrad` followed by ``−learning_rate`` (a float, schedule or injected hyper-parameter)."""
    return optax.chain(scale_by_amsgrad(), optax.scale_by_learning_rate(learning_rate))


@flax.struct.dataclass
class TrainState:
    """What the jitted step carries (a pytree): ``step`` (finite steps taken, int32 scalar), ``params``,
    ``opt_state`` (with the injected ``learning_rate``) and ``ema`` (the EMA of the parameters)."""

    step: jnp.ndarray
    params: Any
    opt_state: Any
    ema: Any


def make_optimizer(tc: TrainingConfig) -> optax.GradientTransformation:
    """The optimiser of ``tc`` (module docstring): clipping at ``clip_norm`` (0: off), weight decay,
    Adam/AMSGrad/AdamW, with ``learning_rate`` injected (see :func:`set_lr`). ``ValueError`` for another name."""
    if tc.optimizer not in ("adam", "amsgrad", "adamw"):
        raise ValueError(f"training.optimizer: unknown {tc.optimizer!r} (adam | amsgrad | adamw)")
    decay_mask = lambda params: jax.tree.map(lambda x: x.ndim >= 2, params)

    def base(learning_rate):
        parts = [optax.clip_by_global_norm(tc.clip_norm)] if tc.clip_norm > 0 else []
        if tc.optimizer == "adamw":
            parts.append(optax.adamw(learning_rate, weight_decay=tc.weight_decay, mask=decay_mask))
        else:  # coupled L2 decay on weight matrices (torch Adam's weight_decay, as MACE uses)
            if tc.weight_decay > 0:
                parts.append(optax.add_decayed_weights(tc.weight_decay, decay_mask))
            parts.append(optax.adam(learning_rate) if tc.optimizer == "adam" else amsgrad(learning_rate))
        return optax.chain(*parts)

    return optax.inject_hyperparams(base)(learning_rate=tc.lr)


def init_state(params, optimizer) -> TrainState:
    """Step 0, ``optimizer.init(params)`` and the EMA as a copy of ``params``."""
    # The EMA starts as a copy: params and EMA are donated separately to the jitted step.
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params), ema=jax.tree.map(jnp.copy, params))


def set_lr(state: TrainState, lr: float) -> TrainState:
    """``state`` with the injected learning rate set to ``lr`` (no recompilation: it is data, not a constant)."""
    hp = dict(state.opt_state.hyperparams)
    hp["learning_rate"] = jnp.asarray(lr, hp["learning_rate"].dtype)
    return state.replace(opt_state=state.opt_state._replace(hyperparams=hp))


def make_train_step(
    potential_fn: Callable,
    weights: LossWeights,
    optimizer,
    ema_decay: float,
    warmup_steps: int,
    terms_fn: Callable = loss_terms,
    jit: bool = True,
):
    """``(state, batch, energy_weight) → (state, metrics)``, jitted with the state donated.

    ``terms_fn(pred, batch, weights)`` gives the loss terms (default :func:`loss_terms`; the
    data-parallel step passes its global-batch version, ``scalarjax.training.parallel``);
    ``jit=False`` returns the plain function for a caller that jits it with shardings."""

    def loss_fn(params, batch, energy_weight):
        pred = potential_fn(params, batch)
        terms = terms_fn(pred, batch, weights)
        total = terms["total"] + (energy_weight - weights.energy) * terms["energy"]
        return total, terms

    def step(state: TrainState, batch, energy_weight):
        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, energy_weight)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        if warmup_steps > 0:  # linear warm-up of the step size (not of the gradients: Adam ignores their scale)
            warm = jnp.minimum(1.0, (state.step + 1).astype(loss.dtype) / warmup_steps)
            updates = jax.tree.map(lambda u: u * warm.astype(u.dtype), updates)
        params = optax.apply_updates(state.params, updates)
        # Debiased EMA: the decay ramps up as (1+t)/(10+t) so early evaluations are not dominated by the init.
        t = state.step.astype(loss.dtype)
        d = jnp.minimum(ema_decay, (1.0 + t) / (10.0 + t))
        ema = jax.tree.map(lambda e, p: d.astype(p.dtype) * e + (1 - d.astype(p.dtype)) * p, state.ema, params) if ema_decay > 0 else params
        finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        new = TrainState(
            step=state.step + finite.astype(jnp.int32),
            params=keep(params, state.params),
            opt_state=keep(opt_state, state.opt_state),
            ema=keep(ema, state.ema),
        )
        metrics = {k: v for k, v in terms.items()}
        metrics["loss"] = loss
        metrics["skipped"] = (~finite).astype(jnp.int32)
        return new, metrics

    return jax.jit(step, donate_argnums=(0,)) if jit else step
