"""`make bench`: run every benchmark in one go and write docs/benchmarks.md.

Each benchmark module has a `run()` returning its markdown section; figures are compared with a
reference measured in the same run, since this machine is shared and noisy.
"""

import importlib
import subprocess
import sys
import time
from datetime import UTC, datetime

from bench.harness import ROOT, machine, setup_django, write_section

# In the order they run; each is `bench/<name>.py` with a run() -> str.
BENCHMARKS = [
    "platform_bench",
    "api_bench",
    "payments_bench",
    "classic_comparison",
    "notifications_bench",
    "reports_bench",
    "load_test",
]


PARTIAL = ROOT / "var" / "benchmarks-partial.md"


def main() -> None:
    """All benchmarks: write docs/benchmarks.md anew. Some (`make bench BENCH="a b"`): replace only
    their sections, so one benchmark can be re-run without losing the others' figures."""
    selected = sys.argv[1:] or BENCHMARKS
    setup_django()
    started = time.monotonic()
    sections = []
    for name in selected:
        module = importlib.import_module(f"bench.{name}")
        sections.append(module.run())
        if selected != BENCHMARKS:
            print(f"Wrote {write_section(_stamped(sections[-1]))}")
        else:  # a benchmark failing late must not cost the figures already measured
            PARTIAL.write_text("\n".join(sections))
            print(f"Sections so far in {PARTIAL}", flush=True)
    if selected != BENCHMARKS:
        return
    header = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run_all`); do not edit by hand.",
        "",
        f"- Machine: {machine()}",
        f"- Date: {_now_and_commit()}",
        f"- Duration of the whole run: {time.monotonic() - started:.0f} s",
        "",
    ]
    output = ROOT / "docs" / "benchmarks.md"
    output.write_text("\n".join(header + sections))
    print(f"Wrote {output}")


def _now_and_commit() -> str:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit.strip() or 'unknown'}"


def _stamped(section: str) -> str:
    """A section measured on its own says when and on which commit, under its heading: the
    header's date and commit are the last full run's."""
    heading, rest = section.split("\n", 1)
    return f"{heading}\n\nMeasured on its own: {_now_and_commit()}.\n{rest}"


if __name__ == "__main__":
    main()
