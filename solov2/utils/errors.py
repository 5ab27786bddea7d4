"""UserError: the base of every error solov2 raises on purpose about a user's input (config, data, weights, paths).

Command-line tools print such an error as one `ERROR: <message>` line and exit non-zero; any other exception is a
bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error in what the user gave us (a config key, a file, a dataset, a checkpoint), with a readable message."""
