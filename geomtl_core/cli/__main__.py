"""``python -m geomtl_core.cli``: the same as the ``geomtl`` command."""

import sys

from geomtl_core.cli import main

sys.exit(main())
