"""What rendering caches and shares: cached modules, permalinks, a batch's authors."""
import datetime as dt

import pytest


@pytest.mark.django_db
def test_cached_modules_follow_content_and_template_changes(tmp_path):
    """The default templates include the Footer cached, and the Footer the Sidebar: an entry page shows both,
    a content change (a new month) and a template change (the Footer edited) show on the next render."""
    from blog.archives import entry_context
    from blog.models import Blog
    from publishqueue.models import Template
    from publishqueue.rendering import render
    from tests.factories import EntryFactory, blog_with_templates

    blog = blog_with_templates(tmp_path / "site")
    march = EntryFactory(blog=blog, published_on=dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC))

    def page():
        fresh = Blog.objects.get(pk=blog.pk)
        return render(site=fresh, template_name="Entry", context=entry_context(march.pk), url=march.slug)

    first = page()
    assert "March 2026</a>" in first and "April 2026" not in first
    assert "&middot; Published with mtdispatch" in first
    assert page() == first
    EntryFactory(blog=blog, published_on=dt.datetime(2026, 4, 2, 12, tzinfo=dt.UTC))
    assert "April 2026</a>" in page()
    footer = Template.objects.get(site=blog, identifier="footer")
    footer.source = footer.source.replace("Published with mtdispatch", "Made by hand")
    footer.save()
    assert "Made by hand" in page() and "April 2026</a>" in page()


@pytest.mark.django_db
def test_an_entrys_permalink_is_reused_only_for_the_same_links(tmp_path):
    from blog.archives import with_links as _with_links
    from publishqueue.rendering import Links
    from tests.factories import EntryFactory, blog_with_templates

    blog = blog_with_templates(tmp_path / "site", site_url="http://a.example/")
    entry = EntryFactory(blog=blog, slug="hello", published_on=dt.datetime(2026, 3, 10, 12, tzinfo=dt.UTC))
    patterns = {"individual": "{year}/{month}/{slug}.html"}
    _with_links([entry], Links(blog, patterns))
    assert entry.permalink == "http://a.example/2026/03/hello.html"
    entry.slug = "changed"  # not seen while the links are the same (a batch's entries do not change)
    _with_links([entry], Links(blog, patterns))
    assert entry.permalink == "http://a.example/2026/03/hello.html"
    other = {"individual": "{slug}/"}  # other patterns (the templates changed)
    _with_links([entry], Links(blog, other))
    assert entry.permalink == "http://a.example/changed/index.html"
    blog.site_url = "http://b.example/"  # the same patterns, another site URL
    _with_links([entry], Links(blog, other))
    assert entry.permalink == "http://b.example/changed/index.html"


@pytest.mark.django_db
def test_a_batchs_entries_share_one_object_per_author(tmp_path, django_assert_num_queries):
    from blog.archives import BatchPages
    from tests.factories import EntryFactory, UserFactory, blog_with_templates

    blog = blog_with_templates(tmp_path / "site")
    ann, bob = UserFactory(username="ann"), UserFactory(username="bob")
    entries = [EntryFactory(blog=blog, author=author) for author in (ann, bob, ann, None)]
    pages = BatchPages.load(blog, entry_ids=[e.pk for e in entries])
    with django_assert_num_queries(0):
        loaded = [pages.entries[e.pk] for e in entries]
        assert [e.author.username if e.author else None for e in loaded] == ["ann", "bob", "ann", None]
        assert loaded[0].author is loaded[2].author
