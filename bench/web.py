"""The HTTP side of the benchmarks: gunicorn serving the project with the bench URLconf
(bench/urls.py), and wrk loading it through bench/wrk/requests.lua.

wrk is C and event-driven, so on this machine's two cores it leaves gunicorn, PostgreSQL and
RabbitMQ most of the CPU, where a client of Python threads took so much of it that the trivial
endpoint reached about 500 requests/s instead of about 2,600.
"""

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from django.core.handlers.wsgi import WSGIHandler

from bench.harness import ROOT

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))
WORKERS = int(os.environ.get("BENCH_WEB_WORKERS", "2"))
THREADS = int(os.environ.get("BENCH_WEB_THREADS", "1"))  # above 1: gunicorn's gthread workers
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
WARMUP_SECONDS = 2.0
WRK_THREADS = 2  # one a core; each runs CONNECTIONS / WRK_THREADS connections
WRK_TIMEOUT = "30s"  # answers slower than this would count as errors, not as latencies
SCRIPT = "bench/wrk/requests.lua"
LAST_PATH = "/bench/trivial"  # what each wrk thread sends as it stops, in send_once (see the script)


# --- The server -------------------------------------------------------------------------------------


class _BenchHandler(WSGIHandler):
    """The project's WSGI handler with bench/urls.py as the URLconf."""

    def get_response(self, request):
        request.urlconf = "bench.urls"
        return super().get_response(request)


_handler = None


def application(environ, start_response):  # gunicorn bench.web:application
    global _handler
    if _handler is None:
        import django

        django.setup(set_prefix=False)
        _handler = _BenchHandler()
    return _handler(environ, start_response)


def start_gunicorn(*, log_name: str) -> tuple[subprocess.Popen, str]:
    """gunicorn with WORKERS sync workers (as `make run` serves the API) on a free loopback port;
    returns the process and the base URL once it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(ROOT / "var" / f"{log_name}.log", "w")  # noqa: SIM115 - lives as long as gunicorn
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "bench.web:application", "--bind", f"127.0.0.1:{port}",
         "--workers", str(WORKERS), "--threads", str(THREADS)],
        cwd=ROOT, env={**os.environ}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            requests.get(f"{base}/bench/trivial", timeout=1)
            return process, base
        except requests.RequestException:  # not listening yet, or still loading Django
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"gunicorn did not start; see var/{log_name}.log")


# --- The load generator -----------------------------------------------------------------------------


def load(url: str, to_send: list[tuple] | None = None) -> dict:
    """wrk at CONNECTIONS connections for SECONDS, after WARMUP_SECONDS of warm-up on the same
    endpoint. `to_send` (method, path, body, headers) are sent in turn, the warm-up taking the first
    sixth: give enough that the run does not come round to them again. Without them, a GET of `url`.
    Returns requests, rps, p50_ms, p99_ms and errors (answers >= 400, socket errors, timeouts)."""
    split = len(to_send) // 6 if to_send else 0
    _wrk(url, to_send and to_send[:split], seconds=WARMUP_SECONDS, threads=WRK_THREADS, mode="cycle")
    return _wrk(url, to_send and to_send[split:], seconds=SECONDS, threads=WRK_THREADS, mode="cycle")


def send_once(url: str, to_send: list[tuple], *, deadline_seconds: float = 900) -> dict:
    """wrk sends each of `to_send` once, over CONNECTIONS connections (a thread each); returns when
    all are answered, with the same figures as load() (whose requests count only those answered)."""
    return _wrk(url, to_send, seconds=deadline_seconds, threads=CONNECTIONS, mode="once")


def _wrk(url: str, to_send, *, seconds: float, threads: int, mode: str) -> dict:
    args = [str(threads)]
    if to_send:
        if len(to_send) < threads:
            raise ValueError(f"wrk needs at least one request a thread ({threads})")
        requests_file = _write(to_send)
        args += [str(requests_file), mode, LAST_PATH]
    connections = CONNECTIONS if mode == "cycle" else threads
    try:
        process = subprocess.Popen(
            ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds:.0f}s", "--timeout", WRK_TIMEOUT,
             "-s", SCRIPT, url, "--", *args],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        if mode == "once":
            _interrupt_when_threads_end(process)
        output, _ = process.communicate()
    finally:
        if to_send:
            requests_file.unlink()
    try:
        figures = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"wrk failed:\n{output}") from None
    return {
        "requests": figures["requests"],
        "seconds": figures["seconds"],
        "rps": figures["requests"] / figures["seconds"],
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
        "errors": figures["status_errors"] + figures["socket_errors"],
    }


def _interrupt_when_threads_end(process: subprocess.Popen) -> None:
    """wrk sleeps out its duration whatever its threads do: once they have all ended (in "once"
    mode each stops after its last answer), interrupt it, and it prints its figures."""
    tasks, started = f"/proc/{process.pid}/task", False
    while process.poll() is None:
        try:
            threads = len(os.listdir(tasks)) - 1
        except FileNotFoundError:  # it has just exited
            return
        if started and threads == 0:
            process.send_signal(signal.SIGINT)
            return
        started = started or threads > 0
        time.sleep(0.02)


def _write(to_send: list[tuple]) -> Path:
    """The requests file requests.lua reads: a request a line, its fields separated by tabs."""
    path = ROOT / "var" / f"wrk-{secrets.token_hex(4)}.txt"
    with path.open("w") as file:
        for method, request_path, body, headers in to_send:
            fields = [method, request_path, body, *(f"{name}: {value}" for name, value in headers.items())]
            file.write("\t".join(fields) + "\n")
    return path
