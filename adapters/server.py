"""The one ASGI app: web simulator, its JSON API, LINE and Slack webhooks, health check."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from adapters import web
from adapters.bridge import Bridge
from bot.assistant import Assistant
from bot.knowledge import load
from bot.settings import Settings
from bot.store import Store, open_store
from bot.tokenize import warm_up

log = logging.getLogger(__name__)

# Socket Mode pings every 10 s; this long without any frame means the connection is dead.
SOCKET_SILENCE_SECONDS = 120


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """Build the app; the knowledge base is loaded and validated here, before any request."""
    settings = settings or Settings()
    kb = load(settings.knowledge_dir)
    store = store or open_store(settings.db_path, settings.redis_url)
    assistant = Assistant(kb, store, settings.conversation_timeout_minutes)
    bridge = Bridge(settings, assistant, store)

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
        socket = _start_socket_mode(settings, assistant, store, bridge)
        app.state.slack_socket = socket
        # Pushes the office's contact details for hand-offs no one took, also after a restart.
        watcher = asyncio.create_task(bridge.watch(), name="handoff-timeouts")
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if socket is not None:
                socket.close()
            bridge.close()
            log.info("stopped")

    app = FastAPI(title="madoguchi", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.assistant = assistant
    app.state.store = store
    app.state.bridge = bridge

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
    def healthz() -> JSONResponse:
        # A Socket Mode client can look connected while no events arrive, so its health is
        # judged by how recently it heard from Slack.
        socket = getattr(app.state, "slack_socket", None)
        if socket is not None and not socket.healthy(SOCKET_SILENCE_SECONDS):
            return JSONResponse({"status": "degraded", "slack_socket": "silent"}, 503)
        return JSONResponse({"status": "ok"})

    app.include_router(web.router)
    _mount_channels(app, settings, assistant, store, bridge)
    return app


def _mount_channels(
    app: FastAPI, settings: Settings, assistant: Assistant, store: Store, bridge: Bridge
) -> None:
    if settings.line_enabled:
        from adapters.line import create_router as line_router

        app.include_router(line_router(settings, assistant, store, bridge))
        log.info("LINE channel on at /line/webhook")
    else:
        log.info("LINE channel off: set LINE_CHANNEL_SECRET and LINE_CHANNEL_ACCESS_TOKEN")
    if settings.slack_enabled:
        from adapters.slack import create_router as slack_router

        app.include_router(slack_router(settings, assistant, store, bridge))
        log.info("Slack channel on at /slack/events")
    elif not (settings.slack_app_token and settings.slack_bot_token):
        log.info(
            "Slack channel off: set SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN for HTTP, "
            "or SLACK_APP_TOKEN and SLACK_BOT_TOKEN for Socket Mode"
        )


def _start_socket_mode(
    settings: Settings, assistant: Assistant, store: Store, bridge: Bridge
) -> Any:
    if not (settings.slack_app_token and settings.slack_bot_token):
        return None
    from adapters.slack import start_socket_mode

    socket = start_socket_mode(settings, assistant, store, bridge=bridge)
    log.info("Slack channel on over Socket Mode")
    return socket
