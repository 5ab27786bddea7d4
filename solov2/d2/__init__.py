"""solov2 inside a real Detectron2: the same SOLOv2 registered in Detectron2's registries.

Importing this package (with Detectron2 installed) registers `SOLOv2` in `detectron2.modeling.META_ARCH_REGISTRY`
and solov2's datasets (the synthetic shapes splits, anything registered through `solov2.data`) in Detectron2's
DatasetCatalog/MetadataCatalog. `add_solov2_config(cfg)` adds solov2's config keys to a Detectron2 config.
Only adaptation lives here (config keys, structures, registries); the heads, targets, losses and
post-processing are solov2's own code. Nothing else in solov2 imports detectron2.
"""

from __future__ import annotations

try:
    import detectron2  # noqa: F401
except ImportError as _e:
    if getattr(_e, "name", None) == "detectron2":
        _why = "Detectron2 is not installed"
    else:
        _why = f"Detectron2 is installed but cannot be imported ({_e})"
    raise ImportError(
        f"solov2.d2 plugs SOLOv2 into Detectron2, but {_why}. Detectron2 is not on PyPI: install it your own way "
        "for your torch and CUDA, e.g. "
        "`python -m pip install 'git+https://github.com/facebookresearch/detectron2.git'` "
        "(see https://detectron2.readthedocs.io/en/latest/tutorials/install.html). The rest of solov2 "
        "(tools/train_net.py, demo/demo.py, solov2.export) works without it."
    ) from _e

from .config import add_solov2_config, apply_solov2_data_keys  # noqa: E402
from .data import register_solov2_datasets  # noqa: E402
from .meta_arch import SOLOv2  # noqa: E402

register_solov2_datasets()

__all__ = ["SOLOv2", "add_solov2_config", "apply_solov2_data_keys", "register_solov2_datasets"]
