"""Process status and the cross-host recycle control plane."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class ManagerStatus(models.Model):
    """A runfcgi manager's pool, published every couple of seconds (psutil figures per child)."""

    host = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    started = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    address = models.CharField(max_length=300, help_text="Where it listens.")
    state = models.CharField(max_length=20, default="running")
    workers_target = models.PositiveIntegerField(default=0)
    children = models.JSONField(default=list, help_text="pid, state, requests, current request and age, RSS, CPU")
    queue_workers = models.JSONField(default=list)
    requests_served = models.PositiveBigIntegerField(default=0)
    recycles = models.PositiveIntegerField(default=0)
    last_recycle_request = models.BigIntegerField(default=0)
    message = models.TextField(blank=True, help_text="What an administrator should know (a failed recycle).")
    rss = models.PositiveBigIntegerField(default=0, help_text="The manager's own resident memory.")
    cpu = models.FloatField(default=0, help_text="The manager's own CPU %.")

    class Meta:
        verbose_name = "FastCGI manager"
        constraints = [models.UniqueConstraint(fields=["host", "pid"], name="managerstatus_unique_host_pid")]

    def __str__(self) -> str:
        return f"runfcgi {self.host}:{self.pid}"


class RecycleRequest(models.Model):
    """An administrator's "Recycle Workers": every manager and queue worker on every host acts on it."""

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    requested_at = models.DateTimeField(auto_now_add=True, db_index=True)
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("recycle_workers", "Can recycle FastCGI and queue workers")]

    def __str__(self) -> str:
        return f"Recycle #{self.pk} by {self.requested_by or 'operator'} at {self.requested_at:%Y-%m-%d %H:%M:%S}"


class RecycleAck(models.Model):
    class Kind(models.TextChoices):
        MANAGER = "manager", "FastCGI manager"
        WORKER = "worker", "Queue worker"

    request = models.ForeignKey(RecycleRequest, on_delete=models.CASCADE, related_name="acks")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    host = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    acked_at = models.DateTimeField(auto_now_add=True)
    old_pids = models.JSONField(default=list)
    new_pids = models.JSONField(default=list)

    class Meta:
        ordering = ["acked_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.host}:{self.pid} acknowledged #{self.request_id}"


class ProcessHeartbeat(models.Model):
    """A live process that is not a FastCGI manager (a queue worker, standalone or supervised), as it last
    reported itself: the control plane's registry of who is running, for the dashboard and recycles."""

    class State(models.TextChoices):
        IDLE = "idle", "Idle"
        BUSY = "busy", "Busy"
        STOPPING = "stopping", "Stopping"

    process_id = models.CharField(max_length=200, unique=True, help_text="host:pid:start")
    kind = models.CharField(max_length=50, default="queue worker")
    host = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    supervisor_pid = models.PositiveIntegerField(null=True, blank=True, help_text="The runfcgi manager, if any.")
    started = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.IDLE)
    done = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    current = models.CharField(max_length=300, blank=True)
    current_since = models.DateTimeField(null=True, blank=True)
    rss = models.PositiveBigIntegerField(default=0)
    cpu = models.FloatField(default=0)

    class Meta:
        ordering = ["host", "pid"]

    def __str__(self) -> str:
        return f"{self.kind} {self.process_id}"
