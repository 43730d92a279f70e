"""``python -m depot``: the ``depot`` command."""

import sys

from depot.cli import main

sys.exit(main())
