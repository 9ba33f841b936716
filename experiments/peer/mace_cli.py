"""Run a mace-torch console script (``run_train`` or ``eval_configs``) under torch >= 2.6.

e3nn 0.4.4 ``torch.load``s its own constants, which torch >= 2.6 refuses unless ``slice`` is
allow-listed; this wrapper does that and then hands over to mace's own entry point unchanged.

    python experiments/peer/mace_cli.py run_train --name ... (mace_run_train's arguments)
"""

import importlib
import sys

import torch

torch.serialization.add_safe_globals([slice])

if __name__ == "__main__":
    command = sys.argv.pop(1)
    sys.argv[0] = f"mace_{command}"
    importlib.import_module(f"mace.cli.{command}").main()
