"""The `celery` command with the test-only tasks registered, for subcommands that have no
--include option (beat). Beat must know a probe task is a PlatformTask to send it through the
ledger, as it does the platform's own jobs."""

import sys

from celery.bin.celery import main
from celery.signals import beat_init


@beat_init.connect
def _register_probe_tasks(**kwargs):
    import tests.probe_tasks  # noqa: F401


if __name__ == "__main__":
    sys.exit(main())
