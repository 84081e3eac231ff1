"""Low-latency kernel websockets for Jupyter Server: hover replies are not held back by Nagle's algorithm.

Why this exists: every hover in the pair viewer is a small message from the browser to the kernel
and a few small messages back (the canvas commands, the busy/idle status). Jupyter Server relays
the kernel's replies to the browser over a tornado websocket and never sets ``TCP_NODELAY`` on it,
so when it writes several small frames in a row, the second waits for the browser's ACK of the
first, and the browser delays that ACK by up to 40 ms (Linux's delayed-ACK timer). Measured on a
local server: an ``execute_request`` round trip through the websocket takes ~48 ms, of which ~43 ms
is the way back; with ``TCP_NODELAY`` it takes ~5–6 ms (``benchmarks/bench_kernel_latency.py``).

Two ways to use it (both leave every other server setting alone):

* per launch::

      jupyter lab --ServerApp.kernel_websocket_connection_class=simviz_widgets.lab_server.LowLatencyKernelConnection

* as a server extension, ``--ServerApp.jpserver_extensions={'simviz_widgets.lab_server': True}`` (or
  the same key in a ``jupyter_server_config.d/*.json`` file to keep it on), which swaps the
  connection class only when the server uses Jupyter's default one; a custom class (for example a
  gateway connection) is left as it is, with a warning.

This module imports Jupyter Server, so it is only loaded by a server, never by the widgets.
"""

from __future__ import annotations

import socket

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

__all__ = ["LowLatencyKernelConnection", "socket_has_nodelay"]


def socket_has_nodelay(sock: socket.socket | None) -> bool:
    """Whether ``TCP_NODELAY`` is set on `sock` (False when there is no TCP socket to ask)."""
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


class LowLatencyKernelConnection(ZMQChannelsWebsocketConnection):
    """Jupyter's default kernel websocket connection, with ``TCP_NODELAY`` on the browser socket."""

    def connect(self):
        handler = self.websocket_handler
        # The websocket is established by the time Jupyter calls connect() (from the handler's
        # open()); tornado applies the flag to the underlying IOStream.
        handler.set_nodelay(True)
        stream = getattr(handler.ws_connection, "stream", None)
        self.log.info(
            "simviz_widgets: kernel %s websocket TCP_NODELAY=%d",
            getattr(handler, "kernel_id", "?"),
            socket_has_nodelay(getattr(stream, "socket", None)),
        )
        return super().connect()


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "simviz_widgets.lab_server"}]


def _load_jupyter_server_extension(serverapp) -> None:
    settings = serverapp.web_app.settings
    current = settings.get("kernel_websocket_connection_class")
    if current is None or current is ZMQChannelsWebsocketConnection:
        settings["kernel_websocket_connection_class"] = LowLatencyKernelConnection
        serverapp.log.info("simviz_widgets: kernel websockets use TCP_NODELAY (LowLatencyKernelConnection)")
    elif current is LowLatencyKernelConnection:
        serverapp.log.info("simviz_widgets: LowLatencyKernelConnection already configured")
    else:
        serverapp.log.warning(
            "simviz_widgets: the server uses a custom kernel websocket class %s.%s; left as it is. "
            "Hover latency may include up to 40 ms of Nagle/delayed-ACK wait per reply; to avoid it, "
            "call websocket_handler.set_nodelay(True) in that class's connect().",
            current.__module__,
            current.__qualname__,
        )


# The older entry-point name, still looked up by some servers.
load_jupyter_server_extension = _load_jupyter_server_extension
