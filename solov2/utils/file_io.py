"""The one PathManager (iopath) all file access goes through."""

from iopath.common.file_io import g_pathmgr as PathManager

__all__ = ["PathManager"]
