"""``python -m intquant``: the command line."""

import sys

from intquant.cli import main

sys.exit(main())
