"""``depot serve``: the depots over HTTP on this machine, through the middleware (development)."""

from __future__ import annotations

import ipaddress
import socketserver
from collections.abc import Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import click

from depot.cli import exits
from depot.cli.group import State, cli
from depot.cli.output import Output
from depot.manager import DepotManager

__all__ = ["serve", "serve_command"]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    # A slow download must not hold up the page that asked for it.
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass  # the command prints its own line per request below


def _not_found(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = b"Not a depot file: files are served under the mountpoint.\n"
    start_response(
        "404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve(host: str, port: int, mountpoint: str, output: Output) -> None:
    """Serve until interrupted; print the address first (the port chosen, for ``--port 0``)."""
    if not _loopback(host):
        output.warn(
            f"serving on {host}: other machines can fetch every file of these depots; "
            "this server is for development, use --host 127.0.0.1 unless you mean it."
        )
    try:
        app = DepotManager.make_middleware(_not_found, mountpoint=mountpoint)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--mountpoint") from None

    def logged(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        def start(status: str, headers: Any, exc_info: Any = None) -> Any:
            output.note(f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')} {status}")
            return start_response(status, headers, exc_info)

        return app(environ, start)

    try:
        server = make_server(
            host, port, logged, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
    except OSError as exc:  # the port taken, an address not of this machine, a bad name
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; give another --port "
            "(0: any free one) or a --host of this machine."
        ) from None
    with server:
        where = f"http://{host}:{server.server_port}{mountpoint.rstrip('/')}"
        # Flushed at once: a script (or test) waits for this line to know the port.
        output.line(f"Serving {', '.join(DepotManager._depots)} at {where}/<depot>/<id>")
        output.out.file.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            output.note("stopped")


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option(
    "--port",
    "-p",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="The port (0: any free one).",
)
@click.option("--mountpoint", default="/depot", show_default=True, help="The URL prefix of files.")
@click.pass_context
def serve_command(ctx: click.Context, host: str, port: int, mountpoint: str) -> int:
    """Serve the depots over HTTP, through DepotMiddleware, for development.

    Files are at http://HOST:PORT/MOUNTPOINT/DEPOT/ID. The server is Python's
    wsgiref, one thread per request: put a real server in front in production.

    \b
    Example:
      depot serve --port 8080
    """
    state = ctx.find_object(State)
    assert state is not None
    state.depots()
    serve(host, port, mountpoint, state.output)
    return exits.OK
