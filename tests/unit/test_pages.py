"""The pages' pieces that need no server: the dashboard's filter form read into the list's
filter model, and the templates shipped with the package."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qsl

from starlette.datastructures import QueryParams

from api.pages.filters import query_string, read_form
from api.pages.templating import environment

ROOT = Path(__file__).parents[2]


def test_the_form_encoding_reads_as_the_list_filters() -> None:
    form = read_form(QueryParams(
        "status=investigating&status=identified&status=investigating&severity=&q=%20db%20"
        "&service=api,%20web&service=web&region=&since=2024-01-31T12:00"
        "&until=2024-02-01T00:00%2B01:00&limit=50&cursor="))
    assert form.errors == ()
    filters = form.filters.list_filters()
    assert filters.status == ("investigating", "identified")
    assert filters.severity == ()
    assert filters.service == ("api", "web")
    assert filters.region == ()
    assert filters.q == "db"
    assert filters.since == datetime(2024, 1, 31, 12, 0, tzinfo=UTC)  # the form says UTC
    assert filters.until == datetime(2024, 1, 31, 23, 0, tzinfo=UTC)
    assert form.filters.limit == 50
    assert form.filters.cursor is None


def test_a_wrong_value_is_named_and_left_out_and_the_rest_applies() -> None:
    form = read_form(QueryParams(
        "status=bogus&status=resolved&severity=high&since=notadate&limit=500"
        f"&service=ok,{'x' * 101}&q={'q' * 201}"))
    named = sorted(message.split(" ", 1)[0] for message in form.errors)
    assert named == ["limit", "q", "service", "since", "status"]
    assert any("'bogus'" in message for message in form.errors)
    assert any("'notadate'" in message for message in form.errors)
    filters = form.filters.list_filters()
    assert filters.status == ("resolved",)
    assert filters.severity == ("high",)
    assert filters.service == ("ok",)
    assert filters.since is None
    assert filters.q is None
    assert form.filters.limit == 20


def test_the_page_links_read_back_as_the_same_filters() -> None:
    form = read_form(QueryParams(
        "status=monitoring&incident_type=outage&service=a&service=b&region=eu&q=x"
        "&since=2024-01-31T12:00&limit=10"))
    link = query_string(form.filters, "djE6MTU")
    assert ("cursor", "djE6MTU") in parse_qsl(link)
    again = read_form(QueryParams(link))
    assert again.errors == ()
    assert again.filters.list_filters() == form.filters.list_filters()
    assert again.filters.limit == 10
    assert "limit" not in dict(parse_qsl(query_string(read_form(QueryParams("")).filters)))


def test_every_template_ships_with_the_package_and_loads() -> None:
    """pyproject's package-data names every template, so an installed wheel has them all."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = config["tool"]["setuptools"]["package-data"]["api"]
    folder = ROOT / "api" / "templates"
    names = sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())
    assert names
    for name in names:
        shipped = PurePosixPath("templates", name)
        assert any(len(shipped.parts) == len(PurePosixPath(glob).parts) and shipped.match(glob)
                   for glob in globs), name
        environment().get_template(name)  # parses
    assert sorted(environment().list_templates()) == names
