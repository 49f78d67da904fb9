"""django-q2 background tasks, run inside ``runworker`` (so no separate ``qcluster`` is needed).

Tasks are taken from django-q2's broker and run through django-q2's own ``worker`` and ``monitor``
functions, in process: the same execution, result saving (``Success``/``Failure``) and acknowledgement
as a cluster, without its extra processes.
"""
from __future__ import annotations

import logging
import multiprocessing
import queue

from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.monitor import monitor
from django_q.signing import BadSignature, SignedPackage
from django_q.worker import worker

logger = logging.getLogger("mtdispatch.background")


class DjangoQBridge:
    def __init__(self) -> None:
        self.broker = get_broker()
        self._timer = multiprocessing.Value("f", -1)
        self._synced = False

    def schedule_due(self) -> int:
        """django-q2's scheduler, in process: each due Schedule row (the periodic tasks among them) becomes a queued
        task, taken once across workers (the scheduler locks the due rows and moves their next run in one
        transaction). Returns how many tasks it queued."""
        from django_q.scheduler import scheduler

        from .periodic import sync_schedules

        if not self._synced:
            sync_schedules()
            self._synced = True
        before = self.pending()
        scheduler(broker=self.broker)
        return max(0, self.pending() - before)

    def pending(self) -> int:
        return self.broker.queue_size()

    def run_pending(self, *, limit: int = 50) -> int:
        """Run up to ``limit`` queued tasks; returns how many ran. Does not wait when there are none."""
        ran = 0
        while ran < limit and self.pending():
            batch = self.broker.dequeue() or []
            if not batch:
                break
            for ack_id, payload in batch:
                ran += self._run_one(ack_id, payload)
        return ran

    def _run_one(self, ack_id, payload) -> int:
        try:
            task = SignedPackage.loads(payload)
        except (TypeError, BadSignature):
            logger.exception("Dropping a django-q2 task that is not validly signed")
            self.broker.fail(ack_id)
            return 0
        task["cluster"] = Conf.CLUSTER_NAME
        task["ack_id"] = ack_id
        tasks: queue.Queue = queue.Queue()
        results: queue.Queue = queue.Queue()
        for item in (task, "STOP"):
            tasks.put(item)
        worker(tasks, results, self._timer, timeout=task.get("timeout", Conf.TIMEOUT))
        results.put("STOP")
        monitor(results, self.broker)
        return 1
