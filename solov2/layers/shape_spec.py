"""ShapeSpec: channels/stride of a feature map, used to wire modules together."""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class ShapeSpec:
    """Shape of a feature map: any field may be None when unknown."""

    channels: Optional[int] = None
    height: Optional[int] = None
    width: Optional[int] = None
    stride: Optional[int] = None
