"""Kernel round trips through Jupyter Server's websocket: stock connection vs LowLatencyKernelConnection.

    python benchmarks/bench_kernel_latency.py [--trips 60]

For each server set-up, starts ``jupyter server`` on 127.0.0.1 (random port, token, private config,
no browser), starts a kernel and talks to it over the kernel websocket the way JupyterLab does:

* comm echo: a comm message to the kernel and the kernel's comm message back, the shape of one
  hover in the pair viewer (ipyevents -> Python -> ipycanvas), timed to the reply's arrival;
* execute: ``execute_request`` to ``execute_reply``.

The two set-ups run side by side in one process, and the ratio is printed. The difference is
Nagle's algorithm on the server's side of the websocket meeting the client's delayed ACKs; see
simviz_widgets/lab_server.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from tornado.websocket import websocket_connect

REPO_ROOT = Path(__file__).resolve().parents[1]
ECHO_TARGET = "simviz_bench_echo"
REGISTER_ECHO = f"""
from comm import get_comm_manager
def _echo_target(comm, open_msg):
    @comm.on_msg
    def _echo(msg):
        comm.send({{"echo": msg["content"]["data"]}})
get_comm_manager().register_target({ECHO_TARGET!r}, _echo_target)
"""
SETUPS = {
    "stock": [],
    "low-latency": ["--ServerApp.jpserver_extensions={'simviz_widgets.lab_server': True}"],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, extra_args: list[str], base: Path):
        self.port, self.token = _free_port(), secrets.token_hex(16)
        env = dict(os.environ)
        for name in ("config", "data", "runtime"):
            (base / name).mkdir(parents=True, exist_ok=True)
        env.update(
            JUPYTER_CONFIG_DIR=str(base / "config"),
            JUPYTER_DATA_DIR=str(base / "data"),
            JUPYTER_RUNTIME_DIR=str(base / "runtime"),
            PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
            HF_HUB_OFFLINE="1",
        )
        self.log_path = base / "server.log"
        cmd = [
            sys.executable, "-m", "jupyter", "server", "--no-browser", "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={base}", "--ServerApp.allow_root=True", *extra_args,
        ]  # fmt: skip
        self.process = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "wb"))
        deadline = time.monotonic() + 120
        while True:
            try:
                self.api("GET", "/api/status")
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"jupyter server did not start; log:\n{self.log_path.read_text()[-3000:]}")
                time.sleep(0.25)
        self.kernel_id = self.api("POST", "/api/kernels", {})["id"]

    def api(self, method: str, path: str, body: dict | None = None):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            text = response.read()
        return json.loads(text) if text else None

    def stop(self) -> None:
        try:
            self.api("DELETE", f"/api/kernels/{self.kernel_id}")
        except OSError:
            pass
        self.process.terminate()
        self.process.wait(timeout=30)


class KernelSocket:
    def __init__(self, ws, session: str):
        self.ws, self.session = ws, session

    @classmethod
    async def open(cls, server: Server) -> "KernelSocket":
        url = f"ws://127.0.0.1:{server.port}/api/kernels/{server.kernel_id}/channels?token={server.token}"
        return cls(await websocket_connect(url), uuid.uuid4().hex)

    async def send(self, channel: str, msg_type: str, content: dict) -> str:
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "username": "bench", "session": self.session, "msg_type": msg_type,
                  "version": "5.3", "date": ""}  # fmt: skip
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content,
                   "channel": channel, "buffers": []}  # fmt: skip
        await self.ws.write_message(json.dumps(message))
        return msg_id

    async def wait_for(self, parent_id: str, msg_type: str) -> dict:
        while True:
            raw = await self.ws.read_message()
            if raw is None:
                raise RuntimeError("kernel websocket closed")
            if isinstance(raw, bytes):
                continue  # binary frames carry buffers; none of ours
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") == parent_id and message["msg_type"] == msg_type:
                return message

    async def execute(self, code: str) -> float:
        start = time.perf_counter()
        msg_id = await self.send("shell", "execute_request", {
            "code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False,
        })  # fmt: skip
        reply = await self.wait_for(msg_id, "execute_reply")
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"kernel error: {reply['content']}")
        return (time.perf_counter() - start) * 1000

    async def comm_echo(self, comm_id: str, payload: int) -> float:
        start = time.perf_counter()
        msg_id = await self.send("shell", "comm_msg", {"comm_id": comm_id, "data": {"value": payload}})
        echo = await self.wait_for(msg_id, "comm_msg")
        if echo["content"]["data"]["echo"]["value"] != payload:
            raise RuntimeError(f"wrong echo: {echo['content']}")
        return (time.perf_counter() - start) * 1000


async def measure(server: Server, trips: int) -> dict[str, np.ndarray]:
    kernel = await KernelSocket.open(server)
    await kernel.execute(REGISTER_ECHO)
    comm_id = uuid.uuid4().hex
    await kernel.send("shell", "comm_open", {"comm_id": comm_id, "target_name": ECHO_TARGET, "data": {}})
    for warm in range(5):
        await kernel.comm_echo(comm_id, -warm)
        await kernel.execute("pass")
    comm, execute = [], []
    for trip in range(trips):
        comm.append(await kernel.comm_echo(comm_id, trip))
        await asyncio.sleep(0.02)  # a hover every ~20 ms, not a flood
        execute.append(await kernel.execute("pass"))
        await asyncio.sleep(0.02)
    kernel.ws.close()
    return {"comm echo": np.array(comm), "execute": np.array(execute)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trips", type=int, default=60)
    args = parser.parse_args()
    results: dict[str, dict[str, np.ndarray]] = {}
    base = Path(tempfile.mkdtemp(prefix="simviz-kernel-latency-"))
    try:
        for name, extra in SETUPS.items():
            server = Server(extra, base / name)
            try:
                results[name] = asyncio.run(measure(server, args.trips))
            finally:
                server.stop()
            if name == "low-latency" and "TCP_NODELAY=1" not in server.log_path.read_text():
                raise RuntimeError("the low-latency server did not report TCP_NODELAY=1 on the kernel websocket")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"{args.trips} round trips each, kernel websocket on 127.0.0.1")
    print(f"{'round trip':<12} {'server':<12} {'p50 ms':>8} {'p95 ms':>8}")
    for kind in ("comm echo", "execute"):
        for name in SETUPS:
            values = results[name][kind]
            print(f"{kind:<12} {name:<12} {np.percentile(values, 50):8.2f} {np.percentile(values, 95):8.2f}")
        ratio = np.median(results["stock"][kind]) / np.median(results["low-latency"][kind])
        print(f"{kind:<12} stock / low-latency (p50): {ratio:.1f}x")


if __name__ == "__main__":
    main()
