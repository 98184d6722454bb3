"""solo-sqsp: Squeeze-and-Span (NeurIPS 2022) as a pluggable extension of solo-learn."""

from pathlib import Path

from setuptools import find_packages, setup

CORE = [
    "torch>=2.1",
    "torchvision>=0.16",
    "lightning>=2.1",
    "hydra-core>=1.3",
    "omegaconf>=2.3",
    "torchmetrics>=1.0",
    "numpy>=1.23",
    "pillow>=9.0",
    "scikit-learn>=1.2",
    "tqdm>=4.60",
    "matplotlib>=3.6",
]

EXTRAS = {
    # the tests run the wandb (offline) and TensorBoard loggers for real
    "dev": ["pytest>=7.4", "pytest-xdist>=3.3", "ruff>=0.6", "wandb>=0.15", "tensorboard>=2.12"],
    # solo-learn's current API is not on the package index (see README): users who have its
    # checkout put it on PYTHONPATH; these are the extra packages its methods import.
    "solo": ["timm>=0.9", "scipy>=1.10"],
    "wandb": ["wandb>=0.15"],
    "tensorboard": ["tensorboard>=2.12"],
    "umap": ["umap-learn>=0.5"],
}

setup(
    name="solo-sqsp",
    version="0.1.0",
    description="Squeeze-and-Span: distilling GAN generator representations, for solo-learn",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["solo_sqsp", "solo_sqsp.*"]),
    include_package_data=True,
    package_data={"solo_sqsp": ["assets/*.pt"]},
    install_requires=CORE,
    extras_require=EXTRAS,
    license="MIT",
)
