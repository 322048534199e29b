"""Argument checks for the components' typed constructors: errors name the component,
the argument and what was expected, when the pipeline is built, not when it runs."""
from typing import Optional, Sequence


def integer(component: str, name: str, value, minimum: Optional[int] = None) -> None:
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(f"{component}: {name} must be an integer, got {value!r}")
  if minimum is not None and value < minimum:
    raise ValueError(f"{component}: {name} must be >= {minimum}, got {value}")


def one_of(component: str, name: str, value, allowed: Sequence) -> None:
  if value not in allowed:
    raise ValueError(f"{component}: {name} must be one of {', '.join(map(str, allowed))}; "
                     f"got {value!r}")


def non_empty(component: str, name: str, value) -> None:
  if not isinstance(value, str) or not value:
    raise ValueError(f"{component}: {name} must be a non-empty string, got {value!r}")
