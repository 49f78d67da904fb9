"""--slowlog-timeout: php-fpm's slow log, the Python stack of a request running too long."""
import os

import pytest

pytestmark = pytest.mark.slow


def test_a_slow_request_gets_its_stack_dumped_and_a_fast_one_does_not(runfcgi):
    errlog = runfcgi.tmp / "err.log"
    runfcgi.start("--workers", "1", "--errlog", str(errlog), "--slowlog-timeout", "0.5")
    assert runfcgi.get("/t/slow?s=0.1").status == 200
    assert "most recent call first" not in errlog.read_text()  # armed per request and disarmed in time
    assert runfcgi.get("/t/slow?s=1.5").status == 200
    log = runfcgi.wait_for(lambda: "slow request" in (text := errlog.read_text()) and text, what="the slow log")
    dump = log[log.index("Current thread"):]
    assert 'fcgi_urls.py", line' in dump and " in slow" in dump  # the view's frame, where it was
    # One dump: the fast request's timer was disarmed, and the slow one's fired once.
    assert "GET /t/slow?s=1.5 took 1." in dump and log.count("Current thread") == 1
    assert runfcgi.get("/t/slow?s=0.1").status == 200 and log.count("Current thread") == 1


def _watch(timeout: float, path, rounds: int, hold: float) -> None:
    """In a fresh process (a POSIX timer and a signal handler are the process's): ``rounds`` requests that end
    at once, then one that lasts ``hold`` seconds, then a fork that does the same."""
    import time

    from dispatch.slowlog import SlowLog

    with open(path, "w") as out:
        watchdog = SlowLog(timeout, file=out)
        for _ in range(rounds):
            watchdog.arm()
            watchdog.disarm()
        watchdog.arm()
        time.sleep(hold)  # the request that is too slow
        watchdog.disarm()
        out.write("parent done\n")
        out.flush()
        pid = os.fork()
        if pid == 0:  # the drainer's case: the timer is not inherited, a new one is made
            watchdog.arm()
            time.sleep(hold)
            watchdog.disarm()
            os._exit(0)
        os.waitpid(pid, 0)


def test_the_watchdog_dumps_only_the_request_that_outlives_its_timeout_and_works_after_a_fork(tmp_path):
    """The slow log's timer, without a server: 2,000 requests armed and disarmed at once dump nothing; the one
    that outlives the timeout is dumped once, with its frame; so is one in a forked process."""
    import multiprocessing

    path = tmp_path / "dump.txt"
    process = multiprocessing.get_context("spawn").Process(target=_watch, args=(0.5, str(path), 2000, 1.0))
    process.start()
    process.join()
    assert process.exitcode == 0
    text = path.read_text()
    parent, child = text.split("parent done\n")
    assert parent.count("Current thread") == 1 and "in _watch" in parent
    assert child.count("Current thread") == 1 and "in _watch" in child


@pytest.mark.parametrize("value", ["-1", "1e19", "inf", "nan"])
def test_a_slowlog_timeout_out_of_range_is_refused_at_start(value):
    """Found by review: -1 and 1e19 made the timer refuse to arm, silently (no slow log at all), inf raised in
    every child. Now runfcgi says so and does not start."""
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--slowlog-timeout"):
        call_command("runfcgi", "--socket", "/nonexistent/x.sock", "--slowlog-timeout", value)


@pytest.mark.parametrize("value", [-1.0, 0.0, 1e19, float("inf"), float("nan")])
def test_the_watchdog_refuses_a_timeout_it_cannot_arm(value):
    from dispatch.slowlog import SlowLog

    with pytest.raises(ValueError):
        SlowLog(value)
