"""Job handlers that log when each run starts and ends, to check no job runs twice at once."""
import os
import signal
import time

from publishqueue.jobs import HANDLERS


def _log(event: str, job) -> None:
    path = os.environ.get("MTD_PROBE_LOG")
    if path:
        line = f"{time.time():.6f} {event} {os.getpid()} {job.id} {job.generation}\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())  # one small O_APPEND write: never interleaved
        finally:
            os.close(fd)


_ran = {"count": 0}


def probed(kind: str):
    def handler(job, prepared=None):
        _log("start", job)
        result = HANDLERS[kind](job, prepared)
        time.sleep(float(os.environ.get("MTD_PROBE_SLEEP", "0")))
        _log("end", job)
        _ran["count"] += 1
        if _ran["count"] == int(os.environ.get("MTD_PROBE_STOP_AFTER", "0")):
            # Freeze this whole process (heartbeat included) with its batch's files staged, not yet in place:
            # a zombie worker. The test SIGCONTs it once another worker has taken its jobs over.
            os.kill(os.getpid(), signal.SIGSTOP)
        return result

    return handler


probed_publish = probed("publish")
probed_noop = probed("noop")


def overlaps(log_lines: list[str], kills: dict[int, float]) -> list[tuple]:
    """Runs of the same job by different processes that overlapped in time. A run that never logged its
    end lasted until its process was killed."""
    runs: dict[tuple[int, int], float] = {}
    intervals: dict[int, list[tuple[float, float, int]]] = {}
    for line in log_lines:
        t, event, pid, job_id, _gen = line.split()
        key = (int(pid), int(job_id))
        if event == "start":
            runs[key] = float(t)
        elif key in runs:
            intervals.setdefault(int(job_id), []).append((runs.pop(key), float(t), int(pid)))
    for (pid, job_id), start in runs.items():
        intervals.setdefault(job_id, []).append((start, kills.get(pid, float("inf")), pid))
    bad = []
    for job_id, spans in intervals.items():
        spans.sort()
        for (s1, e1, p1), (s2, _e2, p2) in zip(spans, spans[1:], strict=False):
            if s2 < e1 and p1 != p2:
                bad.append((job_id, p1, p2, s1, e1, s2))
    return bad


def crash(job, prepared=None):
    """A job that kills its worker (a segfault or the OOM killer, as far as the queue can tell). Its run ends
    with the process, at once: logged here, since the test notices the death only when it next polls (up to
    seconds later under load, which made the pill's run look as if it overlapped its next claim)."""
    _log("start", job)
    _log("end", job)
    os.kill(os.getpid(), signal.SIGKILL)
