"""The FastAPI application, built around already-constructed services."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api import problems
from api.answer_cache import ServeKept
from api.answers import document_answers
from api.consistency import ExpireStaleCookie
from api.limits import BodySizeLimit
from api.observability import Observed
from api.reader_answers import ServeReaders
from api.routes import (
    alertmanager,
    audit,
    badges,
    events,
    feeds,
    health,
    incidents,
    integration_pages,
    integrations,
    metrics,
    pages,
    postmortems,
    queries,
    reports,
    status_reads,
    stream,
    subscribe_pages,
    subscribers,
)
from infra.bootstrap import Services


def create_app(services: Services) -> FastAPI:
    app = FastAPI(
        title="Product Status",
        version="0.1.0",
        description="Declare incidents, post status updates, and tell everyone who needs to know.",
        redirect_slashes=False,  # a redirect is no answer to /incidents/../ or a typo
    )
    app.state.services = services
    problems.install(app)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(ExpireStaleCookie)
    app.add_middleware(ServeReaders)  # token reads of URLs answered before, likewise
    app.add_middleware(ServeKept)  # a crowd's anonymous reads, answered from memory
    app.add_middleware(Observed)  # the outermost: it sees every answer, and times it
    app.include_router(health.router)
    app.include_router(metrics.router)
    # Fixed paths (/incidents/status/summary, /incidents/rss/feed, ...) before
    # /incidents/{incident_id}, or they would be taken for ids.
    app.include_router(queries.router)
    app.include_router(status_reads.router)
    app.include_router(feeds.router)
    app.include_router(badges.router)
    app.include_router(incidents.router)
    app.include_router(postmortems.router)
    app.include_router(stream.router)
    app.include_router(events.router)
    app.include_router(alertmanager.router)
    app.include_router(integrations.router)
    app.include_router(subscribers.router)
    app.include_router(audit.router)
    app.include_router(reports.router)
    app.include_router(pages.router)
    app.include_router(integration_pages.router)
    app.include_router(subscribe_pages.router)
    document_answers(app)  # once every route is in
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    return app
