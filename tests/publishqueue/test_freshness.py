"""Freshness under load, in process: a batch places its pages a priority at a time, and a job in a worker's hands
that is queued again (an edit of a page that a rebuild's batch holds) is given back and runs again at once at its
new priority, instead of after the batch (what was rendered for it is stale and is discarded, never placed)."""
import pytest

from blog import services
from blog.models import Entry
from publishqueue.enqueue import NewJob, enqueue
from publishqueue.jobs import run_job
from publishqueue.models import FileInfo, Job
from publishqueue.worker import Worker, WorkerOptions
from tests.factories import EntryFactory, blog_with_templates

pytestmark = pytest.mark.django_db(transaction=True)


def noop(key, priority=0):
    return NewJob(kind="noop", unique_key=key, priority=priority)


def worker(runner, load=10):
    return Worker(WorkerOptions(load=load, periodic=False, background=False), worker_id="test:1:1",
                  job_runner=runner)


def test_the_jobs_above_many_others_in_a_batch_are_completed_before_those_run():
    """A rebuild's batch that took a save's pages at its top places them before running its lower pages (it placed
    them after the whole batch, and after the next batch); a small batch (a save's pages) stays one finish."""
    from publishqueue.worker import PREPARE_JOBS

    enqueue([noop("top", 10), noop("mid", 5), *(noop(f"low{i}") for i in range(PREPARE_JOBS))])
    left_when = {}

    def runner(job, prepared):
        left_when[job.unique_key] = set(Job.objects.values_list("unique_key", flat=True))
        return run_job(job, prepared)

    result = worker(runner, load=100).run()
    assert result.done == PREPARE_JOBS + 2 and not Job.objects.exists()
    assert "top" not in left_when["mid"]  # completed (its file placed) before the lower job ran
    assert "mid" not in left_when["low0"]
    assert {"low0", "low1"} <= left_when["low1"]  # one priority: completed together, after the batch

    enqueue([noop("top", 10), noop("mid", 5), noop("low")])
    worker(runner, load=100).run()
    assert {"top", "mid"} <= left_when["low"]  # a small batch: one finish


def test_a_job_queued_again_after_it_ran_in_a_batch_runs_again_before_the_batch_rest():
    enqueue(noop(str(i)) for i in range(4))
    order = []

    def runner(job, prepared):
        order.append(job.unique_key)
        if job.unique_key == "1" and order.count("1") == 1:
            enqueue([noop("0", 10)])  # job 0 ran already; what it rendered is stale
        return run_job(job, prepared)

    w = worker(runner)
    result = w.run()
    assert order == ["0", "1", "0", "2", "3"]
    assert not Job.objects.exists() and (result.done, result.preempted, result.requeued) == (4, 1, 1)


def test_a_job_queued_again_in_the_rest_of_a_batch_runs_at_its_new_priority_and_once():
    enqueue(noop(str(i)) for i in range(4))
    order = []

    def runner(job, prepared):
        order.append(job.unique_key)
        if job.unique_key == "0":
            enqueue([noop("2", 10)])  # held in the batch's rest: its batch's data was loaded before the change
        return run_job(job, prepared)

    result = worker(runner).run()
    assert order == ["0", "2", "1", "3"]
    assert not Job.objects.exists() and (result.done, result.preempted, result.requeued) == (4, 1, 1)


def test_an_entry_saved_while_its_page_waits_in_a_batch_in_hand_is_published_once_fresh(tmp_path):
    """A rebuild's batch rendered the entry's page; the entry is saved before the batch is placed: the stale page
    is dropped (its staged file removed), the page is published again with the change, and nothing else is lost."""
    site = tmp_path / "site"
    blog = blog_with_templates(site, mode="queue")
    entries = [EntryFactory(blog=blog, title=f"Old {i}") for i in range(3)]
    for entry in entries:
        services.save_entry(entry=entry)
    worker(run_job).run()
    pages = FileInfo.objects.filter(site=blog, archive_type="individual")
    first = pages.get(object_id=entries[0].pk)
    rebuild = sorted(pages, key=lambda fi: fi.pk != first.pk)  # its page first
    enqueue(NewJob(kind="publish", unique_key=str(fi.pk), fileinfo_id=fi.pk) for fi in rebuild)
    published = []

    def runner(job, prepared):
        published.append(job.fileinfo_id)
        if len(published) == 2:  # the first page ran and waits to be placed
            entry = Entry.objects.get(pk=entries[0].pk)
            entry.title = "New title"
            services.save_entry(entry=entry)
        return run_job(job, prepared)

    worker(runner, load=3).run()
    assert published[0] == first.pk and published.count(first.pk) == 2
    assert published.index(first.pk, 1) == 2  # again at once, before the batch's last page
    assert "New title" in (site / first.path).read_text()
    assert not Job.objects.exists()
    assert not list(site.rglob(".*.tmp"))


def test_a_large_batch_is_loaded_a_part_at_a_time(tmp_path):
    """Loading a batch's pages cannot be cut short: a job queued above them waits for at most PREPARE_JOBS pages'
    loading (it waited for the whole batch's), then cuts in at the next check."""
    from publishqueue.worker import PREPARE_JOBS

    blog = blog_with_templates(tmp_path / "site", mode="queue")
    for i in range(PREPARE_JOBS + 5):
        services.save_entry(entry=EntryFactory(blog=blog, title=f"Entry {i}"))
    worker(run_job, load=100).run()
    pages = FileInfo.objects.filter(site=blog, archive_type="individual")
    enqueue(NewJob(kind="publish", unique_key=str(fi.pk), fileinfo_id=fi.pk) for fi in pages)
    loaded_with = []

    def runner(job, prepared):
        loaded_with.append(id(prepared.batch))
        return run_job(job, prepared)

    worker(runner, load=100).run()
    assert len(loaded_with) == PREPARE_JOBS + 5
    assert max(loaded_with.count(batch) for batch in loaded_with) == PREPARE_JOBS
    assert loaded_with.index(loaded_with[-1]) == PREPARE_JOBS  # the second part was loaded when it was reached


def test_jobs_queued_above_a_batch_as_it_ends_are_completed_before_the_batch_in_hand_is_finished():
    """Queued above the batch while its last job ran: claimed alone and completed at once, before the batches in
    hand are finished (fsync waits, a whole batch placed) and before the lower jobs left. Fails before: the urgent
    job was claimed with the next lower job and completed after it ran (still queued when c ran)."""
    enqueue(noop(key) for key in "abcd")
    left_when = {}

    def runner(job, prepared):
        left_when[job.unique_key] = set(Job.objects.values_list("unique_key", flat=True))
        if job.unique_key == "b":
            enqueue([noop("u", 10)])  # the last job of the first batch [a, b]
        return run_job(job, prepared)

    result = worker(runner, load=2).run()
    assert result.done == 5 and not Job.objects.exists()
    assert "u" not in left_when["c"]  # completed before the next lower job ran
    assert {"a", "b"}.isdisjoint(left_when["c"])  # the batch in hand was finished after it, then the rest ran


def test_jobs_queued_above_a_large_batch_cut_it_short_before_its_rest_is_loaded(monkeypatch):
    """A large batch loads its first PREPARE_JOBS jobs, then the rest at once: a job queued above it meanwhile cuts
    it short before that load (the longest step between two jobs), not after. Fails before: the rest was loaded
    (a second load of the batch's jobs) and then given back."""
    from publishqueue.worker import PREPARE_JOBS

    enqueue(noop(f"low{i:03d}") for i in range(PREPARE_JOBS + 20))
    loads = []

    def runner(job, prepared):
        if job.unique_key == f"low{PREPARE_JOBS - 1:03d}":
            enqueue([noop("urgent", 10)])
        return run_job(job, prepared)

    w = worker(runner, load=100)
    real = w._prepare
    monkeypatch.setattr(w, "_prepare", lambda jobs: loads.append([j.unique_key for j in jobs]) or real(jobs))
    result = w.run()
    assert result.done == PREPARE_JOBS + 21 and result.preempted == 1
    assert len(loads[0]) == PREPARE_JOBS and loads[1] == ["urgent"]  # no load of the rest before the cut


def test_batches_kept_for_jobs_another_worker_took_are_finished_at_the_next_step(monkeypatch):
    """Found by review: a batch's end that sees jobs above it keeps the batches in hand for them; when another
    worker took them (the claim above the batch finds nothing), those batches were not finished, and with saves
    coming steadily they piled up, staged and unplaced. Fails before: up to 4 batches in hand at a claim."""
    from publishqueue import jobrows

    enqueue(noop(key) for key in "abcdefgh")
    real = jobrows.claim
    in_hand = []
    w = None

    def claim(**kwargs):
        in_hand.append(len(w._finishing))
        if kwargs.get("floor") is not None:  # another worker is quicker: it took (and completed) the jobs above
            Job.objects.filter(priority__gte=kwargs["floor"]).delete()
        return real(**kwargs)

    def runner(job, prepared):
        if job.unique_key in "bdfh":  # the last job of each batch of two: a save's job above them comes in
            enqueue([noop(f"urgent-{job.unique_key}", 10)])
        return run_job(job, prepared)

    monkeypatch.setattr(jobrows, "claim", claim)
    w = worker(runner, load=2)
    result = w.run()
    assert result.done == 8 and not Job.objects.exists()
    assert max(in_hand) <= 2, in_hand  # the last one, and the one kept for the jobs above; not one per save
