"""What the benchmarks share: a database and broker vhost of their own, worker processes, timing.

Benchmarks run by hand or through `make bench`, never as timed unit tests. They use the database
`crowdfund_bench` (created and migrated here) and the broker vhost of `make bench`.
"""

import os
import platform
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# INFO makes workers log each task's run time (var/<hostname>.log), at some cost to throughput.
LOG_LEVEL = os.environ.get("BENCH_WORKER_LOGLEVEL", "WARNING")
BENCH_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/crowdfund_bench")


def setup_django() -> None:
    """Point this process (and the processes it starts) at the bench database, created and migrated
    if needed, with production settings: DEBUG off, as the figures should be."""
    os.environ["DATABASE_URL"] = BENCH_DATABASE_URL
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["SECURE_SSL_REDIRECT"] = "false"  # plain HTTP on loopback
    os.environ.setdefault("ALLOWED_HOSTS", "localhost,127.0.0.1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    _create_database()
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, check=True)
    import django

    django.setup()


def _create_database() -> None:
    import psycopg

    name = BENCH_DATABASE_URL.rsplit("/", 1)[1]
    server = BENCH_DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(server, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    memory = f"{mem_kb / 2**20:.0f} GiB RAM"
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {memory}, Python {platform.python_version()}"


def _spawn(command: list[str], *, log_name: str) -> subprocess.Popen:
    log = open(ROOT / "var" / f"{log_name}.log", "w")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        command, cwd=ROOT, env={**os.environ}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


class BenchWorker:
    """A real prefork worker and, beside it, the dispatcher that publishes what the benchmark
    enqueues (as every deployment runs one)."""

    def __init__(self, worker: subprocess.Popen, dispatcher: subprocess.Popen):
        self.worker, self.dispatcher = worker, dispatcher

    def stop(self) -> None:
        stop(self.worker)
        stop(self.dispatcher)


def start_dispatcher(*, log_name: str) -> subprocess.Popen:
    """`manage.py run_dispatcher`: publishes what is enqueued (it needs no warm-up: its first pass
    publishes whatever was enqueued before it listened)."""
    return _spawn([sys.executable, "manage.py", "run_dispatcher"], log_name=log_name)


def start_worker(*, queues: str, concurrency: int, include: str = "bench.bench_tasks", hostname: str = "bench"):
    """A real prefork worker with its dispatcher; returns them once the worker answers a ping."""
    from config.celery import app

    dispatcher = start_dispatcher(log_name=f"{hostname}-dispatcher")
    process = _spawn(
        [str(Path(sys.executable).parent / "celery"), "-A", "config", "worker", "-Q", queues, "-c", str(concurrency),
         "-n", f"{hostname}@%h", "--include", include, "--without-mingle", "--without-gossip", "-l", LOG_LEVEL],
        log_name=hostname,
    )  # fmt: skip
    started = BenchWorker(process, dispatcher)
    deadline = time.monotonic() + 60
    while not app.control.ping(destination=[f"{hostname}@{platform.node()}"], timeout=0.5):
        if time.monotonic() > deadline or process.poll() is not None:
            started.stop()
            raise RuntimeError(f"bench worker did not start; see var/{hostname}.log")
    return started


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class CpuMeter:
    """CPU time spent between two readings (Linux /proc) by a process tree (a worker and its
    children), by PostgreSQL's processes and by RabbitMQ's, and how busy the whole machine was.

    A rate on this shared machine moves by a fifth from one drain to the next; CPU time per task
    moves far less, and says where the time goes."""

    RABBITMQ_COMMANDS = {"beam.smp", "erl_child_setup", "epmd", "inet_gethost"}

    def __init__(self, root_pid: int):
        self.root_pid = root_pid
        self._first = None

    def start(self) -> None:
        self._first = self._read()

    def seconds(self) -> dict[str, float]:
        """CPU seconds per kind of process since start(), and the machine's busy share (0-1)."""
        (used, machine), (used_then, machine_then) = self._read(), self._first
        spent = {}
        for pid, (kind, on_cpu) in used.items():
            before = used_then.get(pid)
            spent[kind] = spent.get(kind, 0) + on_cpu - (before[1] if before and before[0] == kind else 0)
        result = {kind: nanoseconds / 1e9 for kind, nanoseconds in spent.items()}
        total, idle = machine[0] - machine_then[0], machine[1] - machine_then[1]
        result["busy"] = (total - idle) / total if total else 0.0
        return result

    def _read(self):
        parents, used, commands = {}, {}, {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                # Time on CPU in nanoseconds, per thread (schedstat): exact, where stat's utime and
                # stime are counted in whole clock ticks here, only a sampling of processes that
                # run a few microseconds at a time.
                threads = (entry / "task").iterdir()
                on_cpu = sum(int((thread / "schedstat").read_text().split()[0]) for thread in threads)
            except (OSError, ValueError):  # exited meanwhile
                continue
            command, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            pid = int(entry.name)
            parents[pid], used[pid], commands[pid] = int(fields[1]), on_cpu, command
        kinds = {pid: (self._kind(pid, parents, commands[pid]), used[pid]) for pid in used}
        cpu = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return kinds, (sum(cpu), cpu[3] + cpu[4])  # idle and iowait

    def _kind(self, pid: int, parents: dict, command: str) -> str:
        ancestor = pid
        while ancestor > 1:
            if ancestor == self.root_pid:
                return "worker"
            ancestor = parents.get(ancestor, 0)
        if command == "postgres":
            return "postgresql"
        return "rabbitmq" if command in self.RABBITMQ_COMMANDS else "other"


def percentile(sorted_values, fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return sorted_values[index]


def write_section(section: str) -> Path:
    """Replace (or add) one section of docs/benchmarks.md, found by its "## " heading (the
    section's first line), leaving the other sections alone: for a benchmark run on its own."""
    heading = section.splitlines()[0] + "\n"
    output = ROOT / "docs" / "benchmarks.md"
    text = output.read_text() if output.exists() else "# Benchmarks\n\n"
    start = text.find(heading)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + ("" if end == -1 else text[end:])
    output.parent.mkdir(exist_ok=True)
    output.write_text(text)
    return output


def run_alone(run) -> None:
    """A benchmark module run on its own (`python -m bench.<name>`): measure, print its section and
    replace that section of docs/benchmarks.md."""
    setup_django()
    section = run()
    print(section)
    print(f"Wrote {write_section(section)}")
