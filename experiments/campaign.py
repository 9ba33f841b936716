"""The scalar-pathway campaign runner (issue 13): paired, resumable, one result file per run.

    python experiments/campaign.py status [--phase phase1]
    python experiments/campaign.py run --phase phase1 [--only si/small_mace] [--variants base,pan]
                                       [--seeds 0,1] [--commit] [--max-hours 2.5] [--dry-run]

The plan (``experiments/campaign/plan.yaml``) declares the data sets, model sizes, the common
protocol, the variants and, per phase, the cells (data set × size × epochs), variants and seeds.
Runs go in a fixed order, seed-major (every variant of seed 0, then seed 1, ...), so that paired
comparisons complete first. A run whose result file exists is skipped: the campaign resumes across
sessions and machines from the committed files alone. ``--commit`` commits each result file the
moment its run finishes (only that path). ``--max-hours`` stops starting new runs after that wall
time (a session lasts 3 h; no single run should be planned longer than ~2 h).

Each result file (``experiments/results/campaign/PHASE/DATASET/SIZE/VARIANT/seedK.json``) holds the
resolved run configuration and its hash, the seed, the budget, the validation curve, test (and
validation) metrics overall and per config_type for the best-on-validation and the final EMA
parameters, per-structure test errors, the parameter count, wall time, the machine, the package
versions and the commit of the code that trained it (with a flag if ``scalarjax/`` was dirty).

A cell marked ``artifacts: true`` in the plan (``- {dataset: si, size: medium_mace, epochs: N,
artifacts: true}``) also measures the four physical artifacts of each of its runs right after
training, while the parameters exist (``experiments/campaign_artifacts.py``; ~10–12 min for a medium
MACE on the 2-core CPU; ``--artifacts-budget quick`` for smoke tests), and stores them in the result
file under ``"artifacts"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
PLAN = ROOT / "experiments" / "campaign" / "plan.yaml"
RESULTS = ROOT / "experiments" / "results" / "campaign"
RUNS = ROOT / "runs" / "campaign"


@dataclasses.dataclass(frozen=True)
class RunSpec:
    phase: str
    dataset: str
    size: str
    variant: str
    seed: int
    epochs: int
    artifacts: bool = False  # measure the four physical artifacts after training (experiments/campaign_artifacts.py)

    @property
    def key(self) -> str:
        return f"{self.phase}/{self.dataset}/{self.size}/{self.variant}/seed{self.seed}"

    @property
    def result_path(self) -> pathlib.Path:
        return RESULTS / self.phase / self.dataset / self.size / self.variant / f"seed{self.seed}.json"

    @property
    def run_dir(self) -> pathlib.Path:
        return RUNS / self.phase / self.dataset / self.size / self.variant / f"seed{self.seed}"


def load_plan(path=PLAN) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def run_specs(plan: dict, phase: str) -> list[RunSpec]:
    """Every run of a phase, seed-major (all variants and cells of a seed before the next seed)."""
    ph = plan["phases"][phase]
    for v in ph["variants"]:
        if v not in plan["variants"]:
            raise KeyError(f"phases.{phase}.variants: unknown variant {v!r}")
    specs = []
    for seed in ph["seeds"]:
        for cell in ph["cells"]:
            for v in ph["variants"]:
                specs.append(
                    RunSpec(phase, cell["dataset"], cell["size"], v, int(seed), int(cell["epochs"]), bool(cell.get("artifacts", False)))
                )
    return specs


def _flow(x) -> str:
    return yaml.safe_dump(x, default_flow_style=True, width=10_000).strip()


def overrides(plan: dict, spec: RunSpec, extra_model: list[str] = ()) -> tuple[str, list[str]]:
    """The recipe path and the ``--set`` overrides of one run (variant transforms last)."""
    ds = plan["datasets"][spec.dataset]
    variant = plan["variants"][spec.variant]
    sets = list(ds.get("set", [])) + list(plan["sizes"][spec.size]) + list(plan["protocol"])
    transforms = variant.get("transforms_by_dataset", {}).get(spec.dataset, variant.get("transforms"))
    if transforms is None:
        raise KeyError(f"variants.{spec.variant}: no transforms for data set {spec.dataset!r}")
    sets += [
        f"training.max_epochs={spec.epochs}",
        f"training.seed={spec.seed}",
        f"output.run_dir={spec.run_dir}",
        f"model.scalar_transforms={_flow(transforms)}",
    ]
    return str(ROOT / ds["config"]), sets + list(extra_model)


def param_count(cfg, atomic_numbers) -> int:
    """Parameters of ``cfg.model`` for these elements, from shapes alone (``jax.eval_shape``: no compile)."""
    import jax
    import numpy as np

    from scalarjax.config import load_model_config
    from scalarjax.model import abstract_params, build_model

    shapes = abstract_params(build_model(load_model_config(cfg.model, atomic_numbers=atomic_numbers)))
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(shapes)))


def match_width(plan: dict, spec: RunSpec) -> list[str]:
    """Overrides that widen the base's radial MLP to the parameter count of ``match_params_of`` (±1%)."""
    from scalarjax.training.config import load_run_config
    from scalarjax.training.trainer import read_split

    target_variant = plan["variants"][spec.variant]["match_params_of"]
    target_spec = dataclasses.replace(spec, variant=target_variant)
    cfg_t = load_run_config(*overrides(plan, target_spec))
    train, _, _ = read_split(cfg_t)
    zs = tuple(sorted({int(z) for c in train for z in c.species}))
    target = param_count(cfg_t, zs)
    path, sets = overrides(plan, spec)
    base = load_run_config(path, sets)
    widths = list(base.model.radial_mlp)

    def count(w: int) -> int:
        return param_count(load_run_config(path, sets + [f"model.radial_mlp={[w] * len(widths)}"]), zs)

    lo, hi = widths[-1], 4 * widths[-1]
    while hi - lo > 1:  # parameters grow monotonically with the width
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= target else (lo, mid)
    best = min((lo, hi), key=lambda w: abs(count(w) - target))
    got = count(best)
    if abs(got / target - 1) > 0.01:
        raise RuntimeError(f"{spec.key}: no radial-MLP width within 1% of {target} parameters (best {best}: {got})")
    return [f"model.radial_mlp={[best] * len(widths)}"]


def git_state() -> dict:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        # The tree of scalarjax/ names the library code itself: equal trees, equal numerics,
        # whatever result commits lie between two runs (the report checks it per seed).
        "scalarjax_tree": git("rev-parse", "HEAD:scalarjax"),
        "scalarjax_dirty": bool(git("status", "--porcelain", "--", "scalarjax")),
    }


def code_pin_error(plan: dict, phase: str, git: dict) -> str | None:
    """A phase may pin the library code every one of its runs uses (``code: COMMIT`` in the plan):
    variants of one seed are paired only if they ran the same ``scalarjax/``, and a phase spreads
    over sessions while ``main`` moves on. Returns the one-line error when this checkout's
    ``scalarjax/`` is not the pinned one."""
    pin = plan["phases"][phase].get("code")
    if not pin:
        return None
    res = subprocess.run(["git", "rev-parse", f"{pin}:scalarjax"], cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        return f"{phase} pins the code of commit {pin}, which this repository does not have"
    if res.stdout.strip() != git["scalarjax_tree"]:
        return (
            f"{phase} pins scalarjax/ to commit {pin} (paired runs need one code); run it from a worktree of that "
            f"commit: git worktree add -b campaign-{phase} ../campaign-{phase} {pin}, copy in "
            "experiments/results/campaign/, run there with PYTHONPATH=<worktree> and --commit, and merge the branch back"
        )
    return None


def import_location_error() -> str | None:
    """The pin checks this checkout's ``scalarjax/``; the runs use the ``scalarjax`` Python imports,
    which an editable install points at the checkout it was installed from (e.g. ``main``, not a
    campaign worktree). Returns the one-line error when the two differ."""
    import scalarjax

    here = pathlib.Path(scalarjax.__file__).resolve().parent
    if here != ROOT / "scalarjax":
        return f"this process imports scalarjax from {here}, not from this checkout's {ROOT / 'scalarjax'}: run with PYTHONPATH={ROOT}"
    return None


def config_hash(cfg_dict: dict) -> str:
    """sha256 of the resolved configuration without the output directory and the seed (equal for
    the seeds of one variant; differs between variants)."""
    d = json.loads(json.dumps(cfg_dict, default=str))
    d.get("output", {}).pop("run_dir", None)
    d.get("training", {}).pop("seed", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for p in ("jax", "jaxlib", "flax", "e3nn-jax", "optax", "numpy"):
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out


def collect(spec: RunSpec, wall_s: float, extra: list[str], git: dict) -> dict:
    """The small, self-contained result file of one finished run."""
    from scalarjax.config import load_model_config
    from scalarjax.potential import Potential

    run_dir = spec.run_dir
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    final = json.loads((run_dir / "final_metrics.json").read_text())
    structures = json.loads((run_dir / "structure_errors.json").read_text())
    curve = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        v = r.get("valid", {})
        curve.append(
            {
                "epoch": r["epoch"],
                "lr": r["lr"],
                "train_loss": r["train_loss"],
                "seconds": r.get("seconds"),
                **{k: v[k]["mae"] for k in ("energy_meV_per_atom", "forces_meV_per_A", "stress_meV_per_A3") if k in v},
            }
        )
    n_params = Potential(load_model_config(run_dir / "config.yaml")).num_params()
    return {
        "key": spec.key,
        **{k: v for k, v in dataclasses.asdict(spec).items() if k != "artifacts"},  # the measured artifacts go there
        "config": cfg,
        "config_hash": config_hash(cfg),
        "extra_overrides": extra,
        "n_params": n_params,
        "valid_curve": curve,
        "best": {k: final.get(k) for k in ("valid", "test")},
        "last_ema": final.get("last_ema", {}),
        "structure_errors": {k: structures[k] for k in ("test", "test_last_ema") if k in structures},
        "wall_s": round(wall_s, 1),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "node": platform.node()},
        "versions": versions(),
        "git": git,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def commit(path: pathlib.Path, message: str) -> None:
    for _attempt in range(10):  # another git process may hold the index lock for a moment
        add = subprocess.run(["git", "add", "--", str(path)], cwd=ROOT, capture_output=True, text=True)
        res = subprocess.run(["git", "commit", "-q", "-m", message, "--", str(path)], cwd=ROOT, capture_output=True, text=True)
        if add.returncode == 0 and res.returncode == 0:
            return
        time.sleep(3)
    print(f"warning: could not commit {path}: {res.stderr.strip()}", file=sys.stderr)


def measure_artifacts(spec: RunSpec, budget: str = "default", timeout_s: float = 3 * 3600) -> dict:
    """The four physical artifacts of a just-trained run (``experiments/campaign_artifacts.py``'s
    ``measure``), in a child process: it switches JAX's x64 mode on for its float64 NVE, which must
    never leak into the next run's training in this process (the pairing of seeds depends on
    bit-identical initialisation). Also writes ``artifacts.json`` into the run directory. A failure
    is recorded as ``{"error": ...}``: the run's own results are kept whatever happens here."""
    out = spec.run_dir / "artifacts.json"
    out.unlink(missing_ok=True)  # never read a stale file from an earlier attempt
    cmd = [sys.executable, str(ROOT / "experiments" / "campaign_artifacts.py"), str(spec.run_dir), "--dataset", spec.dataset]
    cmd += ["--budget", budget, "--seed", str(spec.seed), "--out", str(out)]
    t0 = time.perf_counter()
    try:
        env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"artifacts did not finish within {timeout_s:.0f} s"}
    if res.returncode != 0 or not out.is_file():
        last = (res.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"artifacts failed (exit {res.returncode}): {last[:300]}", "wall_s": round(time.perf_counter() - t0, 1)}
    return json.loads(out.read_text()) | {"wall_s": round(time.perf_counter() - t0, 1)}


def run_one(plan: dict, spec: RunSpec, do_commit: bool, git: dict, artifacts_budget: str = "default") -> dict:
    from scalarjax.training.config import load_run_config
    from scalarjax.training.trainer import train

    extra = match_width(plan, spec) if plan["variants"][spec.variant].get("match_params_of") else []
    path, sets = overrides(plan, spec, extra)
    cfg = load_run_config(path, sets)
    t0 = time.perf_counter()
    train(cfg, progress=False)
    result = collect(spec, time.perf_counter() - t0, extra, git)
    if spec.artifacts:  # the parameters do not outlive this session: measure now, keep the numbers
        result["artifacts"] = measure_artifacts(spec, artifacts_budget)
    from scalarjax.fileio import write_json

    spec.result_path.parent.mkdir(parents=True, exist_ok=True)
    write_json(spec.result_path, result, indent=None)  # compact: per-structure lists are long
    test = result["best"]["test"]["all"] if result["best"].get("test") else {}
    summary = ", ".join(f"{k.split('_')[0][0].upper()} {v['mae']:.2f}" for k, v in test.items() if v["mae"] is not None)
    msg = f"campaign {spec.key}: test MAE {summary} ({result['wall_s'] / 60:.1f} min, {result['n_params']} params)"
    if "artifacts" in result:
        a = result["artifacts"]
        msg += f"; artifacts {'FAILED: ' + a['error'] if 'error' in a else 'in ' + format(a['wall_s'] / 60, '.1f') + ' min'}"
    print(msg, flush=True)
    if do_commit:
        commit(spec.result_path, msg)
    return result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=("status", "run"))
    ap.add_argument("--phase", default="phase1")
    ap.add_argument("--only", help="DATASET/SIZE: run one cell only")
    ap.add_argument("--variants", help="comma-separated subset of the phase's variants")
    ap.add_argument("--seeds", help="comma-separated subset of the phase's seeds")
    ap.add_argument("--commit", action="store_true", help="git-commit each result file when its run finishes")
    ap.add_argument("--max-hours", type=float, default=None, help="start no new run after this wall time")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--allow-dirty", action="store_true", help="run with uncommitted scalarjax/ changes (smoke tests only)")
    ap.add_argument("--plan", default=str(PLAN), help="another plan file (smoke tests)")
    ap.add_argument("--results", default=None, help="another results root (smoke tests)")
    ap.add_argument("--artifacts-budget", default="default", help="budget of the cells with artifacts: true (default, quick)")
    args = ap.parse_args(argv)
    os.environ.setdefault("SCALARJAX_DATA", str(ROOT.parent / "shared" / "data"))
    if args.results:
        global RESULTS, RUNS
        RESULTS = pathlib.Path(args.results).absolute()
        RUNS = RESULTS / "runs"
    plan = load_plan(args.plan)
    specs = run_specs(plan, args.phase)
    if args.only:
        specs = [s for s in specs if f"{s.dataset}/{s.size}" == args.only]
    if args.variants:
        specs = [s for s in specs if s.variant in args.variants.split(",")]
    if args.seeds:
        specs = [s for s in specs if str(s.seed) in args.seeds.split(",")]
    todo = [s for s in specs if not s.result_path.exists()]
    print(f"{args.phase}: {len(specs) - len(todo)} of {len(specs)} runs finished", flush=True)
    if args.command == "status" or args.dry_run:
        for s in todo:
            print(f"  to run: {s.key} ({s.epochs} epochs{' + artifacts' if s.artifacts else ''})")
        return
    # The code every run of this process uses is the code imported now: record its commit once,
    # and refuse uncommitted library code (a result must name the code that produced it).
    import scalarjax.training.trainer  # noqa: F401

    if (err := import_location_error()) and not args.allow_dirty:
        sys.exit(err)
    git = git_state()
    if git["scalarjax_dirty"] and not args.allow_dirty:
        sys.exit("scalarjax/ has uncommitted changes: commit them first (each result records the commit that trained it)")
    if (err := code_pin_error(plan, args.phase, git)) and not args.allow_dirty:
        sys.exit(err)
    t_start = time.perf_counter()
    for s in todo:
        if args.max_hours is not None and time.perf_counter() - t_start > 3600 * args.max_hours:
            print(f"--max-hours {args.max_hours} reached; {len([t for t in todo if not t.result_path.exists()])} runs left")
            break
        if s.result_path.exists():  # finished by another runner meanwhile
            continue
        print(f"running {s.key} ({s.epochs} epochs)", flush=True)
        run_one(plan, s, args.commit, git, args.artifacts_budget)


if __name__ == "__main__":
    main()
