"""The public comment endpoint: honeypot, per-IP throttle, limits, sanitising, moderation."""
import pytest

from blog.models import Comment
from blog.services import sanitize_comment
from tests.factories import EntryFactory, blog_with_templates

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def entry(tmp_path):
    blog = blog_with_templates(tmp_path / "site", mode="static", comment_throttle_seconds=60)
    return EntryFactory(blog=blog)


def post(client, entry, ip="203.0.113.7", **fields):
    data = {"entry_id": entry.pk, "author": "Ann", "email": "ann@example.com", "body": "Hello there", **fields}
    return client.post("/comments/post/", data, REMOTE_ADDR=ip)


def test_a_comment_is_held_for_moderation(client, entry):
    response = post(client, entry)
    assert response.status_code == 200 and b"held for moderation" in response.content
    comment = Comment.objects.get()
    assert (comment.status, comment.ip, comment.body) == ("pending", "203.0.113.7", "<p>Hello there</p>")


def test_auto_approved_comment_republishes_the_entry_page(client, entry, tmp_path):
    entry.blog.comment_policy = "approve"
    entry.blog.save()
    response = post(client, entry, body="Visible at once")
    comment = Comment.objects.get()
    assert response.status_code == 303
    assert response["Location"].endswith(f".html#comment-{comment.pk}")
    page = next((tmp_path / "site").rglob(f"{entry.slug}.html")).read_text()
    assert "Visible at once" in page


def test_approving_in_moderation_republishes(client, entry, tmp_path):
    from blog.services import set_comment_status

    post(client, entry, body="Approved later")
    set_comment_status(comments=Comment.objects.all(), status="approved")
    page = next((tmp_path / "site").rglob(f"{entry.slug}.html")).read_text()
    assert "Approved later" in page


def test_only_shown_comments_move_the_blogs_content_version(client, entry):
    """A pending or junk comment (spam) changes no page: every worker keeps its cached entries, site-wide variables
    and Dynamic pages; approving, unapproving or deleting an approved one moves the version."""
    from blog.models import Blog
    from blog.services import delete_comment, set_comment_status

    def version():
        return Blog.objects.get(pk=entry.blog_id).content_version

    start = version()
    for n in range(3):
        post(client, entry, ip=f"203.0.113.{n}", body=f"Spam {n}")
    set_comment_status(comments=Comment.objects.filter(body__contains="Spam 0"), status="junk")
    delete_comment(comment=Comment.objects.get(body__contains="Spam 1"))
    assert version() == start
    set_comment_status(comments=Comment.objects.filter(body__contains="Spam 2"), status="approved")
    assert version() > start
    approved = version()
    set_comment_status(comments=Comment.objects.filter(body__contains="Spam 2"), status="pending")
    assert version() > approved
    set_comment_status(comments=Comment.objects.filter(body__contains="Spam 2"), status="approved")
    approved = version()
    delete_comment(comment=Comment.objects.get(body__contains="Spam 2"))
    assert version() > approved


def test_the_honeypot_files_the_comment_as_junk(client, entry):
    response = post(client, entry, homepage="http://spam.example")
    assert response.status_code == 200
    assert Comment.objects.get().status == "junk"


def test_a_second_comment_from_the_same_ip_is_throttled(client, entry):
    assert post(client, entry).status_code == 200
    response = post(client, entry, body="again")
    assert response.status_code == 429
    assert 1 <= int(response["Retry-After"]) <= 60
    assert b"too quickly" in response.content
    assert post(client, entry, ip="198.51.100.1").status_code == 200
    assert Comment.objects.count() == 2


def test_limits_and_required_fields(client, entry):
    assert post(client, entry, body="x" * 5001).status_code == 400
    assert post(client, entry, author="").status_code == 400
    assert post(client, entry, email="not-an-email").status_code == 400
    assert post(client, entry, url="javascript:alert(1)").status_code == 400
    assert client.post("/comments/post/", {"body": "no entry"}).status_code == 400
    assert client.get("/comments/post/").status_code == 405
    assert post(client, entry, entry_id=999999).status_code == 404
    assert not Comment.objects.exists()


def test_comments_on_a_draft_or_a_closed_blog_are_refused(client, entry):
    entry.status = "draft"
    entry.save()
    assert post(client, entry).status_code == 403
    entry.status = "published"
    entry.save()
    entry.blog.comment_policy = "closed"
    entry.blog.save()
    assert post(client, entry).status_code == 403


def test_a_body_that_sanitises_to_nothing_is_refused(client, entry):
    assert post(client, entry, body="<script>alert(1)</script>").status_code == 400


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<script>alert(1)</script>Hi", "<p>Hi</p>"),
        ('<b onclick="x()">bold</b>', "<p><b>bold</b></p>"),
        ('<a href="javascript:alert(1)">x</a>', '<p><a rel="nofollow ugc">x</a></p>'),
        ('<a href="https://example.com">x</a>', '<p><a href="https://example.com" rel="nofollow ugc">x</a></p>'),
        ("one\n\ntwo\nthree", "<p>one</p>\n\n<p>two<br>three</p>"),
        ('<img src=x onerror="alert(1)">', "<p></p>"),
    ],
)
def test_sanitising(raw, clean):
    assert sanitize_comment(raw) == clean


def test_the_thank_you_and_error_pages_look_like_the_blog(client, entry):
    blog = entry.blog
    html = post(client, entry).content.decode()
    assert f'<link rel="stylesheet" href="{blog.site_url}styles.css">' in html
    assert 'class="site-header"' in html and f">{blog.name}</a>" in html and "Thank you for commenting" in html
    html = post(client, entry, ip="198.51.100.9", email="not-an-email").content.decode()
    assert "Your comment was not posted" in html and f"{blog.site_url}styles.css" in html  # a form error
    html = client.post("/comments/post/", {"body": "no entry"}).content.decode()
    assert "Your comment was not posted" in html and 'rel="stylesheet"' not in html  # no blog to look like


def test_favicon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200 and response["Content-Type"] == "image/x-icon"
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"
