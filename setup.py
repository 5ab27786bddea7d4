"""Install the solov2 package (pure Python, no compiled extensions)."""

from setuptools import find_packages, setup

setup(
    name="solov2",
    version="0.1.0",
    description="SOLOv2 instance segmentation with Detectron2-style configs, training and evaluation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(exclude=("tests", "tests.*", "configs", "tools", "demo", "datasets")),
    # Lower bounds are what the code calls: torch.compiler.is_exporting (the eager/exported branches) first shipped in
    # torch 2.6, with torchvision 0.21; Pillow, tabulate and termcolor are imported directly (not only via fvcore).
    install_requires=[
        "torch>=2.6",
        "torchvision>=0.21",
        "fvcore>=0.1.5",
        "iopath>=0.1.9",
        "pycocotools>=2.0.2",
        "opencv-python-headless>=4.5",
        "numpy",
        "Pillow",
        "pyyaml>=5.1",
        "tabulate",
        "termcolor",
        "tensorboard",
        "tqdm",
    ],
    extras_require={
        "dev": ["pytest>=7", "pytest-timeout"],
        # ONNX export (torch's torch.export-based exporter needs onnxscript) and ONNXPredictor (onnxruntime); the
        # lower bounds are the versions tested with torch 2.14
        "onnx": ["onnx>=1.23", "onnxscript>=0.7", "onnxruntime>=1.32"],
        # Training/evaluation plots (curves.png, PR curves, confusion matrix) and tools/plot_metrics.py; without it
        # they are skipped with one log line (the val_mosaic.jpg and the confusion CSV need only OpenCV)
        "plots": ["matplotlib>=3.5"],
    },
    include_package_data=True,
)
