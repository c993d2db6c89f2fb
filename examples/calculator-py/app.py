"""Wharf's calculator example in Python: implements the `calculator` world from
wit/calculator with componentize-py. Build with ./build.sh; see README.md."""

import wit_world
from wit_world import Point
from componentize_py_types import Err

_S32_MIN = -(2**31)
_S32_MAX = 2**31 - 1


def _wrap_s32(n: int) -> int:
    """Wrap an int into the s32 range (two's complement), like Rust's wrapping ops."""
    return (n + 2**31) % 2**32 - 2**31


class WitWorld(wit_world.WitWorld):
    def add(self, a: int, b: int) -> int:
        return _wrap_s32(a + b)

    def midpoint(self, a: Point, b: Point) -> Point:
        return Point(x=(a.x + b.x) / 2, y=(a.y + b.y) / 2)

    def divide(self, a: int, b: int) -> int:
        if b == 0:
            raise Err("division by zero")
        if a == _S32_MIN and b == -1:
            raise Err("overflow")
        # Truncate toward zero like Rust's `/` (Python's `//` floors instead).
        # Exact integer arithmetic: `int(a / b)` goes through a float.
        q = abs(a) // abs(b)
        return q if (a < 0) == (b < 0) else -q
