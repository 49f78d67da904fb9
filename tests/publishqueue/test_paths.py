import os

import pytest

from publishqueue import paths
from publishqueue.paths import PathError, check_relative_path, format_path, resolve_output_path
from publishqueue.paths import validate_pattern as validate
from publishqueue.registry import archive_type as registered


def validate_pattern(archive_type: str, pattern: str) -> None:
    """Against the fields the blog registered for the archive type."""
    validate(archive_type, pattern, registered(archive_type).fields)


@pytest.mark.parametrize(
    ("archive_type", "pattern"),
    [
        ("individual", "{year}/{month}/{slug}.html"),
        ("category", "category/{category}/"),
        ("monthly", "{year}/{month}/"),
        ("index", "index.html"),
        ("daily", "{year}/{month}/{day}/index.html"),
    ],
)
def test_valid_patterns(archive_type, pattern):
    validate_pattern(archive_type, pattern)


@pytest.mark.parametrize(
    ("archive_type", "pattern", "message"),
    [
        ("individual", "../{slug}.html", "'..'"),
        ("individual", "/etc/{slug}", "absolute"),
        ("index", "a/./b.html", "'.'"),
        ("monthly", "{slug}.html", "{slug} is not available for monthly"),
        ("individual", "{slug!r}.html", "not supported"),
        ("individual", "{year:>8}/x.html", "not supported"),
        ("individual", "{slug", "Bad pattern"),
        ("index", "a\\..\\b", "backslash"),
        ("index", "", "empty"),
    ],
)
def test_invalid_patterns_are_refused_with_a_clear_error(archive_type, pattern, message):
    with pytest.raises(PathError, match=message.replace("{", r"\{").replace("}", r"\}").replace(".", r"\.")):
        validate_pattern(archive_type, pattern)


def test_trailing_slash_means_index_html():
    assert format_path("{year}/{month}/", {"year": "2026", "month": "03"}) == "2026/03/index.html"


def test_a_slug_that_climbs_out_is_refused():
    with pytest.raises(PathError, match=r"'\.\.'"):
        format_path("{slug}.html", {"slug": "../../etc/passwd"})
    with pytest.raises(PathError):
        check_relative_path("a/../../b")


def test_resolve_refuses_a_symlinked_directory_that_leaves_the_root(tmp_path):
    root, outside = tmp_path / "site", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside, root / "escape")
    with pytest.raises(PathError, match="outside the site root"):
        resolve_output_path(str(root), "escape/page.html")


def test_resolve_allows_a_symlink_that_stays_inside(tmp_path):
    root = tmp_path / "site"
    (root / "real").mkdir(parents=True)
    os.symlink(root / "real", root / "alias")
    assert resolve_output_path(str(root), "alias/page.html").endswith("alias/page.html")


def test_resolve_refuses_a_relative_site_root():
    with pytest.raises(PathError, match="must be an absolute directory"):
        resolve_output_path("relative/root", "index.html")


def test_a_symlinked_file_leading_out_is_refused(tmp_path):
    root, outside = tmp_path / "site", tmp_path / "outside.html"
    root.mkdir()
    outside.write_text("")
    os.symlink(outside, root / "page.html")
    with pytest.raises(PathError, match="outside the site root"):
        resolve_output_path(str(root), "page.html")


def test_a_site_root_switched_by_a_deploy_is_followed_once_the_cached_resolution_expires(tmp_path, monkeypatch):
    (tmp_path / "release-1").mkdir()
    (tmp_path / "release-2").mkdir()
    current = tmp_path / "current"
    os.symlink(tmp_path / "release-1", current)
    assert resolve_output_path(str(current), "index.html") == str(tmp_path / "release-1" / "index.html")
    os.unlink(current)
    os.symlink(tmp_path / "release-2", current)
    monkeypatch.setattr(paths, "_ROOT_TTL", 3600.0)
    assert resolve_output_path(str(current), "index.html") == str(tmp_path / "release-1" / "index.html")
    monkeypatch.setattr(paths, "_ROOT_TTL", 0.0)
    assert resolve_output_path(str(current), "index.html") == str(tmp_path / "release-2" / "index.html")
