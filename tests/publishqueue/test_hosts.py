"""Many sites on one install: a request finds its site by host and path (the longest site URL, without its
scheme, that prefixes host + path), for Dynamic pages, the --http front and the comment endpoint's redirects."""
from __future__ import annotations

import datetime as dt
import http.client

import pytest
from django.test import override_settings

from blog import services
from blog.models import Comment
from dispatch.devhttp import start_dev_front
from dispatch.sockets import ListenSpec
from publishqueue.views import site_file_for
from tests.factories import EntryFactory, blog_with_templates, set_mode
from tests.fcgi import free_port

pytestmark = pytest.mark.django_db(transaction=True)

HOSTS = override_settings(ALLOWED_HOSTS=["a.example", "b.example", "c.example", "testserver"])
WHEN = dt.datetime(2026, 5, 4, 9, tzinfo=dt.UTC)


@pytest.fixture
def two_blogs(tmp_path):
    """Two blogs at the root of two hosts: the same paths (index.html, 2026/05/hello.html) on each."""
    blogs = {}
    for host in ("a", "b"):
        blog = blog_with_templates(tmp_path / host, mode="static", name=f"Blog {host.upper()}",
                                   site_url=f"http://{host}.example/", comment_policy="approve",
                                   comment_throttle_seconds=0)
        entry = EntryFactory.build(blog=blog, title=f"Hello from {host.upper()}", slug="hello", published_on=WHEN)
        services.save_entry(entry=entry)  # published statically
        blogs[host] = blog
    return blogs


def test_site_file_for_matches_the_host_and_the_longest_path(two_blogs, tmp_path):
    deeper = blog_with_templates(tmp_path / "deep", site_url="http://a.example/deep/", name="Deep")
    assert site_file_for("/", "a.example") == (two_blogs["a"], "index.html")
    assert site_file_for("/", "B.Example:80")[0] == two_blogs["b"]  # case and the default port do not matter
    assert site_file_for("/", "b.example:8000")[0] == two_blogs["b"]  # no site at that port: the host's
    assert site_file_for("/deep/x.html", "a.example") == (deeper, "x.html")
    assert site_file_for("/deep/x.html", "b.example") == (two_blogs["b"], "deep/x.html")
    # A host no site names: by path alone, but never a guess between two sites at the same path.
    assert site_file_for("/deep/", "localhost") == (deeper, "index.html")
    assert site_file_for("/", "localhost") is None


@HOSTS
def test_dynamic_pages_of_two_hosts_with_the_same_paths_are_each_their_own(two_blogs, client):
    for blog in two_blogs.values():
        set_mode(blog, "dynamic", "Main Index", "Entry")
    for host, other in (("a", "B"), ("b", "A")):
        for path in ("/", "/2026/05/hello.html"):
            page = client.get(path, HTTP_HOST=f"{host}.example")
            assert page.status_code == 200, (host, path)
            text = page.content.decode()
            assert f"Hello from {host.upper()}" in text and f"Hello from {other}" not in text


@HOSTS
def test_written_files_of_two_hosts_are_served_each_from_its_own_root(two_blogs, client):
    for host in ("a", "b"):
        page = client.get("/2026/05/hello.html", HTTP_HOST=f"{host}.example")
        assert page.status_code == 200
        assert f"Hello from {host.upper()}".encode() in b"".join(page.streaming_content)


def _get(port: int, path: str, host: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def test_the_http_front_serves_each_host_its_own_files(two_blogs, tmp_path):
    """The development front (runfcgi --http) asks the registered file finders with the Host header; a request
    no file answers goes to FastCGI (here a socket nobody listens on: 502)."""
    port = free_port()
    server = start_dev_front(f"127.0.0.1:{port}", ListenSpec(path=str(tmp_path / "nobody.sock")))
    try:
        for host, other in (("a", "B"), ("b", "A")):
            for path in ("/", "/2026/05/hello.html"):
                status, text = _get(port, path, f"{host}.example:{port}")
                assert status == 200, (host, path, text)
                assert f"Hello from {host.upper()}" in text and f"Hello from {other}" not in text
        status, _ = _get(port, "/2026/05/hello.html", "c.example")  # which blog's? Not guessed: passed on
        assert status == 502
    finally:
        server.shutdown()
        server.server_close()


@HOSTS
def test_a_comment_redirects_to_its_entry_on_its_own_blogs_host(two_blogs, client):
    entry = two_blogs["b"].entries.get()
    data = {"entry_id": entry.pk, "author": "Ann", "body": "Hello"}
    # Posted on a.example (any host serves the endpoint): back to the entry on b.example.
    response = client.post("/comments/post/", data, HTTP_HOST="a.example", REMOTE_ADDR="203.0.113.9")
    comment = Comment.objects.get()
    assert response.status_code == 303
    assert response["Location"] == f"http://b.example/2026/05/hello.html#comment-{comment.pk}"


@override_settings(ALLOWED_HOSTS=["a.example", ".example.org"])
def test_a_system_check_warns_of_a_site_whose_host_is_not_allowed(tmp_path):
    from publishqueue.checks import check_site_roots

    for url in ("http://a.example:8000/", "http://www.example.org/", "http://b.example/blog/"):
        blog_with_templates(tmp_path / "site", site_url=url, name=url)
    warnings = [w for w in check_site_roots(databases=["default"]) if w.id == "publishqueue.W003"]
    assert [w.msg for w in warnings] == ["Site 'http://b.example/blog/': its host 'b.example' is not in ALLOWED_HOSTS."]


@HOSTS
def test_a_path_too_long_for_the_file_system_is_a_404_not_a_server_error(two_blogs, client):
    """Found by hand (a 5,000-character path segment): Django's static file view let the file system's
    ENAMETOOLONG through, a 500 with a traceback in the log. Fails before: 500."""
    response = client.get("/" + "a" * 5000 + ".html", HTTP_HOST="a.example")
    assert response.status_code == 404
    assert client.get("/index.html", HTTP_HOST="a.example").status_code == 200  # files are still served
