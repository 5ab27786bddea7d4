"""UserError: the base of every error solov2 raises on purpose about a user's input (config, data, weights, paths).

Command-line tools print such an error as one `ERROR: <message>` line and exit non-zero (see solov2.utils.error_reporting);
any other exception is a bug and keeps its traceback. Each subclass also derives from the built-in exception that
callers caught before it existed (ValueError, FileNotFoundError, ...), so `except ValueError` keeps working.
"""

from __future__ import annotations

__all__ = [
    "UserError",
    "ConfigError",
    "ArgumentError",
    "DatasetFormatError",
    "InputFileNotFoundError",
    "UnknownDatasetError",
    "ImageReadError",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointSaveError",
    "OutputPathError",
    "NonFiniteLossError",
    "ResultsMismatchError",
    "user_error_message",
]


class UserError(Exception):
    """An error in what the user gave us (a config key, a file, a dataset, a checkpoint), with a readable message."""


class ConfigError(UserError, ValueError):
    """A config file, config key or value, or command-line option that cannot be used as given."""


class ArgumentError(ValueError):
    """A bad argument to a module or function; `argument` names it, so that a config boundary can name its key."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"{argument} {problem}")
        self.argument = argument
        self.problem = problem


class DatasetFormatError(UserError, ValueError):
    """A dataset file or annotation that cannot be used as it is; the message names the file and the culprit."""


class InputFileNotFoundError(UserError, FileNotFoundError):
    """A file or folder the user named (annotation json, image root, dataset root) does not exist."""


class UnknownDatasetError(UserError, KeyError):
    """A dataset name that is not registered."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument (quotes, escaped newlines); a message reads better plain.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class ImageReadError(UserError, IOError):
    """An image that cannot be read or decoded; the message names the file."""


class CheckpointError(UserError, ValueError):
    """A weights file that cannot be read, or does not fit the model or the run it is resumed into."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """MODEL.WEIGHTS (or the checkpoint named by last_checkpoint) does not exist locally."""


class CheckpointSaveError(UserError, OSError):
    """A checkpoint could not be written (disk full, read-only folder, ...); earlier checkpoints are untouched."""


class OutputPathError(UserError, OSError):
    """An output location that cannot be used: not writable, in use by another run, or would overwrite an input."""


class NonFiniteLossError(UserError, FloatingPointError):
    """A training loss became NaN or infinite (usually a too-high learning rate or broken annotations)."""


class ResultsMismatchError(UserError, RuntimeError):
    """Evaluation results differ from TEST.EXPECTED_RESULTS."""


def user_error_message(e: BaseException) -> str:
    """The text to show a user for an exception: its message, without KeyError's quoting."""
    if isinstance(e, KeyError) and len(e.args) == 1 and isinstance(e.args[0], str):
        return e.args[0]
    return str(e)
