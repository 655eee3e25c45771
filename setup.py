from setuptools import find_packages, setup

setup(
    name="spatial-kernels",
    version="0.1.0",
    description="Fused transport and density costs for spatial neural networks, and the paper's "
                "spatial MLP end to end",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["spatial_kernels", "spatial_kernels.*", "spatialnet", "spatialnet.*"]),
    package_data={"spatialnet": ["assets/*"]},
    install_requires=[
        "torch>=2.4",
        "numpy>=1.24",
        "numba>=0.59",
        "triton>=3.0; platform_system == 'Linux'",
        "torchvision>=0.19",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "optuna>=5.0",  # Trial.set_constraint: constrained sweeps
        "scikit-learn>=1.3",
        "networkx>=3.0",
    ],
    extras_require={
        "dev": ["pytest>=7", "pytest-benchmark>=4", "pykeops>=2.2", "psutil>=5", "timm>=1.0",
                "pgserver>=0.1.4", "psycopg[binary]>=3.1"],  # a real PostgreSQL for the sweep tests
        "timm": ["timm>=1.0"],  # spatial_kernels.nn on timm models (results/vit-modules)
    },
    entry_points={"console_scripts": ["spatialnet=spatialnet.__main__:main"]},
)
