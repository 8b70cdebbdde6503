"""``python -m bobosync``: see bobosync.cli."""

import sys

from bobosync.cli import main

sys.exit(main())
