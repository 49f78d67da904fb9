import pytest
from django.core.management import CommandError, call_command

from blog.models import Blog
from publishqueue.models import Job
from tests.factories import EntryFactory, blog_with_templates

pytestmark = pytest.mark.django_db


def test_publish_needs_a_selection():
    with pytest.raises(CommandError, match="Say what to publish"):
        call_command("publish")


def test_publish_all_writes_every_file(tmp_path, capsys):
    blog = blog_with_templates(tmp_path / "site", mode="queue")
    EntryFactory.create_batch(3, blog=blog)
    call_command("publish", "--all", verbosity=0)
    site = tmp_path / "site"
    assert (site / "index.html").exists() and (site / "atom.xml").exists() and (site / "styles.css").exists()
    assert len(list(site.rglob("entry-*.html"))) == 3
    assert "published" in capsys.readouterr().out


def test_publish_one_template_into_the_queue(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="static")
    EntryFactory.create_batch(2, blog=blog)
    template = blog.templates.get(identifier="entry")
    call_command("publish", "--template", str(template.pk), "--queue", verbosity=0)
    assert Job.objects.filter(fileinfo__template=template).count() == 2
    assert not (tmp_path / "site").exists()


def test_publish_reports_failures(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="static")
    EntryFactory(blog=blog)
    blog.templates.filter(identifier="main_index").update(source="{{ missing|no_such_filter }}")
    with pytest.raises(CommandError, match="1 file.s. failed"):
        call_command("publish", "--blog", str(blog.pk), verbosity=0)


def test_demo_builds_a_browsable_site(tmp_path, capsys, client):
    site = tmp_path / "site"
    call_command("demo", "--entries", "30", "--site-root", str(site), verbosity=0)
    out = capsys.readouterr().out
    assert "Admin login: admin / " in out
    blog = Blog.objects.get()
    index = (site / "index.html").read_text()
    assert blog.name in index and index.count('class="entry"') == 20
    pages = sorted(site.rglob("*-*.html"))
    assert len(pages) == 30
    middle = pages[15].read_text()
    assert 'rel="prev"' in middle and 'rel="next"' in middle and 'action="/comments/post/"' in middle
    assert list((site / "category").glob("*/index.html"))
    # The development server serves the published files at the blog's URL.
    response = client.get("/blog/")
    assert response.status_code == 200 and blog.name in b"".join(response.streaming_content).decode()
    # Running it again keeps the data and the password.
    call_command("demo", "--entries", "30", "--site-root", str(site), verbosity=0)
    assert "existing password kept" in capsys.readouterr().out
