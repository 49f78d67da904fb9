"""MT's run-periodic-tasks: drain the publish queue, run periodic and background tasks."""
from __future__ import annotations

import os
import signal
import sys
import threading

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from publishqueue.conf import get_config
from publishqueue.worker import Worker, WorkerOptions

ORPHAN_GRACE_SECONDS = 1.0


class Command(BaseCommand):
    help = (
        "Work the publish queue. Without --daemon: until it is empty, then exit (cron). With --daemon: "
        "forever; SIGTERM/SIGINT finish the current job and exit, SIGHUP restarts with fresh code."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--daemon", action="store_true", help="Keep running; sleep only when idle.")
        parser.add_argument("--sleep", type=float, default=5.0, help="Seconds to sleep when idle (daemon).")
        parser.add_argument("--load", type=int, default=10, help="Jobs claimed per batch.")
        parser.add_argument("--randomly", action="store_true", help="Pick batches at random among the top.")
        parser.add_argument("--once", action="store_true", help="Work one batch and exit.")
        parser.add_argument("--max-jobs", type=int, help="Exit after this many jobs.")
        parser.add_argument("--floor", type=int, help="Only jobs of at least this priority.")
        parser.add_argument("--kinds", nargs="+", help="Only these job kinds (default: all).")
        parser.add_argument("--no-periodic", action="store_true", help="Do not run the periodic tasks.")
        parser.add_argument("--no-background", action="store_true", help="Do not run django-q2 tasks.")
        parser.add_argument("--supervised", action="store_true",
                            help="Run under runfcgi --queue-workers: its manager replaces it on a recycle (SIGHUP or "
                                 "SIGTERM: finish the job and exit), and it exits when the manager dies.")
        parser.add_argument("--ready-fd", type=int,
                            help="(runfcgi) Write R to this pipe once the signal handlers are installed.")
        parser.add_argument("--verbose", action="store_true", help="Report every job.")
        parser.add_argument("--quiet", action="store_true", help="Report nothing but errors.")

    def handle(self, *args, **opts) -> None:
        if opts["load"] < 1 or opts["sleep"] < 0:
            raise CommandError("--load must be at least 1 and --sleep zero or more.")
        options = WorkerOptions(
            load=opts["load"], sleep=opts["sleep"], daemon=opts["daemon"], once=opts["once"],
            randomly=opts["randomly"], max_jobs=opts["max_jobs"], floor=opts["floor"], kinds=opts["kinds"],
            periodic=not opts["no_periodic"], background=not opts["no_background"], verbose=opts["verbose"],
            follow_recycles=not opts["supervised"], collect_between_batches=True,
        )
        quiet = opts["quiet"]
        worker = Worker(options, log=(lambda msg: None) if quiet else (lambda msg: self.stderr.write(msg)))
        self.parent = self._die_with_manager() if opts["supervised"] else None
        restart = self._install_signals(worker)
        if opts["ready_fd"] is not None:
            _say_ready(opts["ready_fd"])
        result = worker.run()
        if not quiet:
            self.stdout.write(
                f"{worker.worker_id}: {result.done} done, {result.failed} failed, {result.requeued} requeued "
                f"(changed while running), {result.lost} lost to other workers, {result.outages} database "
                f"outage(s) ridden out, {result.background} background task(s); {result.reason}."
            )
        if self.parent is not None:
            return  # supervised: its manager starts a fresh one (with its own readiness and backoff)
        if restart.is_set() or worker.restart_requested:
            self.stderr.write(f"{worker.worker_id}: SIGHUP, restarting with fresh code")
            self._reexec()

    def _die_with_manager(self) -> int:
        """SIGTERM when the manager dies (kill -9 of it must not leave this worker running)."""
        from dispatch.lifeline import die_with_parent, watch_parent

        parent = die_with_parent(signal.SIGTERM)
        watch_parent(parent, signal.SIGTERM)
        return parent

    def _install_signals(self, worker: Worker) -> threading.Event:
        restart = threading.Event()

        def stop(signum, frame) -> None:
            worker.stop(f"signal {signal.Signals(signum).name}")
            # Bounded: a job that does not finish in time is abandoned; its lease expires and another
            # worker runs it, so nothing is lost. Orphaned (the manager died): at once.
            from dispatch.lifeline import orphaned

            gone = self.parent is not None and orphaned(self.parent)
            timer = threading.Timer(ORPHAN_GRACE_SECONDS if gone else get_config()["STOP_TIMEOUT_SECONDS"],
                                    _hard_exit, args=[worker])
            timer.daemon = True
            timer.start()

        def hup(signum, frame) -> None:
            restart.set()
            worker.stop("SIGHUP: restarting with fresh code")

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, hup)
        return restart

    def _reexec(self) -> None:
        connections.close_all()
        sys.stdout.flush()
        sys.stderr.flush()
        # The command line as given: sys.argv[0] of "python -m django" is django/__main__.py, which cannot
        # be run as a script (a circular import).
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def _say_ready(fd: int) -> None:
    try:
        os.write(fd, b"R\n")
    except OSError:
        pass  # the manager is gone; the lifeline stops this worker


def _hard_exit(worker: Worker) -> None:
    sys.stderr.write(f"{worker.worker_id}: the current job did not finish in time; exiting, its lease will expire.\n")
    os._exit(3)
