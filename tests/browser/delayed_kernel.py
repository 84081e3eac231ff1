"""Test-only Jupyter Server shim: every message from the kernel reaches the browser late.

A remote kernel (JupyterHub, Colab, VS Code over SSH) answers a hover one network round trip later
than a local one. ``DelayedKernelConnection`` is Jupyter's stock kernel websocket connection with
each outgoing frame written ``SIMVIZ_KERNEL_REPLY_DELAY_MS`` (default 100) ms late, order kept (one
fixed delay per frame). Used by the browser tests and benchmarks/bench_browser_hover.py:

    jupyter lab --ServerApp.kernel_websocket_connection_class=delayed_kernel.DelayedKernelConnection
"""

from __future__ import annotations

import os

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado.ioloop import IOLoop
from tornado.websocket import WebSocketClosedError

__all__ = ["DelayedKernelConnection", "DELAY_S"]

DELAY_S = float(os.environ.get("SIMVIZ_KERNEL_REPLY_DELAY_MS", "100")) / 1000.0


def _write_late(write, message, binary) -> None:
    try:
        write(message, binary=binary)
    except WebSocketClosedError:
        pass  # the page went away while the frame waited


class DelayedKernelConnection(ZMQChannelsWebsocketConnection):
    """The stock connection, every kernel -> browser frame delayed by :data:`DELAY_S`."""

    def connect(self):
        # Logged so a test can check that the shim is in effect (lab_harness.LabServer.delayed_kernel_websockets).
        self.log.info("delayed_kernel: kernel %s websocket, frames %.0f ms late",
                      getattr(self, "kernel_id", "?"), DELAY_S * 1000)
        return super().connect()

    @property
    def write_message(self):
        write = self.websocket_handler.write_message
        loop = IOLoop.current()

        def delayed(message, binary=False):
            loop.call_later(DELAY_S, _write_late, write, message, binary)

        return delayed
