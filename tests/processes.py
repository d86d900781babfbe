"""`product-status` run as separate processes, as an operator runs it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.servers import free_port

CLI = str(Path(sys.executable).parent / "product-status")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, check=False)


class CliProcess:
    """One long-running `product-status ...` with its output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.log = log
        full = {**os.environ, **env}
        with log.open("ab") as out:
            self.process = subprocess.Popen([CLI, *args], env=full, stdout=out,
                                            stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signum)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=timeout)


def start_follower_process(command: str, database_url: str, log: Path,
                           timeout: float = 120) -> subprocess.Popen[bytes]:
    """`product-status project|publish|deliver`, returned once its followers run: it
    touches its HEARTBEAT_FILE only after starting them, so a signal sent afterwards
    meets its handlers rather than a process still importing."""
    beat = log.with_suffix(".beat")
    beat.unlink(missing_ok=True)
    env = {**os.environ, "DATABASE_URL": database_url, "HEARTBEAT_FILE": str(beat)}
    with log.open("ab") as out:
        process = subprocess.Popen([CLI, command], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while not beat.exists():
        assert process.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, f"{command} did not start: {log.read_text()}"
        time.sleep(0.05)
    return process


class ServeProcess(CliProcess):
    """`product-status serve` on a free loopback port, answering once started."""

    def __init__(self, env: dict[str, str], log: Path, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(["serve", *extra], {**env, "HOST": "127.0.0.1",
                                             "PORT": str(self.port)}, log)
        self.wait_ready()

    def wait_ready(self, within: float = 60) -> None:
        deadline = time.monotonic() + within
        while True:
            try:
                httpx.get(f"{self.url}/healthz", timeout=1)
                return
            except httpx.TransportError:
                assert self.alive(), self.output()
                assert time.monotonic() < deadline, f"serve did not answer:\n{self.output()}"
                time.sleep(0.1)
