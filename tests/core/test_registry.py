import pytest

from icl_interp.errors import UserError
from icl_interp.registry import Registry


def test_register_lookup_duplicate_and_unknown() -> None:
    reg: Registry[int] = Registry("widget")
    reg.add("a", 1)
    reg.register("b")(2)
    assert reg.get("b") == 2 and reg.names() == ["a", "b"]
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", 3)
    with pytest.raises(UserError, match="valid widgets: a, b"):
        reg.get("c")
