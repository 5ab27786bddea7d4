"""`python -m solov2 ...` is the `solov2` command."""

import sys

from .commands.main import main

sys.exit(main())
