"""The model zoo: the repository's configs/ packed into the package, by name, and the published weights that fit them.

    get_config_file("SOLOv2/R50_3x.yaml")    # the file's path, inside the installed package
    get_config("quickstart/shapes_R18.yaml")  # a CfgNode, `_BASE_` followed
    list_configs()                            # ["SOLOv2/Base-SOLOv2.yaml", ..., "quickstart/shapes_R18.yaml"]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

from ..utils.errors import ConfigError
from .weights import PUBLISHED_WEIGHTS, PublishedWeights

__all__ = ["PUBLISHED_WEIGHTS", "PublishedWeights", "configs_root", "get_config", "get_config_file", "list_configs",
           "published_weights", "resolve_config_file"]

_HERE = Path(__file__).resolve().parent
# A wheel carries the configs inside the package (setup.py copies them at build time); an editable install or a
# checkout reads the repository's own configs/, so there is one copy of each file in the source tree.
_CANDIDATES = (_HERE / "configs", _HERE.parents[1] / "configs")
_MARKER = os.path.join("SOLOv2", "Base-SOLOv2.yaml")


def configs_root() -> Path:
    """The folder holding the zoo's configs (inside the installed package, or the checkout's configs/)."""
    for root in _CANDIDATES:
        if (root / _MARKER).is_file():
            return root
    raise ConfigError(f"solov2's configs are not installed (looked in {', '.join(map(str, _CANDIDATES))}): "
                      "reinstall the package (pip install solov2 / pip install -e .)")


def list_configs() -> List[str]:
    """Names of the zoo's configs (relative to the configs folder, '/'-separated), sorted."""
    root = configs_root()
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))


def _zoo_name(name: str) -> str:
    """'configs/SOLOv2/R50_3x' or 'SOLOv2/R50_3x.yaml' -> 'SOLOv2/R50_3x.yaml'."""
    name = name.replace(os.sep, "/").strip("/")
    if name.startswith("configs/"):
        name = name[len("configs/"):]
    return name if name.endswith((".yaml", ".yml")) else name + ".yaml"


def get_config_file(name: str) -> str:
    """The path of the zoo config `name` (e.g. 'SOLOv2/R50_3x.yaml'; a leading 'configs/' and the '.yaml' optional)."""
    path = configs_root() / _zoo_name(name)
    if not path.is_file():
        raise ConfigError(f"'{name}' is not a config of the model zoo; the zoo has {', '.join(list_configs())} "
                          "(`solov2 zoo` lists them with their published weights)")
    return str(path)


def get_config(name: str):  # noqa: ANN201 - a CfgNode (imported lazily: solov2.config pulls in yaml and fvcore)
    """The full config of the zoo config `name`: get_cfg() with the file (and its `_BASE_` chain) merged."""
    from ..config import get_cfg

    cfg = get_cfg()
    cfg.merge_from_file(get_config_file(name))
    return cfg


def resolve_config_file(path_or_name: str) -> str:
    """A config file path as given when it exists, else the zoo config of that name; an error names both tries."""
    if os.path.isfile(path_or_name):
        return path_or_name
    try:
        return get_config_file(path_or_name)
    except ConfigError:
        raise ConfigError(f"Config file '{path_or_name}' does not exist, and it is not a config of the model zoo "
                          "either (`solov2 zoo` lists those)") from None


def published_weights(name: str) -> List[PublishedWeights]:
    """The published weights that fit zoo config `name` (empty when none are published)."""
    return list(PUBLISHED_WEIGHTS.get(_zoo_name(name), []))
