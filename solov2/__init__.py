"""solov2: a SOLOv2 instance-segmentation toolbox with Detectron2's interfaces."""

__version__ = "0.1.0"
