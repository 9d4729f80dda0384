"""JupyterLab works from the project (`make lab`): a headless server on the project root lists the
notebooks and runs code on the project's kernel (the venv's python, the kernelspec `geomtl`)."""

import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import geomtl_core
from geomtl_core.compendium.runner import KERNEL_NAME, find_root

import pytest

ROOT = find_root(__file__)
JUPYTER_LAB = Path(sys.executable).parent / "jupyter-lab"
NOTEBOOKS = [f"0{k}_{n}.ipynb" for k, n in enumerate(
    ["data", "partitioning", "baselines", "single_task", "multitask", "ablations", "retrieval", "summary"], start=1)]
NOTEBOOKS += ["your_photos.ipynb"]  # the book's experiments, then the guide to a user's own photos


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """REST calls to a local Jupyter server with a token."""

    def __init__(self, port: int, token: str):
        self.base, self.token = f"http://127.0.0.1:{port}", token

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw, status, ctype = r.read(), r.status, r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        return status, json.loads(raw) if raw and "json" in ctype else raw.decode(errors="replace")


async def execute(server: Server, kernel_id: str, code: str, timeout: float = 30) -> tuple[str, str]:
    """Run ``code`` on a kernel through the server's kernel websocket, as JupyterLab does; (stdout, status)."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = server.base.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {server.token}"}))
    msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
    ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "session": session, "username": "test", "msg_type": "execute_request",
                   "version": "5.3", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    stdout, status, idle = [], None, False
    deadline = time.monotonic() + timeout
    try:
        while not (idle and status):
            raw = await asyncio.wait_for(ws.read_message(), max(0.1, deadline - time.monotonic()))
            assert raw is not None, "kernel websocket closed"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["header"]["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                stdout.append(content["text"])
            elif kind == "error":
                stdout.append("\n".join(content["traceback"]))
            elif kind == "execute_reply":
                status = content["status"]
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
    finally:
        ws.close()
    return "".join(stdout), status


@pytest.mark.slow
def test_jupyterlab_lists_notebooks_and_runs_the_project_kernel(tmp_path):
    """Headless JupyterLab on the project root (token, free port): /lab answers, the 7 notebooks are listed,
    a `geomtl` kernel started in notebooks/ runs a cell on this venv's python and finds the project root;
    the kernel is deleted and the server stopped."""
    assert JUPYTER_LAB.exists(), f"jupyterlab is not installed beside {sys.executable}"
    port, token = free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"), "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces")}
    cmd = [str(JUPYTER_LAB), "--no-browser", f"--port={port}", "--ip=127.0.0.1", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={ROOT}"]
    if os.geteuid() == 0:  # as `make lab` does: Jupyter refuses root without it (containers, CI)
        cmd.append("--allow-root")
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(port, token)
    try:
        deadline = time.monotonic() + 40
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                if server.call("GET", "/api/status")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server did not answer in 40 s"
            time.sleep(0.25)
        assert server.call("GET", "/api/status")[0] == 200
        status, page = server.call("GET", "/lab")
        assert status == 200 and "JupyterLab" in page

        status, listing = server.call("GET", "/api/contents/notebooks")
        assert status == 200 and listing["type"] == "directory"
        names = sorted(c["name"] for c in listing["content"] if c["type"] == "notebook")
        assert names == NOTEBOOKS

        status, specs = server.call("GET", "/api/kernelspecs")
        assert status == 200 and KERNEL_NAME in specs["kernelspecs"], specs
        status, kernel = server.call("POST", "/api/kernels", {"name": KERNEL_NAME, "path": "notebooks"})
        assert status == 201 and kernel["name"] == KERNEL_NAME, kernel
        code = ("import sys, geomtl_core\nfrom geomtl_core.compendium.runner import find_root\n"
                "print(geomtl_core.__version__, sys.prefix, find_root(), sep='|')")
        stdout, reply = asyncio.run(execute(server, kernel["id"], code, timeout=40))
        assert reply == "ok", stdout
        assert stdout == f"{geomtl_core.__version__}|{sys.prefix}|{ROOT}\n"

        assert server.call("DELETE", f"/api/kernels/{kernel['id']}")[0] == 204
        assert server.call("GET", "/api/kernels") == (200, [])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
    assert proc.returncode is not None
    assert proc.returncode == 0, (tmp_path / "server.log").read_text()[-3000:]
