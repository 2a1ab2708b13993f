"""Build: the data path and the admission core are compiled to C with mypyc.

Every request runs through guard/proxy and guard/core. mypyc turns their classes into C
structs with direct attribute access and their method calls into C calls, which takes about
a fifth off guard's CPU time per request (README, "Performance"). The sources stay plain,
type-checked Python: the same files run interpreted when GUARD_PURE_PYTHON=1 is set at build
time, and `guard run` logs which of the two it is running.

Everything else (config, CLI, admin, metrics, workers, demo) stays interpreted: it is off the
request path, and pydantic models are not mypyc material.
"""

from __future__ import annotations

import os
from glob import glob

from setuptools import setup

COMPILED = [
    *sorted(
        path
        for pattern in ("guard/core/*.py", "guard/proxy/*.py")
        for path in glob(pattern)
        if not path.endswith("__init__.py")
    ),
    "guard/runtime.py",
    "guard/accesslog.py",
]


def ext_modules() -> list[object]:
    if os.environ.get("GUARD_PURE_PYTHON") == "1":
        return []
    from mypyc.build import mypycify

    # group_name: one shared library, guard__mypyc, next to the guard package.
    return list(mypycify(COMPILED, opt_level="3", group_name="guard"))


setup(ext_modules=ext_modules())
