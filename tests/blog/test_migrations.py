import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE, AFTER = [("blog", "0002_content_version")], [("blog", "0003_entry_body_html")]


@pytest.mark.django_db(transaction=True)
def test_existing_entries_get_their_body_html_when_the_column_is_added():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    blog = old.get_model("blog", "Blog").objects.create(name="Old", site_url="http://x/", site_root="/srv/x")
    entry = old.get_model("blog", "Entry").objects.create(blog=blog, title="t", slug="t", body="An *old* entry.")
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new = executor.loader.project_state(AFTER).apps
    assert new.get_model("blog", "Entry").objects.get(pk=entry.pk).body_html == "<p>An <em>old</em> entry.</p>"
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
