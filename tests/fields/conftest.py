"""Fixtures of the model-field tests: every test runs on each database of tests/databases.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.databases import database, engine, summarize, tag_items

__all__ = ["database", "engine"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tag_items(items)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    summarize(terminalreporter)
