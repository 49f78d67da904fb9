import datetime as dt
import os
import subprocess
import threading
import time

import pytest

from blog import services
from publishqueue.models import FileInfo
from publishqueue.publisher import PublishError, publish_file, put_in_place_later, write_atomic
from tests.factories import EntryFactory, blog_with_templates

pytestmark = pytest.mark.django_db


@pytest.fixture
def blog(tmp_path):
    return blog_with_templates(tmp_path / "site", mode="manual")


def entry_fileinfo(entry):
    services.save_entry(entry=entry)
    return FileInfo.objects.select_related("site", "template").get(object_id=entry.pk, archive_type="individual")


def test_unchanged_output_is_not_rewritten_and_keeps_its_mtime(blog, tmp_path):
    fileinfo = entry_fileinfo(EntryFactory(blog=blog))
    assert publish_file(fileinfo=fileinfo).status == "written"
    target = tmp_path / "site" / fileinfo.path
    os.utime(target, (1_000_000_000, 1_000_000_000))
    fileinfo.refresh_from_db()
    assert publish_file(fileinfo=fileinfo).status == "unchanged"
    assert target.stat().st_mtime == 1_000_000_000


def test_changed_output_is_rewritten(blog, tmp_path):
    entry = EntryFactory(blog=blog, title="Before")
    fileinfo = entry_fileinfo(entry)
    publish_file(fileinfo=fileinfo)
    entry.title = "After"
    services.save_entry(entry=entry)
    fileinfo.refresh_from_db()
    assert publish_file(fileinfo=fileinfo).status == "written"
    assert "After" in (tmp_path / "site" / fileinfo.path).read_text()


def test_a_deleted_output_file_is_written_again(blog, tmp_path):
    fileinfo = entry_fileinfo(EntryFactory(blog=blog))
    publish_file(fileinfo=fileinfo)
    (tmp_path / "site" / fileinfo.path).unlink()
    fileinfo.refresh_from_db()
    assert publish_file(fileinfo=fileinfo).status == "written"


def test_a_concurrent_reader_never_sees_a_partial_file(tmp_path):
    target = str(tmp_path / "page.html")
    versions = [b"a" * 2_000_000, b"b" * 3_000_000]
    write_atomic(target, versions[0])
    seen, done = [], threading.Event()

    def reader():
        while not done.is_set():
            with open(target, "rb") as handle:
                seen.append(handle.read())

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(60):
        write_atomic(target, versions[i % 2])
    done.set()
    thread.join()
    assert len(seen) > 5
    assert all(data in versions for data in seen), {len(d) for d in seen}
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_published_files_are_world_readable(blog, tmp_path):
    fileinfo = entry_fileinfo(EntryFactory(blog=blog))
    publish_file(fileinfo=fileinfo)
    assert (tmp_path / "site" / fileinfo.path).stat().st_mode & 0o777 == 0o644


def test_a_slug_that_escapes_the_site_root_is_refused(blog, tmp_path):
    entry = EntryFactory(blog=blog, slug="x")
    fileinfo = entry_fileinfo(entry)
    FileInfo.objects.filter(pk=fileinfo.pk).update(path="../../outside.html")
    fileinfo.refresh_from_db()
    with pytest.raises(PublishError, match=r"'\.\.' segment"):
        publish_file(fileinfo=fileinfo)
    assert not (tmp_path / "outside.html").exists()
    fileinfo.template.refresh_from_db()
    assert "'..' segment" in fileinfo.template.last_error


def test_a_symlink_out_of_the_site_root_is_refused(blog, tmp_path):
    entry = EntryFactory(blog=blog, published_on=dt.datetime(2026, 1, 5, tzinfo=dt.UTC))
    fileinfo = entry_fileinfo(entry)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "site").mkdir()
    os.symlink(outside, tmp_path / "site" / "2026")
    with pytest.raises(PublishError, match="outside the site root"):
        publish_file(fileinfo=fileinfo)
    assert list(outside.iterdir()) == []


def test_unpublishing_an_entry_removes_its_file(blog, tmp_path):
    entry = EntryFactory(blog=blog)
    fileinfo = entry_fileinfo(entry)
    publish_file(fileinfo=fileinfo)
    entry.status = "unpublished"
    services.save_entry(entry=entry)
    fileinfo.refresh_from_db()
    assert publish_file(fileinfo=fileinfo).status == "removed"
    assert not (tmp_path / "site" / fileinfo.path).exists()
    assert not FileInfo.objects.filter(pk=fileinfo.pk).exists()


@pytest.mark.django_db(transaction=True)  # static publishing runs on commit
def test_deleting_an_entry_removes_its_file(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="static")
    entry = EntryFactory(blog=blog)
    fileinfo = entry_fileinfo(entry)
    path = tmp_path / "site" / fileinfo.path
    assert path.exists()
    services.delete_entry(entry=entry)
    assert not path.exists()


def test_a_new_slug_moves_the_file(blog, tmp_path):
    entry = EntryFactory(blog=blog, slug="old-name")
    fileinfo = entry_fileinfo(entry)
    publish_file(fileinfo=fileinfo)
    entry.slug = "new-name"
    services.save_entry(entry=entry)
    fileinfo.refresh_from_db()
    publish_file(fileinfo=fileinfo)
    assert (tmp_path / "site" / fileinfo.path).name == "new-name.html"
    assert not list((tmp_path / "site").rglob("old-name.html"))


def test_a_template_error_is_recorded_for_the_admin_and_cleared_by_success(blog):
    fileinfo = entry_fileinfo(EntryFactory(blog=blog))
    template = fileinfo.template
    good = template.source
    template.source = "{{ entry.title|no_such_filter }}"
    template.save()
    fileinfo.refresh_from_db()
    with pytest.raises(PublishError, match="could not be compiled.*no_such_filter"):
        publish_file(fileinfo=fileinfo)
    template.refresh_from_db()
    assert "no_such_filter" in template.last_error
    template.source = good
    template.save()
    fileinfo.refresh_from_db()
    publish_file(fileinfo=fileinfo)
    template.refresh_from_db()
    assert template.last_error == ""


def test_compiled_templates_follow_the_template_version(blog, tmp_path):
    fileinfo = entry_fileinfo(EntryFactory(blog=blog))
    publish_file(fileinfo=fileinfo)
    header = blog.templates.get(identifier="header")
    header.source = header.source.replace("<body>", "<body><p>NEW HEADER</p>")
    header.save()
    fileinfo.refresh_from_db()
    assert publish_file(fileinfo=fileinfo).status == "written"
    assert "NEW HEADER" in (tmp_path / "site" / fileinfo.path).read_text()


def test_unchanged_is_judged_by_the_file_on_disk_not_only_the_stored_hash(blog, tmp_path):
    """A worker killed between writing a file and recording its hash must not leave a stale file later."""
    entry = EntryFactory(blog=blog, title="Version A")
    fileinfo = entry_fileinfo(entry)
    publish_file(fileinfo=fileinfo)  # A written and recorded
    target = tmp_path / "site" / fileinfo.path
    entry.title = "Version B"
    services.save_entry(entry=entry)
    fileinfo.refresh_from_db()
    deferred = publish_file(fileinfo=fileinfo, defer_record=True)
    assert put_in_place_later([deferred])() == {}  # B written, never recorded (the worker died)
    assert "Version B" in target.read_text()
    entry.title = "Version A"  # back to what the stored hash says
    services.save_entry(entry=entry)
    fileinfo.refresh_from_db()
    assert publish_file(fileinfo=fileinfo).status == "written"
    assert "Version A" in target.read_text()


def test_staged_files_left_by_dead_workers_are_swept_and_nothing_else(blog, tmp_path):
    """A worker killed between staging a file and putting it in place leaves a dot file in the site root
    (served unless the web server refuses dot files). Staged names say who wrote them: a sweep (at worker
    start) removes a dead writer's at once, a live writer's only once ten leases old, another host's once a
    lease old, the old ``.NAME.tmp`` naming once a lease old, and nothing that is not a staged file."""
    from publishqueue.publisher import host_tag, sweep_temp_files

    fileinfo = entry_fileinfo(EntryFactory(blog=blog))
    staged = publish_file(fileinfo=fileinfo, defer_record=True)  # the worker dies before putting it in place
    name = os.path.basename(fileinfo.path)
    assert os.path.basename(staged.staged).startswith(f".{name}.mtd-{host_tag()}-{os.getpid()}-")
    directory = os.path.dirname(staged.staged)
    dead = subprocess.Popen(["true"])
    dead.wait()

    def make(filename, age=0.0):
        path = os.path.join(directory, filename)
        with open(path, "w") as handle:
            handle.write("old page")
        os.utime(path, (time.time() - age, time.time() - age))
        return filename

    dead_writer = make(f".{name}.mtd-{host_tag()}-{dead.pid}-0123abcd.tmp")
    live_young = make(f".{name}.mtd-{host_tag()}-{os.getppid()}-0123abcd.tmp", age=100)
    live_ancient = make(f".{name}.mtd-{host_tag()}-{os.getppid()}-4567abcd.tmp", age=1000)
    other_host_young = make(f".{name}.mtd-{host_tag('elsewhere')}-1-0123abcd.tmp", age=30)
    other_host_old = make(f".{name}.mtd-{host_tag('elsewhere')}-1-4567abcd.tmp", age=100)
    legacy_young, legacy_old = make(".a.html.tmp", age=30), make(f".{name}.tmp", age=100)
    unrelated = [make(".htaccess", age=1000), make("notes.tmp", age=1000)]
    removed = sweep_temp_files([str(tmp_path / "site"), str(tmp_path / "site")], older_than=60)
    assert sorted(os.path.basename(p) for p in removed) == sorted(
        [dead_writer, live_ancient, other_host_old, legacy_old]
    )
    left = set(os.listdir(directory))
    assert {live_young, other_host_young, legacy_young, *unrelated} <= left
    assert os.path.basename(staged.staged) in left  # this process's own: in progress


def test_a_young_temp_file_of_another_writer_is_left_alone(blog, tmp_path):
    fileinfo = entry_fileinfo(EntryFactory(blog=blog))
    other = publish_file(fileinfo=fileinfo, defer_record=True)  # another writer, still at work
    fileinfo.refresh_from_db()
    assert publish_file(fileinfo=fileinfo, force=True).status == "written"
    assert (tmp_path / "site" / fileinfo.path).exists()
    assert os.path.exists(other.staged)
    assert put_in_place_later([other])() == {}  # and it can still finish
    assert not list((tmp_path / "site").rglob("*.tmp"))
