"""guard: a traffic guard for shopping-mall web fleets."""


def data_path() -> str:
    """'compiled' when the request path runs as mypyc-built C (the normal install),
    'interpreted' when it runs from the .py sources (GUARD_PURE_PYTHON=1 at build time)."""
    from guard.proxy import forward

    return "interpreted" if forward.__file__.endswith(".py") else "compiled"
