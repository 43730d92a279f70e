"""Hostile review of issue 12: a cache_max_age from a settings file never breaks serving.

A huge one made every request raise while formatting Expires (a 500 for every
file); a negative one sent ``max-age=-1``, which is no valid Cache-Control.
"""

from __future__ import annotations

from typing import Any

import pytest
from webtest import TestApp

from depot.http.rules import MAX_AGE_LIMIT
from depot.manager import DepotManager
from depot.middleware import DepotMiddleware, FileServeApp


def _no_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    return []


@pytest.mark.parametrize("age", [10**12, 2**63, str(10**30), MAX_AGE_LIMIT + 1])
def test_a_huge_max_age_is_sent_as_the_longest(age: int | str) -> None:
    file_id = DepotManager.configure("default", {"depot.backend": "memory"}).create(b"x")
    app = TestApp(DepotMiddleware(_no_app, cache_max_age=age))
    response = app.get(f"/depot/default/{file_id}")
    assert response.headers["Cache-Control"] == f"public, max-age={MAX_AGE_LIMIT}"
    assert response.headers["Expires"].endswith(" GMT")


@pytest.mark.parametrize("age", [-1, "-5", -(10**12)])
def test_a_negative_max_age_is_refused_when_configured(age: int | str) -> None:
    with pytest.raises(ValueError, match="cache_max_age must be a number of seconds, 0 or more"):
        DepotMiddleware(_no_app, cache_max_age=age)
    stored = DepotManager.configure("default", {"depot.backend": "memory"})
    with pytest.raises(ValueError, match="0 or more"):
        FileServeApp(stored.get(stored.create(b"x")), age)  # type: ignore[arg-type]


def test_zero_and_ordinary_ages_are_sent_as_given() -> None:
    file_id = DepotManager.configure("default", {"depot.backend": "memory"}).create(b"x")
    for age in (0, 3600, "60"):
        app = TestApp(DepotMiddleware(_no_app, cache_max_age=age))
        assert app.get(f"/depot/default/{file_id}").headers["Cache-Control"] == (
            f"public, max-age={int(age)}"
        )
