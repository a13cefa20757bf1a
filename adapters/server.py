"""The one ASGI app: web simulator, its JSON API, LINE and Slack webhooks, health check."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from adapters import web
from bot.assistant import Assistant
from bot.knowledge import load
from bot.settings import Settings
from bot.store import SQLiteStore, Store
from bot.tokenize import warm_up

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """Build the app; the knowledge base is loaded and validated here, before any request."""
    settings = settings or Settings()
    kb = load(settings.knowledge_dir)
    store = store or SQLiteStore(settings.db_path)
    assistant = Assistant(kb, store, settings.conversation_timeout_minutes)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warm_up()
        log.info(
            "started knowledge=%s errors=%d causes=%d store=%s",
            settings.knowledge_dir,
            len(kb.errors),
            len(kb.causes),
            type(store).__name__,
        )
        yield
        log.info("stopped")

    app = FastAPI(title="madoguchi", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.assistant = assistant
    app.state.store = store

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default handler echoes the input back, and input holding a lone
        # surrogate cannot be encoded: that turned a bad request into a 500.
        errors = [
            {"loc": list(error.get("loc", ())), "msg": str(error.get("msg", ""))}
            for error in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(web.router)
    _mount_channels(app, settings, assistant, store)
    return app


def _mount_channels(app: FastAPI, settings: Settings, assistant: Assistant, store: Store) -> None:
    if settings.line_enabled:
        from adapters.line import create_router as line_router

        app.include_router(line_router(settings, assistant, store))
        log.info("LINE channel on at /line/webhook")
    else:
        log.info("LINE channel off: set LINE_CHANNEL_SECRET and LINE_CHANNEL_ACCESS_TOKEN")
    if settings.slack_enabled:
        from adapters.slack import create_router as slack_router

        app.include_router(slack_router(settings, assistant, store))
        log.info("Slack channel on at /slack/events")
    else:
        log.info("Slack channel off: set SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN")
