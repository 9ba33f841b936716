"""``scalarjax`` command line: ``train``, ``evaluate``, ``flops``.

    scalarjax train CONFIG.yaml [--set training.lr=1e-3 ...]
    scalarjax evaluate RUN_DIR --data PATH [--out FILE]
    scalarjax flops CONFIG.yaml [--structure PATH] [--json] [--set KEY=VALUE ...]
    scalarjax export RUN_DIR -o model.jaxexport [--dtype float32|float64] [--platforms cpu,cuda]
    scalarjax md RUN_DIR --structure FILE [--ensemble nve|nvt|npt] [--engine ase|jax] [--temperature K] [--timestep FS] [--steps N] [--out DIR]
    scalarjax relax RUN_DIR --structure FILE [--cell] [--fmax F] [--steps N] [--out FILE]
    scalarjax import-mace MODEL_FILE|DUMP.npz -o RUN_DIR [--dtype float32|float64]
    scalarjax diagnose RUN_DIR [RUN_DIR ...] [--system si|ag|li|auto] [--only repulsion,phonons,nve,rdf]
                       [--data PATH] [--labels A,B] [--out DIR] [--quick]

``--dtype float64`` (md, relax) evaluates the model in double precision: the command line, being
an application and not the library, switches JAX's x64 mode on for that.
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None) -> int:
    """Run one command. A user error (:class:`scalarjax.errors.UserError`, a missing or unreadable
    file) prints one line ``scalarjax: error: ...`` and returns 2; anything else is a bug and keeps
    its traceback. Called as the command (``argv`` None), it first re-executes itself once with a
    faster allocator preloaded and turns on JAX's persistent compilation cache
    (:mod:`scalarjax._runtime`, items 3 and 4)."""
    if argv is None:
        from scalarjax import _runtime

        _runtime.exec_with_allocator(["-m", "scalarjax", *sys.argv[1:]])
        _runtime.use_compilation_cache()
    from scalarjax.errors import UserError

    try:
        return _main(argv)
    except UserError as err:
        print(f"scalarjax: error: {err}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as err:
        print(f"scalarjax: error: {err.filename or ''}: {err.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("scalarjax: interrupted", file=sys.stderr)
        return 130


def _read_structure(path, index):
    """First/last frame of ``path`` with the file named in any error."""
    import ase.io

    from scalarjax.errors import InputError

    try:
        return ase.io.read(path, index)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as err:
        raise InputError(
            f"{path}: cannot read a structure ({type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''})"
        ) from None


def _output_dir(run_dir, out, name, overwrite, files):
    """Where md writes: ``--out`` as given (refused if it holds outputs, unless ``--overwrite``), or
    ``RUN_DIR/md`` numbered ``md-2``, ``md-3``... so a previous run's outputs are kept; never a
    symlink leading out of the run directory."""
    import os
    import pathlib

    from scalarjax.errors import InputError
    from scalarjax.fileio import check_inside, fresh_name

    holds = lambda d: any(os.path.lexists(pathlib.Path(d) / f) for f in files)
    if out:
        out = pathlib.Path(out)
        if holds(out) and not overwrite:
            raise InputError(
                f"{out} already holds {', '.join(f for f in files if os.path.lexists(out / f))}; choose another --out or pass --overwrite"
            )
        return out
    run_dir = pathlib.Path(run_dir)
    default = run_dir / name
    chosen = default if overwrite else fresh_name(default, lambda d: os.path.lexists(d) and (holds(d) or not os.path.isdir(d)))
    check_inside(run_dir, chosen, "md outputs")
    if chosen != default:
        print(f"{default} holds a previous run's outputs; writing to {chosen}")
    return chosen


def _x64_if(dtype) -> None:
    """``--dtype float64``: the command line (an application, not the library) turns JAX's x64 on."""
    if dtype == "float64":
        import jax

        jax.config.update("jax_enable_x64", True)


def _cmd_train(args) -> int:
    from scalarjax.training.config import load_run_config
    from scalarjax.training.parallel import ParallelSetupError
    from scalarjax.training.trainer import train

    try:
        run_dir = train(load_run_config(args.config, args.set))
    except ParallelSetupError as err:  # devices / processes: a user error, one line
        print(f"scalarjax train: {err}", file=sys.stderr)
        return 2
    print(f"run written to {run_dir}")
    return 0


def _cmd_evaluate(args) -> int:
    from scalarjax.fileio import write_json
    from scalarjax.training.evaluate import evaluate_run
    from scalarjax.training.metrics import format_table

    parity_png = args.out.rsplit(".", 1)[0] + "_parity.png" if args.out else None
    metrics = evaluate_run(args.run_dir, args.data, args.batch_size, parity_png)
    print(format_table(metrics))
    if args.out:
        write_json(args.out, metrics)
    return 0


def _cmd_export(args) -> int:
    import pathlib

    _x64_if(args.dtype)
    from scalarjax.export import export_run

    missing = [n for n in ("config.yaml", "best") if not (pathlib.Path(args.run_dir) / n).exists()]
    if missing:
        print(f"scalarjax: error: {args.run_dir}: not a finished run directory (no {' or '.join(missing)})", file=sys.stderr)
        return 2
    meta = export_run(args.run_dir, args.out, args.dtype, [p for p in args.platforms.split(",") if p])
    print(
        f"exported {args.run_dir} ({meta['dtype']}, species {meta['atomic_numbers']}, platforms {meta['platforms']}, "
        f"jax {meta['jax']}) to {args.out}"
    )
    return 0


def _cmd_flops(args) -> int:
    from scalarjax.config import load_model_config
    from scalarjax.flops import flops_report, format_report
    from scalarjax.training.config import apply_overrides

    # The run configuration's --set parser, with the model. section implied.
    items = [item if item.strip().startswith("model.") or "=" not in item else "model." + item.strip() for item in args.set]
    overrides = apply_overrides({}, items).get("model", {})
    config = load_model_config(args.config, **overrides)
    atoms = _read_structure(args.structure, 0) if args.structure else None
    report = flops_report(config, atoms, args.structure)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


def _cmd_import_mace(args) -> int:
    from scalarjax.interop.mace_torch import import_mace
    from scalarjax.interop.mace_torch_dump import Unsupported

    try:
        run_dir = import_mace(args.model_file, args.out, args.dtype)
    except (Unsupported, FileExistsError) as e:
        print(f"scalarjax: error: {e}", file=sys.stderr)
        return 2
    print(f"imported {args.model_file} into {run_dir} ({args.dtype}); load it with scalarjax.Calculator.from_run({str(run_dir)!r})")
    return 0


def _cmd_diagnose(args) -> int:
    import pathlib

    _x64_if(args.dtype)
    from scalarjax.diagnostics.report import diagnose, summary_table
    from scalarjax.training.config import resolve_data_path

    report = diagnose(
        args.run_dirs,
        system=args.system,
        which=[w for w in args.only.split(",") if w],
        data=resolve_data_path(args.data, pathlib.Path.cwd()) if args.data else None,
        out_dir=args.out,
        labels=args.labels.split(",") if args.labels else None,
        quick=args.quick,
        dtype=args.dtype,
        seed=args.seed,
        md_engine=args.md_engine,
    )
    print(summary_table(report))
    print(f"numbers in {report['out_dir']}/diagnostics.json, plots beside them")
    return 0


def _cmd_md(args) -> int:
    from scalarjax.errors import InputError
    from scalarjax.fileio import write_json
    from scalarjax.simulation.md import check_md_settings

    # settings first: a typo should not cost a model load
    check_md_settings(args.steps, args.timestep, args.temperature, args.log_interval, args.traj_interval, args.friction)
    if args.engine == "jax" and args.ensemble == "npt":
        raise InputError("md --ensemble npt needs --engine ase (the jax engine runs nve and nvt)")
    _x64_if(args.dtype)
    atoms = _read_structure(args.structure, -1)
    runner = _md_runner(args)
    out = _output_dir(args.run_dir, args.out, "md", args.overwrite, ("trajectory.xyz", "md.log", "summary.json"))
    out.mkdir(parents=True, exist_ok=True)
    summary = runner(
        atoms,
        ensemble=args.ensemble,
        temperature_K=args.temperature,
        timestep_fs=args.timestep,
        steps=args.steps,
        friction_per_fs=args.friction,
        log_interval=args.log_interval,
        traj_interval=args.traj_interval,
        trajectory=out / "trajectory.xyz",
        log=out / "md.log",
        seed=args.seed,
    )
    summary.pop("rows")
    write_json(out / "summary.json", summary)
    print(json.dumps(summary, indent=1))
    print(f"trajectory, log and summary in {out}")
    return 0


def _md_runner(args):
    """``--engine ase``: :func:`scalarjax.simulation.md.run_md` with the ASE calculator; ``--engine jax``:
    :func:`scalarjax.simulation.md.run_md_engine` (K steps per device call, on-device neighbour list)."""
    import functools

    if args.engine == "jax":
        from scalarjax.run import load_run
        from scalarjax.simulation.md import run_md_engine

        return functools.partial(run_md_engine, potential=load_run(args.run_dir, args.dtype), skin=args.skin, chunk_steps=args.chunk)
    from scalarjax.calculator import Calculator
    from scalarjax.simulation import run_md

    return functools.partial(run_md, calc=Calculator.from_run(args.run_dir, dtype=args.dtype), pressure_GPa=args.pressure)


def _relaxed_path(args):
    """``--out`` (refused if it exists, unless ``--overwrite``), or RUN_DIR/relaxed.xyz numbered
    relaxed-2.xyz, ... if taken; never outside the run directory."""
    import os
    import pathlib

    from scalarjax.errors import InputError
    from scalarjax.fileio import check_inside, fresh_name

    if args.out:
        out = pathlib.Path(args.out)
        if os.path.lexists(out) and not args.overwrite:
            raise InputError(f"{out} exists; choose another --out or pass --overwrite")
        return out
    default = pathlib.Path(args.run_dir) / "relaxed.xyz"
    out = default if args.overwrite else fresh_name(default)
    check_inside(args.run_dir, out.parent, "relaxed structure")
    if out != default:
        print(f"{default} exists; writing to {out}")
    return out


def _cmd_relax(args) -> int:
    import ase.io

    from scalarjax.errors import InputError
    from scalarjax.fileio import atomic_path

    if not (args.fmax > 0 and args.steps >= 1):
        raise InputError(f"relax --fmax {args.fmax} --steps {args.steps}: need a positive force and at least one step")
    _x64_if(args.dtype)
    from scalarjax.calculator import Calculator
    from scalarjax.simulation import relax

    atoms = _read_structure(args.structure, -1)
    calc = Calculator.from_run(args.run_dir, dtype=args.dtype)
    out = _relaxed_path(args)  # before the relaxation: a taken --out should not cost one
    summary = relax(atoms, calc, fmax=args.fmax, steps=args.steps, cell=args.cell, pressure_GPa=args.pressure, optimizer=args.optimizer)
    with atomic_path(out) as tmp:  # replaces a symlink, never writes through it
        ase.io.write(tmp, atoms, format="extxyz")
    print(json.dumps(summary, indent=1))
    print(f"relaxed structure in {out}")
    return 0 if summary["converged"] else 1


def _add_dtype(p) -> None:
    p.add_argument("--dtype", choices=("float32", "float64"), default=None, help="default: the run's")


def _parser_train_evaluate_flops(sub) -> None:
    t = sub.add_parser("train", help="train a model from a YAML run configuration")
    t.add_argument("config")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    t.set_defaults(handler=_cmd_train)
    e = sub.add_parser("evaluate", help="errors of a trained run on a data file")
    e.add_argument("run_dir")
    e.add_argument("--data", required=True)
    e.add_argument("--out")
    e.add_argument("--batch-size", type=int, default=8)
    e.set_defaults(handler=_cmd_evaluate)
    f = sub.add_parser("flops", help="inference FLOPs and parameters of base / +PAN / +PGS / +PAN+PGS")
    f.add_argument("config", help="model YAML (settings at top level or under model:)")
    f.add_argument("--structure", help="any file ase.io reads (first frame); default: a ~64-atom bulk cell")
    f.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    f.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model overrides (model. prefix optional)")
    f.set_defaults(handler=_cmd_flops)


def _parser_md_relax(sub) -> None:
    m = sub.add_parser("md", help="molecular dynamics with a trained model (ASE integrators, or --engine jax)")
    m.add_argument("run_dir")
    m.add_argument("--structure", required=True, help="any file ase.io reads (last frame)")
    m.add_argument("--ensemble", choices=("nve", "nvt", "npt"), default="nve")
    m.add_argument("--temperature", type=float, default=300.0, help="K (initial velocities; thermostat target)")
    m.add_argument("--timestep", type=float, default=1.0, help="fs")
    m.add_argument("--steps", type=int, default=1000)
    m.add_argument("--pressure", type=float, default=0.0, help="GPa (npt)")
    m.add_argument("--friction", type=float, default=0.01, help="1/fs (nvt, Langevin)")
    m.add_argument("--log-interval", type=int, default=10)
    m.add_argument("--traj-interval", type=int, default=100)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument(
        "--engine", choices=("ase", "jax"), default="ase", help="ase: ASE integrators; jax: whole chunks of steps in XLA (nve, nvt)"
    )
    m.add_argument("--skin", type=float, default=0.25, help="Å, Verlet skin of the on-device neighbour list (--engine jax)")
    m.add_argument("--chunk", type=int, default=100, help="steps per device call (--engine jax)")
    _add_dtype(m)
    m.add_argument("--out", default=None, help="output directory (default RUN_DIR/md, numbered md-2, ... if taken)")
    m.add_argument("--overwrite", action="store_true", help="replace the outputs of a previous run in the output directory")
    m.set_defaults(handler=_cmd_md)
    r = sub.add_parser("relax", help="relax positions (and the cell with --cell) with a trained model")
    r.add_argument("run_dir")
    r.add_argument("--structure", required=True)
    r.add_argument("--cell", action="store_true", help="also relax the cell (FrechetCellFilter)")
    r.add_argument("--pressure", type=float, default=0.0, help="GPa (with --cell)")
    r.add_argument("--fmax", type=float, default=0.01, help="eV/Å")
    r.add_argument("--steps", type=int, default=500)
    r.add_argument("--optimizer", choices=("FIRE", "BFGS", "LBFGS"), default="FIRE")
    _add_dtype(r)
    r.add_argument("--out", default=None, help="relaxed structure (extxyz; default RUN_DIR/relaxed.xyz, numbered relaxed-2.xyz, ...)")
    r.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    r.set_defaults(handler=_cmd_relax)


def _parser_diagnose_import_export(sub) -> None:
    d = sub.add_parser("diagnose", help="short-range repulsion, phonons, NVE drift, liquid g(r); several runs are overlaid")
    d.add_argument("run_dirs", nargs="+")
    d.add_argument("--system", default="auto", help="si | ag | li | auto (from the run's elements)")
    d.add_argument("--only", default="repulsion,phonons,nve,rdf")
    d.add_argument("--data", help="the training data (shortest distance; AIMD frames as the reference g(r))")
    d.add_argument("--labels", help="comma-separated names of the runs in tables and plots")
    d.add_argument("--out", help="output directory (default FIRST_RUN/diagnostics)")
    d.add_argument("--quick", action="store_true", help="tiny MD budgets (smoke test)")
    d.add_argument(
        "--md-engine", default="auto", choices=("auto", "ase", "jax"), help="MD of the liquid g(r): auto = jax on a GPU, ase on the CPU"
    )
    _add_dtype(d)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(handler=_cmd_diagnose)
    im = sub.add_parser("import-mace", help="convert a mace-torch model (or its dump) into a scalarjax run directory")
    im.add_argument("model_file", help="mace-torch .model file (needs torch + mace-torch) or DUMP.npz from mace_torch_dump")
    im.add_argument("-o", "--out", required=True, help="new run directory")
    help_dtype = "parameter precision of the run (converted in float64 either way)"
    im.add_argument("--dtype", choices=("float32", "float64"), default="float32", help=help_dtype)
    im.set_defaults(handler=_cmd_import_mace)
    x = sub.add_parser("export", help="serialise a trained run's E/F/S function with jax.export (runs without Flax or the model code)")
    x.add_argument("run_dir")
    x.add_argument("-o", "--out", required=True, help="output file, e.g. model.jaxexport")
    _add_dtype(x)
    x.add_argument("--platforms", default="cpu,cuda", help="comma-separated jax.export platforms (default cpu,cuda)")
    x.set_defaults(handler=_cmd_export)


def parser() -> argparse.ArgumentParser:
    """The ``scalarjax`` argument parser: one sub-command per job, each with its ``handler``."""
    ap = argparse.ArgumentParser(prog="scalarjax")
    sub = ap.add_subparsers(dest="command", required=True)
    _parser_train_evaluate_flops(sub)
    _parser_md_relax(sub)
    _parser_diagnose_import_export(sub)
    return ap


def _main(argv=None) -> int:
    args = parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
