"""Real Celery worker and beat processes for the tests, against the real RabbitMQ and the test
database (never eager mode)."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import requests
from django.db import connection

from config.celery import app
from config.queues import ALL as ALL_QUEUES

ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).parent / "celery")
LOG_DIR = ROOT / "var" / "test-logs"


def test_database_url() -> str:
    """The URL of the database pytest-django created, for processes started by the tests."""
    params = connection.settings_dict
    host, port, user = params["HOST"] or "127.0.0.1", params["PORT"] or 5432, params["USER"] or "postgres"
    password = f":{params['PASSWORD']}" if params["PASSWORD"] else ""
    return f"postgres://{user}{password}@{host}:{port}/{params['NAME']}"


def process_env(**extra) -> dict:
    return {
        **os.environ,
        "DEBUG": "true",
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": app.conf.broker_url,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class ChildProcess:
    """A subprocess the tests start (worker, beat, web), in its own process group, whose output
    goes to var/test-logs/<name>.log."""

    def __init__(self, command: list[str], *, name: str, env: dict | None = None):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOG_DIR / f"{name}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=process_env(**(env or {})),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()

    def kill(self) -> None:
        """Die at once, as a crash or the OOM killer would: no shutdown code runs."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()


class CeleryProcess(ChildProcess):
    """A `celery worker` or `celery beat` subprocess that knows the probe tasks."""

    def __init__(self, *args: str, name: str, env: dict | None = None):
        if args[0] == "beat":
            # beat has no --include option: this launcher registers the probe tasks instead.
            command = [sys.executable, "-m", "tests.probe_celery", "-A", "config", *args]
        else:
            command = [CELERY, "-A", "config", *args, "--include", "tests.probe_tasks"]
        super().__init__(command, name=name, env=env)


class Dispatcher(ChildProcess):
    """A `manage.py run_dispatcher` subprocess: it publishes what the tests enqueue."""

    def __init__(self, *, name: str, env: dict | None = None, poll: float | None = None):
        command = [sys.executable, "manage.py", "run_dispatcher"]
        if poll is not None:
            command += ["--poll", str(poll)]
        super().__init__(command, name=name, env=env)


class Worker(CeleryProcess):
    """A `celery worker` subprocess, with a dispatcher beside it (as every deployment runs one), so
    that what the tests enqueue is published and run."""

    def __init__(self, *, queues=ALL_QUEUES, concurrency: int = 2, env: dict | None = None):
        self.hostname = f"test-{uuid.uuid4().hex[:8]}@localhost"
        self.queues, self.concurrency = tuple(queues), concurrency
        self.dispatcher = Dispatcher(name=f"{self.hostname.split('@')[0]}-dispatcher", env=env)
        super().__init__(
            "worker",
            "--queues",
            ",".join(queues),
            "--concurrency",
            str(concurrency),
            "--hostname",
            self.hostname,
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
            name=self.hostname.split("@")[0],
            env=env,
        )

    def stop(self, timeout: float = 20) -> None:
        super().stop(timeout)
        self.dispatcher.stop(timeout)

    def kill(self) -> None:
        super().kill()
        self.dispatcher.kill()

    def wait_ready(self, timeout: float = 30) -> "Worker":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log()}")
            if app.control.ping(destination=[self.hostname], timeout=0.5):
                return self
        raise TimeoutError(f"worker not ready after {timeout}s:\n{self.log()}")

    def child_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]


def wait_for(condition, *, timeout: float = 30, interval: float = 0.1, message: str = "condition"):
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebServer(ChildProcess):
    """A `gunicorn config.wsgi` subprocess on a free loopback port, as the web process runs in
    production; its output goes to var/test-logs/."""

    def __init__(self, *, workers: int = 2, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            str(Path(sys.executable).parent / "gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(workers), "--timeout", "60", "--graceful-timeout", "5", "--access-logfile", "-",
        ]  # fmt: skip
        super().__init__(command, name=f"web-{self.port}", env=env)

    def wait_ready(self, timeout: float = 30) -> "WebServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early:\n{self.log()}")
            try:
                # Any answer will do: /health/ says 503 when the broker is down, and that is still up.
                requests.get(f"{self.url}/health/", timeout=10)
                return self
            except requests.RequestException:
                time.sleep(0.2)
        raise TimeoutError(f"gunicorn not ready after {timeout}s:\n{self.log()}")
