"""A TCP server on 127.0.0.1 that accepts connections and never answers: a hung backend.

Not a backend module (it is not in ``BACKENDS``): the S3, GCS and GridFS tests
use it to prove that a server that hangs costs a bounded wait, not the app.
"""

from __future__ import annotations

import socket
import threading
from typing import Any


class SilentServer:
    """Accepts every connection, reads nothing, writes nothing, until closed."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._listener.settimeout(0.1)  # to see close() soon
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            self._held.append(connection)

    @property
    def connections(self) -> int:
        """How many connections were accepted so far."""
        return len(self._held)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._listener.close()
        for connection in self._held:
            connection.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
