"""The ASGI application: one factory for `tertulia serve`, the tests and the benchmarks."""

from fastapi import FastAPI

from tertulia import (
    __version__,
    tasks,  # noqa: F401  (registers every queue task with huey)
)
from tertulia.channels.api import router as channels_router
from tertulia.contacts.api import router as contacts_router
from tertulia.conversations.api import router as conversations_router
from tertulia.conversations.ingress.callbacks import CallbackWriter
from tertulia.conversations.ingress.callbacks import router as callbacks_router
from tertulia.conversations.ingress.widget import install as install_widget
from tertulia.conversations.receiver import InboundWriter
from tertulia.conversations.runtime import lifespan as inbox_lifespan
from tertulia.conversations.ws import router as inbox_ws_router
from tertulia.kit.db import Database
from tertulia.kit.http import install_error_handlers
from tertulia.kit.ratelimit import make_rate_limiter
from tertulia.kit.settings import Settings, get_settings
from tertulia.segments.api import router as segments_router
from tertulia.users.api import router as users_router
from tertulia.web import install_web


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Tertulia",
        version=__version__,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=inbox_lifespan,
    )
    app.state.settings = settings
    app.state.db = database or Database(settings.resolved_database_url(), echo=settings.sql_echo)
    app.state.rate_limiter = make_rate_limiter(settings.realtime_url)
    app.state.inbound_writer = InboundWriter(app.state.db, threads=settings.inbound_writer_threads)
    app.state.callback_writer = CallbackWriter(app.state.db)
    install_error_handlers(app)
    app.include_router(contacts_router)
    app.include_router(conversations_router)
    app.include_router(inbox_ws_router)
    app.include_router(channels_router)
    install_widget(app)
    app.include_router(callbacks_router)
    app.include_router(users_router)
    app.include_router(segments_router)
    install_web(app)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
