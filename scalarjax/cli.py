"""``scalarjax`` command line: ``train``, ``evaluate``, ``flops``.

    scalarjax train CONFIG.yaml [--set training.lr=1e-3 ...]
    scalarjax evaluate RUN_DIR --data PATH [--out FILE]
    scalarjax flops CONFIG.yaml [--structure PATH] [--json] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import sys


def main(argv=None):
    ap = argparse.ArgumentParser(prog="scalarjax")
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model from a YAML run configuration")
    t.add_argument("config")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    e = sub.add_parser("evaluate", help="errors of a trained run on a data file")
    e.add_argument("run_dir")
    e.add_argument("--data", required=True)
    e.add_argument("--out")
    e.add_argument("--batch-size", type=int, default=8)
    f = sub.add_parser("flops", help="inference FLOPs and parameters of base / +PAN / +PGS / +PAN+PGS")
    f.add_argument("config", help="model YAML (settings at top level or under model:)")
    f.add_argument("--structure", help="any file ase.io reads (first frame); default: a ~64-atom bulk cell")
    f.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    f.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model overrides (as Calculator.from_config)")
    args = ap.parse_args(argv)

    if args.command == "train":
        from scalarjax.training.config import load_run_config
        from scalarjax.training.trainer import train

        run_dir = train(load_run_config(args.config, args.set))
        print(f"run written to {run_dir}")
    elif args.command == "evaluate":
        from scalarjax.training.evaluate import evaluate_run
        from scalarjax.training.metrics import format_table

        parity_png = args.out.rsplit(".", 1)[0] + "_parity.png" if args.out else None
        metrics = evaluate_run(args.run_dir, args.data, args.batch_size, parity_png)
        print(format_table(metrics))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(metrics, f, indent=1)
    elif args.command == "flops":
        import yaml

        from scalarjax.config import load_model_config
        from scalarjax.flops import flops_report, format_report

        overrides = {}
        for item in args.set:
            if "=" not in item:
                raise SystemExit(f"--set {item!r}: expected KEY=VALUE")
            key, value = item.split("=", 1)
            overrides[key.strip().removeprefix("model.")] = yaml.safe_load(value)
        config = load_model_config(args.config, **overrides)
        atoms = None
        if args.structure:
            import ase.io

            atoms = ase.io.read(args.structure, 0)
        report = flops_report(config, atoms, args.structure)
        print(json.dumps(report, indent=1) if args.json else format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
