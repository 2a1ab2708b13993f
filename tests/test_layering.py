"""The layout's rules, read from the source with `ast` (nothing is imported to check them).

- guard/core is pure: the standard library and guard.core, nothing else.
- guard/proxy, the compiled request path, depends on neither the web/config/metrics
  libraries nor the modules that wire guard together: the runtime pushes a generation into
  the proxy, never the other way round.
- guard/tools (simulated WAS, demo, launcher) sits beside the product: only the CLI and the
  tools themselves import it.

Every import counts, including those inside functions and under `if TYPE_CHECKING:`: a
type-only import is still a dependency that a refactoring has to respect.
"""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path

GUARD = Path(__file__).resolve().parent.parent / "guard"

PROXY_FORBIDDEN_LIBRARIES = ("aiohttp", "pydantic", "prometheus_client", "redis", "yaml")
PROXY_FORBIDDEN_MODULES = (
    "guard.runtime",
    "guard.admin",
    "guard.metrics",
    "guard.config",
    "guard.tools",
)


def module_name(path: Path) -> str:
    """guard/proxy/server.py -> guard.proxy.server; guard/core/__init__.py -> guard.core."""
    parts = list(path.relative_to(GUARD.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, dotted name) of everything the source imports; `from X import y` yields X.y
    (y may be a module), relative imports are resolved against `module`."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def imports_under(folder: str) -> list[tuple[str, int, str]]:
    """(file, line, dotted name) for every import in every module under guard/<folder>."""
    files = sorted((GUARD / folder).rglob("*.py"))
    assert files, f"no modules under guard/{folder}: the layering rules would check nothing"
    out = []
    for path in files:
        name = module_name(path)
        for line, imported in imported_modules(path.read_text(), name, path.name == "__init__.py"):
            out.append((str(path.relative_to(GUARD.parent)), line, imported))
    return out


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_core_imports_only_the_standard_library_and_itself() -> None:
    bad = [
        f"{file}:{line}: {name}"
        for file, line, name in imports_under("core")
        if not within(name, "guard.core") and name.split(".")[0] not in sys.stdlib_module_names
    ]
    assert not bad, "guard/core must stay pure:\n" + "\n".join(bad)


def test_proxy_imports_no_web_config_or_metrics_library() -> None:
    bad = [
        f"{file}:{line}: {name}"
        for file, line, name in imports_under("proxy")
        if name.split(".")[0] in PROXY_FORBIDDEN_LIBRARIES
    ]
    assert not bad, "guard/proxy imports a library it must not:\n" + "\n".join(bad)


def test_proxy_imports_none_of_the_modules_that_wire_guard_together() -> None:
    def forbidden(name: str) -> bool:
        # guard.config_types & co. are the configuration too, until they become guard.config.*
        return name.startswith("guard.config_") or any(
            within(name, prefix) for prefix in PROXY_FORBIDDEN_MODULES
        )

    bad = [
        f"{file}:{line}: {name}" for file, line, name in imports_under("proxy") if forbidden(name)
    ]
    assert not bad, "guard/proxy must not import these (the runtime pushes into the proxy):\n" + (
        "\n".join(bad)
    )


def test_only_the_cli_and_the_tools_import_the_tools() -> None:
    bad = []
    for path in sorted(GUARD.rglob("*.py")):
        rel = path.relative_to(GUARD)
        if rel.parts[0] == "tools" or rel == Path("cli.py"):
            continue
        for line, name in imported_modules(
            path.read_text(), module_name(path), path.name == "__init__.py"
        ):
            if within(name, "guard.tools"):
                bad.append(f"guard/{rel}:{line}: {name}")
    assert not bad, "the product imports a tool:\n" + "\n".join(bad)


def test_the_checker_sees_every_form_of_import() -> None:
    """The rules above can only fail if the collector finds imports in every form."""
    source = textwrap.dedent(
        """
        import os.path, aiohttp
        from typing import TYPE_CHECKING
        from . import flow
        from ..runtime import Generation
        from .headers import Header
        if TYPE_CHECKING:
            from guard.config import Limits

        def late() -> None:
            import redis
        """
    )
    found = {name for _line, name in imported_modules(source, "guard.proxy.server")}
    assert found == {
        "os.path",
        "aiohttp",
        "typing.TYPE_CHECKING",
        "guard.proxy.flow",
        "guard.runtime.Generation",
        "guard.proxy.headers.Header",
        "guard.config.Limits",
        "redis",
    }
    in_package = imported_modules("from . import clock", "guard.core", is_package=True)
    assert in_package == [(1, "guard.core.clock")]
