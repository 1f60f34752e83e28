"""scipion-em-abinitrefine: homogeneous ab-initio refinement (SGD, gold-standard half-sets)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = re.search(r'__version__ = "([^"]+)"',
                    (here / "scipion_abinitrefine" / "_version.py").read_text()).group(1)

setup(
    name="scipion-em-abinitrefine",
    version=version,
    description="Homogeneous ab-initio refinement: SGD reconstruction of two independent "
                "gold-standard half-maps from particles, as a Scipion 3 plugin and a CLI",
    long_description=(here / "README.rst").read_text(),
    long_description_content_type="text/x-rst",
    license="GPLv3",
    python_requires=">=3.11",
    packages=find_packages(),
    include_package_data=True,
    package_data={"scipion_abinitrefine": ["protocols.conf", "templates/*.json.template"]},
    install_requires=[
        # pinned to what installs beside scipion-pyworkflow 3.11 / scipion-em 3.11
        "numpy==1.26.1",
        "scipy==1.10.0",
        "numba==0.68.*",
        "mrcfile>=1.4",
        "emtable>=0.0.14",
        "matplotlib>=3.7",
        "threadpoolctl>=3.1",  # engine/threads.py: BLAS's thread pool under the job's --threads
    ],
    extras_require={
        "scipion": ["scipion-pyworkflow==3.11.7", "scipion-em==3.11.1", "scipion-em-relion>=5.0"],
        "gpu": ["numba-cuda[cu13]>=0.30", "cupy-cuda13x"],  # the H100/H200 images run CUDA 13
        "test": ["pytest>=8", "pytest-xdist>=3.5", "ruff"],
    },
    entry_points={
        "pyworkflow.plugin": ["scipion_abinitrefine = scipion_abinitrefine"],
        "console_scripts": ["abinitrefine = scipion_abinitrefine.cli:main"],
    },
    classifiers=["Programming Language :: Python :: 3.11"],
)
