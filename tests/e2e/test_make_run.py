"""``make run`` — the README's first command — prints working links and a login, and serves.

The venv's install step is marked as done (``make -o .venv/.installed``): reinstalling would
need the network and would change the shared venv under other running tests. Everything after
it — ``stemme demo`` then ``stemme serve`` — runs exactly as the Makefile says.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from .server import (
    BIN,
    REPO,
    START_TIMEOUT,
    DemoInfo,
    clean_env,
    free_port,
    http_status,
    parse_demo_output,
    stop_group,
)

pytestmark = pytest.mark.slow


def wait_for_demo_output(proc: subprocess.Popen[bytes], out: Path, err: Path) -> DemoInfo:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        info = parse_demo_output(out.read_text(encoding="utf-8", errors="replace"))
        if info is not None:
            return info
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(
        f"`make run` printed no chat link, inbox URL and login:\n{out.read_text()}\n"
        f"{err.read_text()}"
    )


def get(url: str) -> tuple[int, str, str]:
    """Status, final URL (after redirects) and body of GET ``url``."""
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.geturl(), response.read().decode("utf-8")


def free_run_of_ports(count: int) -> int:
    """A port p such that p .. p+count-1 were all free a moment ago (the sandboxes' ports)."""
    for _ in range(50):
        first = free_port()
        sockets = []
        try:
            for offset in range(count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", first + offset))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise AssertionError("no run of free ports")


def text_as_child(tmp_path: Path, env: dict[str, str], code: str) -> None:
    """`stemme phone`: send the code, read the notice, answer JA, read the thanks."""
    out = tmp_path / "phone.stdout"
    with out.open("wb") as stdout:
        phone = subprocess.Popen(
            [str(BIN / "stemme"), "phone", "--channel", "sms"],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    assert phone.stdin is not None

    def wait_for(needle: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while needle not in out.read_text(encoding="utf-8", errors="replace"):
            assert phone.poll() is None, out.read_text()
            assert time.monotonic() < deadline, f"no {needle!r} in:\n{out.read_text()}"
            time.sleep(0.05)

    try:
        wait_for("Type a message")
        phone.stdin.write(f"{code}\n".encode())
        phone.stdin.flush()
        wait_for("Svar JA")
        assert "116 111" in out.read_text()
        phone.stdin.write(b"ja\n")
        phone.stdin.flush()
        wait_for("< Tak")
        phone.stdin.close()
        assert phone.wait(15) == 0
    finally:
        stop_group(phone)


def test_make_run_prints_links_that_work(tmp_path: Path) -> None:
    assert (BIN / "stemme").exists(), "the venv is missing: run `make install` once"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = clean_env(
        {
            "STEMME_DATA_DIR": str(tmp_path / "data"),
            "STEMME_PORT": str(port),
            "STEMME_SANDBOX_PORT": str(free_run_of_ports(3)),
        }
    )
    out, err = tmp_path / "make.stdout", tmp_path / "make.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "-o", ".venv/.installed", "run"],
            cwd=REPO,
            env=env,
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        info = wait_for_demo_output(proc, out, err)
        assert info.chat_url.startswith(f"{base}/c/")
        assert info.inbox_url == f"{base}/inbox/"
        assert info.username == "demo"
        assert len(info.password) >= 12

        deadline = time.monotonic() + START_TIMEOUT
        while http_status(f"{base}/healthz") != 200:
            assert proc.poll() is None, f"`make run` exited:\n{out.read_text()}{err.read_text()}"
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.05)
        assert "Stemme is running on" in out.read_text()

        status, _, page = get(info.chat_url)
        assert status == 200
        assert "116 111" in page
        assert "112" in page

        status, final_url, page = get(info.inbox_url)
        assert status == 200
        assert final_url == f"{base}/inbox/login"
        assert 'name="password"' in page
        assert 'name="username"' in page
        assert proc.poll() is None

        # The demo's own invitation code, texted from `stemme phone` through the SMS sandbox.
        code = re.search(r"stemme phone --channel sms\s+\(send (\S+)\)", out.read_text())
        assert code is not None, out.read_text()
        text_as_child(tmp_path, env, code.group(1))
        assert proc.poll() is None
    finally:
        stop_group(proc)
    # The whole process group is gone: nothing is left listening.
    assert http_status(f"{base}/healthz", timeout=0.5) is None
