"""Build: the data path and the admission core are compiled to C with mypyc.

Every request runs through guard/proxy and guard/core. mypyc turns their classes into C
structs with direct attribute access and their method calls into C calls, which takes about
a fifth off guard's CPU time per request (README, "Performance"). The sources stay plain,
type-checked Python: the same files run interpreted when GUARD_PURE_PYTHON=1 is set at build
time, and `guard run` logs which of the two it is running.

Everything else (runtime wiring, config, CLI, admin, metrics, workers, demo) stays
interpreted: it is off the request path, and pydantic models are not mypyc material.
The compiled packages are listed once, in compiled.txt, which the Makefile reads too.
"""

from __future__ import annotations

import os
from glob import glob
from pathlib import Path

from setuptools import setup


def compiled_packages() -> list[str]:
    """The package directories in compiled.txt (one a line, # comments)."""
    text = (Path(__file__).resolve().parent / "compiled.txt").read_text()
    lines = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


COMPILED = sorted(
    path
    for package in compiled_packages()
    for path in glob(f"{package}/*.py")
    if not path.endswith("__init__.py")
)


def ext_modules() -> list[object]:
    if os.environ.get("GUARD_PURE_PYTHON") == "1":
        return []
    from mypyc.build import mypycify

    # group_name: one shared library, guard__mypyc, next to the guard package.
    return list(mypycify(COMPILED, opt_level="3", group_name="guard"))


setup(ext_modules=ext_modules())
