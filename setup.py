from setuptools import find_packages, setup

# What each part needs. The bare install is the kernels: torch, numpy, numba (and triton on Linux,
# which torch's Linux wheels bring too). spatialnet, the paper end to end, is the [paper] extra.
PAPER = ["torchvision>=0.19", "tqdm>=4.60", "matplotlib>=3.7", "optuna>=4.0", "scikit-learn>=1.3",
         "networkx>=3.0", "scipy>=1.10"]
HF = ["transformers>=4.40"]
TIMM = ["timm>=1.0"]
DEV = ["pytest>=7", "pytest-benchmark>=4", "pykeops>=2.2", "psutil>=5", "ruff>=0.4",
       "pgserver>=0.1.4", "psycopg[binary]>=3.1"]  # a real PostgreSQL for the sweep tests

setup(
    name="spatial-kernels",
    version="0.2.0",
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
    ],
    extras_require={
        "paper": PAPER,  # spatialnet: the paper's model, training, studies, figures, the spatialnet command
        "hf": HF,  # spatialize on Hugging Face transformers (GPT-2's Conv1D, Llama's gated MLP, ...)
        "timm": TIMM,  # spatialize on timm models (the ViT study)
        "dev": PAPER + HF + TIMM + DEV,  # the tests
    },
    entry_points={"console_scripts": ["spatialnet=spatialnet.__main__:main"]},
)
