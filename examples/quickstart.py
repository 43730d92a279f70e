"""Store a file in a local depot, look at what was recorded, read it back.

Run from the repository root: ``python examples/quickstart.py [storage dir]``.
Without an argument the depot lives in a temporary directory.
"""

from __future__ import annotations

import sys
import tempfile

from depot.io.utils import FileIntent
from depot.manager import DepotManager


def main(storage_path: str) -> None:
    # The settings an application would read from its config file.
    DepotManager.configure(
        "default", {"depot.backend": "local", "depot.storage_path": storage_path}
    )
    depot = DepotManager.get()

    file_id = depot.create(FileIntent(b"Hello from depot!\n", "hello.txt", None))
    print(f"stored in {storage_path} as default/{file_id}")

    stored = DepotManager.get_file(f"default/{file_id}")
    for field in (
        "file_id",
        "filename",
        "content_type",
        "content_length",
        "last_modified",
        "checksum",
    ):
        print(f"  {field:15} {getattr(stored, field)}")
    print(f"  {'content':15} {stored.read()!r}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="depot-quickstart-") as path:
            main(path)
