"""MD throughput of the in-XLA engine (``scalarjax md --engine jax``) against the ASE path
(``scalarjax.simulation.md.run_md``: ASE's VelocityVerlet with ``scalarjax.Calculator``, one host
round-trip per step), NVE at 300 K with a 1 fs step, on the 64-atom mlearn Si cell (first AIMD-NVT
frame of test.json) and its 2×2×2 supercell (512 atoms), with the default medium MACE in float32
(untrained, as experiments/bench_inference.py builds it).

Per cell and path: steps/s over the timed steps (compile excluded), the compile time (the first
force call for ASE; start state and loop for the engine), the recompilations during the run (the
potential's / engine's compiled-program counters, and every jaxpr traced while the clock runs),
and for the engine its neighbour-list capacity, builds and reallocations. Both paths start from
the same positions and Maxwell–Boltzmann velocities (seeded). The ASE path's step is also
compared with the bare model call (E+F+S) in the same process, on the calculator's padded shape
and on the default bucket that experiments/bench_inference.py times.

    python experiments/bench_md_engine.py [--steps 200] [--chunk 100] [--cases si_64,si_512]
                                          [--out experiments/results/bench_md_engine_cpu.json]

``--steps`` is the step count of the 64-atom cell; larger cells run ``steps · 64 / N`` steps (at
least 20), so every case takes about the same wall time. The defaults take about 3 minutes on 2
cores. Run it as ``python -m scalarjax.launch experiments/bench_md_engine.py ...`` for the
allocator the ``scalarjax`` command uses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_inference import machine  # noqa: E402

MODEL = {"atomic_numbers": (14,), "dtype": "float32", "avg_num_neighbors": 20.0}


def si_cells(data_dir: str) -> dict:
    """``{"si_64": atoms, "si_512": atoms}``: the first AIMD-NVT frame of mlearn Si test.json and its 2×2×2 repeat."""
    from scalarjax.data.io import read_mlearn_json

    si = next(c for c in read_mlearn_json(os.path.join(data_dir, "mlearn", "Si", "test.json")) if c.config_type == "AIMD-NVT")
    si64 = si.to_atoms()
    return {"si_64": si64, "si_512": si64.repeat(2)}


class TraceCounter:
    """Counts jaxprs traced (every jit cache miss) while ``active``; registered once per process."""

    def __init__(self):
        from jax import monitoring

        self.count, self.active = 0, False
        monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kwargs):
        if self.active and event == "/jax/core/compile/jaxpr_trace_duration":
            self.count += 1

    def run(self, fn):
        """``(fn(), traces during fn)``."""
        self.count, self.active = 0, True
        try:
            return fn(), self.count
        finally:
            self.active = False


def bench_ase(pot, atoms, steps: int, traces: TraceCounter) -> dict:
    from scalarjax.calculator import Calculator
    from scalarjax.simulation.md import run_md

    calc = Calculator(pot)
    atoms.calc = calc
    t0 = time.perf_counter()
    atoms.get_forces()  # compile (run_md's own first call is then served by ASE's cache)
    compile_s = time.perf_counter() - t0
    s, n_traces = traces.run(lambda: run_md(atoms, calc, "nve", 300.0, 1.0, steps, log_interval=steps, progress=False, seed=0))
    call = bench_model_call(pot, atoms, calc.capacity)
    return {
        "model_call": call,
        "step_over_model_call": round(1e3 / s["steps_per_s"] / call["ms_at_calculator_padding"], 3),
        "step_over_default_padding_call": round(1e3 / s["steps_per_s"] / call["ms_at_default_padding"], 3),
        "steps": steps,
        "steps_per_s": round(s["steps_per_s"], 3),
        "ms_per_step": round(1e3 / s["steps_per_s"], 2),
        "compile_s": round(compile_s, 2),
        "compiles_during_run": s["compiles_during_run"],
        "traces_during_run": n_traces,
    }


def bench_model_call(pot, atoms, capacity, n: int = 10) -> dict:
    """Median ms of the bare model call (E+F+S, as the calculator asks on a periodic cell) on the
    calculator's padded shape (``capacity``) and on the default bucket of ``batch_graphs`` (what
    experiments/bench_inference.py times)."""
    import jax
    import numpy as np

    from scalarjax.data.configuration import Configuration
    from scalarjax.graph.batch import batch_graphs

    graph = pot.graph(Configuration.from_atoms(atoms))
    fn, out = pot.function(compute_stress=True), {}
    for key, size in (("ms_at_calculator_padding", capacity), ("ms_at_default_padding", None)):
        batch = jax.device_put(batch_graphs([graph], size))
        jax.block_until_ready(fn(pot.params, batch))
        times = []
        for _ in range(n):
            t = time.perf_counter()
            jax.block_until_ready(fn(pot.params, batch))
            times.append(time.perf_counter() - t)
        out[key] = round(1e3 * float(np.median(times)), 2)
        out[key.replace("ms_at", "edges_at")] = int(batch.senders.shape[0])
    return out


def bench_jax(pot, atoms, steps: int, chunk: int, traces: TraceCounter) -> dict:
    from scalarjax.simulation.md import run_md_engine

    kw = dict(log_interval=steps, traj_interval=steps, progress=False, seed=0, chunk_steps=min(chunk, steps))
    s, n_traces = traces.run(lambda: run_md_engine(atoms, pot, "nve", 300.0, 1.0, steps, **kw))
    return {
        "steps": steps,
        "steps_per_s": round(s["steps_per_s"], 3),
        "ms_per_step": round(1e3 / s["steps_per_s"], 2),
        "compile_s": round(s["compile_seconds"], 2),
        "compiles_during_run": s["compiles_during_run"],
        "traces_total": n_traces,  # compile included: the start state and the loop
        "chunk_steps": min(chunk, steps),
        **{k: s[k] for k in ("neighbor_capacity", "neighbor_builds", "reallocations")},
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("SCALARJAX_DATA", os.path.join(HERE, "..", "..", "shared", "data")))
    ap.add_argument("--steps", type=int, default=200, help="steps of the 64-atom cell (scaled by 64/N for larger ones, ≥ 20)")
    ap.add_argument("--chunk", type=int, default=100, help="engine steps per device call")
    ap.add_argument("--cases", default="si_64,si_512")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "bench_md_engine_cpu.json"))
    args = ap.parse_args()

    import jax

    from scalarjax.config import load_model_config
    from scalarjax.potential import Potential

    report = {"command": " ".join([os.path.basename(sys.executable)] + sys.argv), "machine": machine()}
    report.update(jax=jax.__version__, backend=jax.default_backend(), model="MACE medium (defaults), float32, untrained", cells={})
    traces = TraceCounter()
    cells = si_cells(args.data)
    for name in args.cases.split(","):
        atoms = cells[name]
        steps = max(20, args.steps * 64 // len(atoms))
        pot = Potential(load_model_config(MODEL), seed=0)
        row = {"n_atoms": len(atoms), "ase": bench_ase(pot, atoms.copy(), steps, traces)}
        row["jax"] = bench_jax(pot, atoms.copy(), steps, args.chunk, traces)
        row["speedup_jax_over_ase"] = round(row["jax"]["steps_per_s"] / row["ase"]["steps_per_s"], 3)
        report["cells"][name] = row
        print(json.dumps({name: row}), flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
