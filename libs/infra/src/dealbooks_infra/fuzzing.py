"""Hypothesis strategies the fuzz tests share: JSON of any shape, for bodies that must be
refused or survived whatever they hold. Only tests import this module; dealbooks-infra,
the test-side package, declares hypothesis for it."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy


def json_scalars(text_size: int) -> SearchStrategy[Any]:
    """JSON's scalars: null, booleans, integers, floats other than NaN, and text of at most
    `text_size` characters."""
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.text(max_size=text_size),
    )


def json_of_any_shape(
    scalars: SearchStrategy[Any], *, list_size: int, key_size: int, leaves: int
) -> SearchStrategy[Any]:
    """`scalars`, and lists (at most `list_size` items) and objects (keys of at most
    `key_size` characters) nested of them, with at most `leaves` scalars in all."""
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=list_size) | st.dictionaries(st.text(max_size=key_size), inner)
        ),
        max_leaves=leaves,
    )
