"""Server processes under test: the gateway (`gateway serve`, or any command) as a child
process with its own environment, waited for until it answers, stopped with SIGTERM."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

__all__ = [
    "ROOT",
    "BenchError",
    "Server",
    "create_api_key",
    "free_port",
    "gateway_command",
    "gateway_env",
    "run",
    "settings_from_args",
]

ROOT = Path(__file__).resolve().parents[2]


class BenchError(RuntimeError):
    """What a benchmark cannot go on from: a wrong answer, a server that died, a failed step."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gateway_command() -> list[str]:
    """`gateway`, from this interpreter's environment."""
    script = Path(sys.executable).parent / "gateway"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway.cli"]


def settings_from_args(items: Iterable[str], option: str) -> dict[str, str]:
    """GATEWAY_NAME=VALUE items of a command line option, as a dict."""
    found = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.startswith("GATEWAY_"):
            raise BenchError(f"{option} takes GATEWAY_NAME=VALUE, got {item!r}")
        found[name] = value
    return found


def gateway_env(database_url: str, data_dir: Path, settings: Mapping[str, str] | None = None) -> dict[str, str]:
    """A gateway's environment: ours only among GATEWAY_* (nothing inherited from the shell),
    a random secret key, no history purge in the middle of a measurement, then `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_DATABASE_URL=database_url,
        GATEWAY_DATA_DIR=str(data_dir),
        GATEWAY_SECRET_KEY=secrets.token_urlsafe(48),
        GATEWAY_PURGE_INTERVAL_SECONDS="0",
    )
    env.update(settings or {})
    return env


def run(command: list[str], env: Mapping[str, str] | None = None, cwd: Path = ROOT) -> str:
    """Run a set-up command; its stdout, or BenchError with its output."""
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode:
        raise BenchError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def create_api_key(env: Mapping[str, str], tenant: str, scopes: str | None = None, cwd: Path = ROOT) -> str:
    """A new API key of `tenant` (created with it if need be); the key is the last line."""
    command = [*gateway_command(), "create-api-key", "--tenant", tenant]
    if scopes:
        command += ["--scopes", scopes]
    return run(command, env, cwd).strip().splitlines()[-1]


class Server:
    """A server under test as a child process; its output goes to `log_path`."""

    def __init__(
        self,
        name: str,
        command: list[str],
        env: Mapping[str, str],
        port: int,
        log_path: Path,
        cwd: Path = ROOT,
        stop_timeout: float = 20,
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        self.stop_timeout = stop_timeout
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(  # noqa: S603 (our own command lines)
            command, env=dict(env), cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT
        )

    @classmethod
    def gateway(
        cls, env: Mapping[str, str], log_path: Path, name: str = "gateway", port: int = 0, cwd: Path = ROOT
    ) -> Server:
        """`gateway serve` on a free port (or `port`)."""
        port = port or free_port()
        return cls(name, [*gateway_command(), "serve", "--port", str(port)], env, port, log_path, cwd)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, answers: Callable[[], bool] | str = "/readyz", timeout: float = 90) -> None:
        """Until `answers()` is true, or a GET of that path answers 200."""
        import httpx

        if isinstance(answers, str):
            path = answers

            def answers() -> bool:
                return httpx.get(self.url + path, timeout=2, trust_env=False).status_code == 200

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if answers():
                    return
            time.sleep(0.1)
        raise BenchError(f"{self.name} not ready after {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        if not self.log.closed:
            self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def stop(self) -> float:
        """SIGTERM, then SIGKILL after `stop_timeout` s; the seconds it took (0 if stopped)."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                print(
                    f"  {self.name} did not stop within {self.stop_timeout:g} s after SIGTERM: killing it",
                    file=sys.stderr,
                )
                self.process.kill()
                self.process.wait()
        if not self.log.closed:
            self.log.close()
        return time.monotonic() - started
