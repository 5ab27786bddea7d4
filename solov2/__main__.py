"""`python -m solov2 ...` is the `solov2` command."""

import sys

from .commands.main import main

if __name__ == "__main__":
    sys.exit(main())
