"""``python -m scalarjax ...`` is the ``scalarjax`` command."""

import sys

from scalarjax.cli import main

sys.exit(main())
