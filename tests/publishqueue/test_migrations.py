import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("publishqueue", "0004_process_registry"), ("blog", "0004_comment_entry_status_index")]
AFTER = [("publishqueue", "0005_content_agnostic")]


@pytest.mark.django_db(transaction=True)
def test_files_of_entries_and_categories_keep_their_object_when_publishqueue_stops_knowing_the_blog():
    """The entry and category a FileInfo showed were foreign keys to the blog app; they become object_id."""
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    blog = old.get_model("blog", "Blog").objects.create(name="Old", site_url="http://x/", site_root="/srv/x")
    entry = old.get_model("blog", "Entry").objects.create(blog=blog, title="t", slug="t")
    category = old.get_model("blog", "Category").objects.create(blog=blog, label="c", slug="c")
    template = old.get_model("publishqueue", "Template").objects.create(blog=blog, name="Entry", source="x")
    mapping = old.get_model("publishqueue", "ArchiveMapping").objects.create(
        template=template, archive_type="individual", path_pattern="{slug}.html"
    )
    FileInfo = old.get_model("publishqueue", "FileInfo")
    common = {"blog": blog, "template": template, "mapping": mapping, "url": "u"}
    on_entry = FileInfo.objects.create(archive_type="individual", context_key=f"entry:{entry.pk}", entry=entry.pk,
                                       path="t.html", **common)
    on_category = FileInfo.objects.create(archive_type="category", context_key=f"category:{category.pk}",
                                          category=category.pk, path="c/index.html", **common)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps.get_model("publishqueue", "FileInfo")
    assert new.objects.get(pk=on_entry.pk).object_id == entry.pk
    assert new.objects.get(pk=on_category.pk).object_id == category.pk
    assert new.objects.get(pk=on_entry.pk).site_id == blog.pk
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
