"""manage.py demo run again (bin/run-demo on another PORT): the blog takes the new site URL and every page,
the stylesheet's link included, follows it."""
import pytest
from django.core.management import call_command

from blog.models import Blog

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_second_demo_run_moves_the_site_url_and_republishes(tmp_path):
    root = tmp_path / "demo"
    call_command("demo", "--entries", "3", "--site-root", str(root), "--site-url", "http://127.0.0.1:8000/blog/",
                 "--password", "pw", verbosity=0)
    assert 'href="http://127.0.0.1:8000/blog/styles.css"' in (root / "index.html").read_text()
    call_command("demo", "--entries", "3", "--site-root", str(root), "--site-url", "http://127.0.0.1:18001/blog/",
                 verbosity=0)
    assert Blog.objects.get().site_url == "http://127.0.0.1:18001/blog/"
    stale = [p for p in root.rglob("*.html") if ":8000/" in p.read_text()]
    assert not stale and 'href="http://127.0.0.1:18001/blog/styles.css"' in (root / "index.html").read_text()
