"""Which cases of a grid run in the fast lane (README, "Tests").

``fast_first(n, cases)`` keeps the first ``n`` cases of a ``parametrize`` list in the fast
lane and marks the rest ``slow``: the whole suite runs every case, the fast lane a quick
representative of the grid. A case may be a bare value, a tuple of values (for several
argument names) or a ``pytest.param`` (its id and marks are kept).

    @pytest.mark.parametrize("name,p,m", fast_first(1, [("gpipe", 4, 8), ("1f1b", 4, 8)]))
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from _pytest.mark import ParameterSet


def fast_first(n: int, cases: Iterable, *, several_names: bool | None = None) -> list:
    """``cases`` as ``pytest.param``s, the ones after the first ``n`` marked slow.

    A tuple case is taken for the values of several argument names unless
    ``several_names=False`` (a single argument whose values are tuples)."""
    out = []
    for index, case in enumerate(cases):
        if not isinstance(case, ParameterSet):
            spread = isinstance(case, tuple) if several_names is None else several_names
            case = pytest.param(*case) if spread else pytest.param(case)
        if index >= n:
            case = pytest.param(*case.values, id=case.id,
                                marks=[*case.marks, pytest.mark.slow])
        out.append(case)
    return out
