"""The contract suite every storage backend passes, for the test suite of any backend.

depot runs it over each of its own backends; a backend of another package runs
it with one fixture, ``storage``::

    import pytest
    from depot.testing import StorageContract

    class TestMyStorage(StorageContract):
        @pytest.fixture
        def storage(self, tmp_path):
            return MyStorage(str(tmp_path / "files"))

The tests are methods of :class:`StorageContract`; what a backend may lack
(seeking, raw access to its metadata) is skipped with a reason, and
:attr:`StorageContract.expected_failures` marks what it knowingly does not do.
Importing this module needs pytest (depot's ``test`` extra); depot itself
never imports it.

.. versionadded:: 1.0
"""

from __future__ import annotations

try:
    import pytest
except ImportError as exc:
    from depot._settings import missing_dependency_message

    raise ImportError(missing_dependency_message(__name__, "pytest")) from exc

# The suite's asserts are in a module of the package, not in a test module:
# ask pytest to rewrite them too, so a failure shows the values compared.
pytest.register_assert_rewrite("depot.testing.contract")

from depot.testing.contract import (  # noqa: E402 (after the rewrite is registered)
    BAD_IDS,
    CORRUPT_VALUES,
    QUOTED_BADLY,
    UNSAFE_TYPES,
    RawMetadata,
    StorageContract,
)
from depot.testing.streams import Generated, MiB, OneWayStream, sha256  # noqa: E402

__all__ = [
    "BAD_IDS",
    "CORRUPT_VALUES",
    "QUOTED_BADLY",
    "UNSAFE_TYPES",
    "Generated",
    "MiB",
    "OneWayStream",
    "RawMetadata",
    "StorageContract",
    "sha256",
]
