"""``scalarjax`` command line: ``train``, ``evaluate``.

    scalarjax train CONFIG.yaml [--set training.lr=1e-3 ...]
    scalarjax evaluate RUN_DIR --data PATH [--out FILE]
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
