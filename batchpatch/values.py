"""``@value``: an immutable value class that is cheap to build.

A frozen dataclass sets each field through ``object.__setattr__`` in its ``__init__``:
five times the cost of a plain slotted class (about 0.9 µs against 0.17 µs for nine
fields), and a run builds a dozen such values per image (answers, outcomes, plans).  A
``@value`` class is a slotted dataclass that type checkers treat as frozen (assigning a
field is a mypy error), hashed by its fields as a frozen one is, and built at a plain
class's cost.  Nothing may assign its fields at run time; ``dataclasses.replace`` makes a
changed copy as it does of a frozen one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True)
def value(cls: type[T]) -> type[T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
