"""Stemme as a real process for end-to-end tests: ``stemme demo`` and ``stemme serve``.

Every process runs in its own session (process group), from a clean environment (PATH, HOME,
LANG and the STEMME_* settings only), listening on 127.0.0.1. Its stdout and stderr go to files
under the test's log directory, one pair per start, so a test can read everything the service
ever printed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

_LINK = re.compile(r"Child's chat link:\s*(?P<url>http://\S+/c/(?P<token>[A-Za-z0-9_-]+))")
_INBOX = re.compile(r"Caseworker inbox:\s*(?P<url>http://\S+)")
_LOGIN = re.compile(r"Login:\s*(?P<user>\S+)\s*/\s*(?P<password>\S+)")
_TOTP = re.compile(r"TOTP secret:\s*(?P<secret>[A-Z2-7]+)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def clean_env(settings: Mapping[str, str]) -> dict[str, str]:
    """PATH, HOME and LANG from our environment, plus the given STEMME_* settings."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    for name in settings:
        assert name.startswith("STEMME_"), name
    env.update(settings)
    return env


@dataclass(frozen=True)
class DemoInfo:
    """What ``stemme demo`` printed."""

    chat_url: str
    token: str
    inbox_url: str
    username: str
    password: str
    totp_secret: str  # the demo caseworker's second factor (what an authenticator app holds)


@dataclass(frozen=True)
class DemoTemplate:
    """A data directory prepared by ``stemme demo``, to be copied for each test."""

    data_dir: Path
    log_dir: Path  # what `stemme demo` printed
    info: DemoInfo


@dataclass(frozen=True)
class ExitSite:
    """A harmless page on 127.0.0.1 for the quick-exit button to leave to."""

    base_url: str

    @property
    def exit_url(self) -> str:
        return f"{self.base_url}/elsewhere"

    @property
    def before_url(self) -> str:
        return f"{self.base_url}/before"


def rebased(info: DemoInfo, base_url: str) -> DemoInfo:
    """The same demo data served from another address (a copied data directory)."""
    return dataclasses.replace(
        info, chat_url=f"{base_url}/c/{info.token}", inbox_url=f"{base_url}/inbox/"
    )


def parse_demo_output(text: str) -> DemoInfo | None:
    """The links and the login from ``stemme demo`` output, or None while incomplete."""
    link, inbox, login = _LINK.search(text), _INBOX.search(text), _LOGIN.search(text)
    totp = _TOTP.search(text)
    if link is None or inbox is None or login is None or totp is None:
        return None
    return DemoInfo(
        chat_url=link["url"],
        token=link["token"],
        inbox_url=inbox["url"],
        username=login["user"],
        password=login["password"],
        totp_secret=totp["secret"],
    )


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of GET ``url`` (no redirects followed), or None if nothing answers."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return None


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal the process group ``proc`` leads (it was started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def stop_group(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM the group, wait, then SIGKILL whatever is left; reap ``proc``."""
    if proc.poll() is None:
        kill_group(proc, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    # The leader may be gone while children of the group live on: always finish the group.
    kill_group(proc, signal.SIGKILL)
    return proc.wait(timeout)


class ServerProcess:
    """``stemme serve`` on one data directory; can be stopped, SIGKILLed and started again."""

    def __init__(
        self,
        data_dir: Path,
        log_dir: Path,
        *,
        port: int | None = None,
        quick_exit_url: str = "http://127.0.0.1:9/quick-exit",
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.port = port if port is not None else free_port()
        self.quick_exit_url = quick_exit_url
        self.env = clean_env(
            {
                "STEMME_DATA_DIR": str(data_dir),
                "STEMME_PORT": str(self.port),
                "STEMME_QUICK_EXIT_URL": quick_exit_url,
                # Staffed around the clock, so no out-of-hours reply depends on the hour the
                # tests run; sandboxes on free ports, so parallel servers never collide.
                "STEMME_OFFICE_HOURS": "00:00-24:00",
                "STEMME_OFFICE_DAYS": "1-7",
                "STEMME_SANDBOX_PORT": "0",
                **(extra_env or {}),
            }
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://{HOST}:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "stemme.db"

    @property
    def caselog_dir(self) -> Path:
        return self.data_dir / "caselog"

    def demo(self) -> DemoInfo:
        """Run ``stemme demo`` to completion and parse what it printed."""
        out = self.log_dir / "demo.stdout"
        err = self.log_dir / "demo.stderr"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                [str(BIN / "stemme"), "demo"],
                cwd=REPO,
                env=self.env,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                code = proc.wait(START_TIMEOUT)
            finally:
                stop_group(proc)
        text = out.read_text(encoding="utf-8")
        assert code == 0, f"stemme demo failed ({code}):\n{text}\n{err.read_text()}"
        info = parse_demo_output(text)
        assert info is not None, f"unexpected `stemme demo` output:\n{text}"
        return info

    def start(self) -> None:
        """Start ``stemme serve`` and wait until /healthz answers 200."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        stdout = (self.log_dir / f"serve-{self.starts}.stdout").open("wb")
        stderr = (self.log_dir / f"serve-{self.starts}.stderr").open("wb")
        try:
            self.proc = subprocess.Popen(
                [str(BIN / "stemme"), "serve"],
                cwd=REPO,
                env=self.env,
                stdout=stdout,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            stdout.close()
            stderr.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"stemme serve exited with {self.proc.returncode}:\n{self.logs()}"
                )
            if http_status(self.base_url + "/healthz", timeout=1.0) == 200:
                # Ours, not some other process that got the port: alive and announced.
                assert self.proc.poll() is None, self.logs()
                assert "Stemme is running on" in self.stdout_text(self.starts)
                return
            time.sleep(0.05)
        self.kill()
        raise AssertionError(f"stemme serve did not become healthy:\n{self.logs()}")

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, nothing gets to clean up."""
        if self.proc is not None:
            kill_group(self.proc, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)

    def stop(self) -> int | None:
        """A graceful stop (SIGTERM, then SIGKILL after a grace period)."""
        if self.proc is None:
            return None
        return stop_group(self.proc)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stdout_text(self, start: int) -> str:
        return (self.log_dir / f"serve-{start}.stdout").read_text(
            encoding="utf-8", errors="replace"
        )

    def log_bytes(self) -> bytes:
        """Everything every ``stemme`` process of this server wrote (stdout and stderr)."""
        return b"".join(path.read_bytes() for path in sorted(self.log_dir.glob("*.std*")))

    def serve_log_bytes(self) -> bytes:
        """What ``stemme serve`` wrote (the demo prints the child's link on purpose)."""
        return b"".join(path.read_bytes() for path in sorted(self.log_dir.glob("serve-*")))

    def logs(self) -> str:
        return self.log_bytes().decode("utf-8", "replace")
