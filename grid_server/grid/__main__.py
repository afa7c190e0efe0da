"""``python -m grid_server.grid``: the same as ``p2p-energy grid``."""

import sys

from .main import main

sys.exit(main())
