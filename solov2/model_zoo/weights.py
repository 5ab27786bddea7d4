"""Published SOLOv2 weights: which config each fits, where it is hosted, its format and published COCO mask AP.

The one table `solov2 zoo` and the README's zoo table are read from. Facts only (names, hosts, published figures);
nothing here is downloaded. Keys are model-zoo config names (see solov2.model_zoo.list_configs()).
"""

from __future__ import annotations

from typing import Dict, List, NamedTuple


class PublishedWeights(NamedTuple):
    """One published checkpoint."""

    source: str  # who released it
    format: str  # the checkpoint layout solov2's loader reads it as
    file_name: str  # the file (or the name its download link carries)
    hosted: str  # where to download it from
    mask_ap: float  # the published COCO mask AP (single scale)


_ADELAIDET = ("Detectron2-based release (aim-uofa/AdelaiDet)", "detectron2",
              "github.com/aim-uofa/AdelaiDet, configs/SOLOv2/README.md (model zoo links)")
_MMDET = ("mmdetection 3.x (open-mmlab)", "mmdetection",
          "github.com/open-mmlab/mmdetection, configs/solov2/README.md (download.openmmlab.com links)")
_SOLO = ("original SOLO release (WXinlong/SOLO)", "solo",
         "github.com/WXinlong/SOLO, README.md model zoo (download links)")


def _w(release: tuple, file_name: str, mask_ap: float) -> PublishedWeights:
    source, fmt, hosted = release
    return PublishedWeights(source, fmt, file_name, hosted, mask_ap)


# config name -> the published weights that fit it. mmdetection's and the original SOLO release's ResNets stride in
# the 3x3 conv and take RGB input with ImageNet statistics, so their weights fit the configs written for them
# (SOLOv2/mmdet/*, checked against mmdetection's own SOLOv2 in tests/test_checkpoint_formats.py), not the
# Detectron2-based release's.
PUBLISHED_WEIGHTS: Dict[str, List[PublishedWeights]] = {
    "SOLOv2/R50_3x.yaml": [_w(_ADELAIDET, "SOLOv2_R50_3x.pth", 37.6)],
    "SOLOv2/R101_3x.yaml": [_w(_ADELAIDET, "SOLOv2_R101_3x.pth", 39.0)],
    "SOLOv2/mmdet/R50_3x.yaml": [_w(_MMDET, "solov2_r50_fpn_1x_coco", 34.8),
                                 _w(_MMDET, "solov2_r50_fpn_ms-3x_coco", 37.5),
                                 _w(_SOLO, "SOLOv2_R50_1x.pth", 34.8), _w(_SOLO, "SOLOv2_R50_3x.pth", 37.5)],
    "SOLOv2/mmdet/R101_3x.yaml": [_w(_MMDET, "solov2_r101_fpn_ms-3x_coco", 39.1),
                                  _w(_SOLO, "SOLOv2_R101_3x.pth", 39.1)],
    "SOLOv2/mmdet/R101_DCN_3x.yaml": [_w(_MMDET, "solov2_r101-dcn_fpn_ms-3x_coco", 41.2),
                                      _w(_SOLO, "SOLOv2_R101_DCN_3x.pth", 41.4)],
    "SOLOv2/mmdet/X101_DCN_3x.yaml": [_w(_MMDET, "solov2_x101-dcn_fpn_ms-3x_coco", 42.4),
                                      _w(_SOLO, "SOLOv2_X101_DCN_3x.pth", 42.4)],
    "SOLOv2/mmdet/Light_448_R18_3x.yaml": [_w(_MMDET, "solov2-light_r18_fpn_ms-3x_coco", 29.7),
                                           _w(_SOLO, "SOLOv2_LIGHT_448_R18_3x.pth", 29.6)],
    "SOLOv2/mmdet/Light_448_R34_3x.yaml": [_w(_MMDET, "solov2-light_r34_fpn_ms-3x_coco", 31.9),
                                           _w(_SOLO, "SOLOv2_LIGHT_448_R34_3x.pth", 32.0)],
    "SOLOv2/mmdet/Light_448_R50_3x.yaml": [_w(_MMDET, "solov2-light_r50_fpn_ms-3x_coco", 33.7),
                                           _w(_SOLO, "SOLOv2_LIGHT_448_R50_3x.pth", 33.7)],
    "SOLOv2/mmdet/Light_512_DCN_R50_3x.yaml": [_w(_SOLO, "SOLOv2_LIGHT_512_DCN_R50_3x.pth", 36.4)],
}
