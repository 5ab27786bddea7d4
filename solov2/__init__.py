"""solov2: a SOLOv2 instance-segmentation toolbox with Detectron2's interfaces.

`from solov2 import Predictor` is the one-call API (solov2.predictor); it is imported on first use, so that
`import solov2` (and `solov2 --version`) stays instant.
"""

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports them when first used
    from .predictor import Predictor, Results

__all__ = ["Predictor", "Results", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Predictor", "Results"):
        from . import predictor

        return getattr(predictor, name)
    raise AttributeError(f"module 'solov2' has no attribute '{name}'")
