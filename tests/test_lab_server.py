"""simviz_widgets.lab_server: the low-latency kernel websocket for Jupyter Server.

The latency itself is measured in benchmarks/bench_kernel_latency.py (no timing here); these tests pin
what makes it: the extension installs the connection class only over Jupyter's default, and a real
server with the extension sets TCP_NODELAY on the kernel websocket and still relays kernel messages.
"""

import asyncio
import importlib.util
import logging
import re
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("jupyter_server")

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection  # noqa: E402

from simviz_widgets import lab_server  # noqa: E402
from simviz_widgets.lab_server import LowLatencyKernelConnection  # noqa: E402

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_kernel_latency.py"


def _fake_serverapp(connection_class):
    settings = {} if connection_class == "absent" else {"kernel_websocket_connection_class": connection_class}
    return SimpleNamespace(web_app=SimpleNamespace(settings=settings), log=logging.getLogger("fake-serverapp"))


def test_extension_point_names_this_module():
    assert lab_server._jupyter_server_extension_points() == [{"module": "simviz_widgets.lab_server"}]


@pytest.mark.parametrize("configured", [ZMQChannelsWebsocketConnection, None, "absent", LowLatencyKernelConnection])
def test_extension_installs_the_connection_over_the_default(configured):
    app = _fake_serverapp(configured)
    lab_server._load_jupyter_server_extension(app)
    assert app.web_app.settings["kernel_websocket_connection_class"] is LowLatencyKernelConnection
    assert issubclass(LowLatencyKernelConnection, ZMQChannelsWebsocketConnection)


def test_extension_leaves_a_custom_connection_alone_and_says_so(caplog):
    class GatewayLikeConnection(ZMQChannelsWebsocketConnection):
        pass

    app = _fake_serverapp(GatewayLikeConnection)
    with caplog.at_level(logging.WARNING, logger="fake-serverapp"):
        lab_server._load_jupyter_server_extension(app)
    assert app.web_app.settings["kernel_websocket_connection_class"] is GatewayLikeConnection
    assert "GatewayLikeConnection" in caplog.text and "set_nodelay(True)" in caplog.text


def test_socket_has_nodelay_reads_the_real_flag():
    import socket

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    try:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        assert lab_server.socket_has_nodelay(client) is False
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert lab_server.socket_has_nodelay(client) is True
        assert lab_server.socket_has_nodelay(None) is False
    finally:
        for sock in (client, accepted, listener):
            sock.close()


def test_real_server_with_the_extension_sets_nodelay_and_relays_comm_messages(tmp_path):
    # The benchmark's server and websocket client, reused so the test exercises exactly what it times.
    spec = importlib.util.spec_from_file_location("bench_kernel_latency", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    server = bench.Server(bench.SETUPS["low-latency"], tmp_path)
    try:

        async def talk():
            kernel = await bench.KernelSocket.open(server)
            await kernel.execute(bench.REGISTER_ECHO)
            comm_id = uuid.uuid4().hex
            await kernel.send("shell", "comm_open", {"comm_id": comm_id, "target_name": bench.ECHO_TARGET, "data": {}})
            for payload in (7, 11):  # comm_echo raises unless the kernel echoes this exact payload back
                await asyncio.wait_for(kernel.comm_echo(comm_id, payload), timeout=30)
            kernel.ws.close()

        asyncio.run(talk())
    finally:
        server.stop()
    log = server.log_path.read_text()
    assert "kernel websockets use TCP_NODELAY" in log, log[-3000:]
    flags = re.findall(r"websocket TCP_NODELAY=(\d)", log)
    assert flags and set(flags) == {"1"}, f"TCP_NODELAY read back from the server's sockets: {flags}\n{log[-3000:]}"
