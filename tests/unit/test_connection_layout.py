"""An idle keep-alive connection must cost bytes, not a dict: guard holds 10,000 of them
(the README's memory figure is ≤ 3 KB per idle connection). Compiled, the classes are C
structs; interpreted, a class in the connection's chain without __slots__ silently brings
back a per-instance __dict__ (~1 KB)."""

import os

from guard import data_path
from guard.proxy.client import ClientConnection


def test_client_connection_has_no_instance_dict() -> None:
    assert ClientConnection.__dictoffset__ == 0
    if data_path() == "interpreted":
        for cls in ClientConnection.__mro__[:-1]:  # all but object
            assert "__slots__" in vars(cls), f"{cls.__name__} lacks __slots__"


def test_request_objects_are_slotted() -> None:
    from guard.proxy.headers import RequestMeta
    from guard.proxy.request import Request

    assert Request.__dictoffset__ == 0 and RequestMeta.__dictoffset__ == 0


def test_tests_run_the_data_path_that_ships() -> None:
    # `make test` builds with mypyc first; only an explicit pure-Python build runs the .py.
    expected = "interpreted" if os.environ.get("GUARD_PURE_PYTHON") == "1" else "compiled"
    assert data_path() == expected
