"""Install the solov2 package (pure Python, no compiled extensions) and its `solov2` command.

The repository's configs/ is the one source of the model zoo's configs: building a wheel copies it into the package
(solov2/model_zoo/configs), and an editable install reads it where it is (solov2.model_zoo looks in both places).
"""

import os
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithConfigs(build_py):
    """build_py that also puts configs/**.yaml into the built package as solov2/model_zoo/configs."""

    def run(self) -> None:
        super().run()
        source = os.path.join(HERE, "configs")
        if not os.path.isdir(source):  # building from an sdist: MANIFEST.in brought configs/ along
            raise RuntimeError(f"{source} is missing: the model zoo's configs cannot be packed")
        target = os.path.join(self.build_lib, "solov2", "model_zoo", "configs")
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target, ignore=lambda d, names: [n for n in names if not (
            n.endswith((".yaml", ".yml")) or os.path.isdir(os.path.join(d, n)))])


setup(
    name="solov2",
    version="0.1.0",
    description="SOLOv2 instance segmentation with Detectron2-style configs, training and evaluation",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(exclude=("tests", "tests.*", "configs", "tools", "demo", "datasets")),
    package_data={"solov2": ["py.typed"]},
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
    entry_points={"console_scripts": ["solov2 = solov2.commands.main:main"]},
    cmdclass={"build_py": BuildPyWithConfigs},
    include_package_data=True,
)
