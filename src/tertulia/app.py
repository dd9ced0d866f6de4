"""The ASGI application: one factory for `tertulia serve`, the tests and the benchmarks.

This is a composition point: it lists every router in the order it is mounted and every settings
section in the order the navigation shows it. Nothing is mounted or registered by importing a module.
"""

from functools import cache

from fastapi import APIRouter, FastAPI
from starlette.routing import BaseRoute

from tertulia import (
    __version__,
    tasks,  # noqa: F401  (registers every queue task with huey)
)
from tertulia.assistant.api import router as assistant_router
from tertulia.assistant.views import BOT, KNOWLEDGE, MODEL
from tertulia.assistant.views import MAX_IMPORT_BYTES as KNOWLEDGE_IMPORT_MAX_BYTES
from tertulia.assistant.views import router as assistant_pages
from tertulia.broadcasts.api import router as broadcasts_router
from tertulia.broadcasts.views import router as broadcasts_pages
from tertulia.channels.api import router as channels_router
from tertulia.channels.views import CHANNELS
from tertulia.channels.views import router as channels_pages
from tertulia.contacts.api import router as contacts_router
from tertulia.contacts.import_jobs import MAX_IMPORT_BYTES
from tertulia.contacts.import_views import router as contacts_import_pages
from tertulia.contacts.settings_views import FIELDS, TAGS
from tertulia.contacts.settings_views import router as contacts_settings_pages
from tertulia.contacts.views import router as contacts_pages
from tertulia.conversations.api import router as conversations_router
from tertulia.conversations.ingress.callbacks import CallbackFrontDoor, CallbackWriter
from tertulia.conversations.ingress.callbacks import router as callbacks_router
from tertulia.conversations.ingress.widget import install as install_widget
from tertulia.conversations.ingress.widget import router as widget_router
from tertulia.conversations.receiver import InboundWriter
from tertulia.conversations.runtime import lifespan as inbox_lifespan
from tertulia.conversations.settings_views import AWAY_MESSAGE, CLOSING_CATEGORIES, SNIPPETS
from tertulia.conversations.settings_views import router as inbox_settings_pages
from tertulia.conversations.views import router as inbox_pages
from tertulia.conversations.ws import router as inbox_ws_router
from tertulia.kit.db import Database
from tertulia.kit.http import CheckedInputRoute, install_api_docs, install_error_handlers
from tertulia.kit.limits import BodyLimitMiddleware, upload_limits
from tertulia.kit.logging import configure_logging
from tertulia.kit.ratelimit import make_rate_limiter, make_slot_limiter
from tertulia.kit.settings import Settings, get_settings
from tertulia.notifications.api import router as notifications_router
from tertulia.notifications.views import router as notifications_pages
from tertulia.reports.api import router as reports_router
from tertulia.reports.dashboard_views import router as dashboard_pages
from tertulia.reports.export_views import DATA_EXPORT
from tertulia.reports.export_views import router as data_export_pages
from tertulia.reports.views import STATIC_DIR as REPORTS_STATIC
from tertulia.reports.views import STATIC_PREFIX as REPORTS_STATIC_PREFIX
from tertulia.reports.views import router as reports_pages
from tertulia.segments.api import router as segments_router
from tertulia.segments.views import router as segments_pages
from tertulia.users.api import router as users_router
from tertulia.users.auth import RateLimitHeaders
from tertulia.users.presence import make_presence_store
from tertulia.users.session_auth import ApiCredentialGate
from tertulia.users.settings_views import TEAMS, TOKENS, USERS
from tertulia.users.settings_views import router as users_settings_pages
from tertulia.users.views import router as users_pages
from tertulia.web import CachedStaticFiles, install_web, shell_router
from tertulia.web.sections import install_sections
from tertulia.web.sections import router as settings_home
from tertulia.web.templating import static_url
from tertulia.webhooks.api import router as webhooks_router
from tertulia.webhooks.views import WEBHOOKS
from tertulia.webhooks.views import router as webhooks_pages
from tertulia.workflows.api import router as workflows_router
from tertulia.workflows.condition_views import router as workflow_condition_pages
from tertulia.workflows.hooks_api import router as workflow_hooks_router
from tertulia.workflows.settings_views import HTTP_HOSTS
from tertulia.workflows.settings_views import router as workflow_settings_pages
from tertulia.workflows.trigger_views import router as workflow_trigger_pages
from tertulia.workflows.views import router as workflows_pages
from tertulia.workspaces.api import router as workspace_router
from tertulia.workspaces.views import GENERAL
from tertulia.workspaces.views import router as workspace_settings_pages

# The Settings navigation, in this order; each section's pages live in its domain.
SETTINGS_SECTIONS = (
    GENERAL,
    USERS,
    TEAMS,
    FIELDS,
    TAGS,
    SNIPPETS,
    CLOSING_CATEGORIES,
    AWAY_MESSAGE,
    TOKENS,
    CHANNELS,
    WEBHOOKS,
    HTTP_HOSTS,
    KNOWLEDGE,
    BOT,
    MODEL,
    DATA_EXPORT,
)

SWAGGER_UI_JS = "/static/vendor/swagger-ui-bundle-5.35.0.js"
SWAGGER_UI_CSS = "/static/vendor/swagger-ui-5.35.0.css"


# Every router, in mount order. Starlette tries routes in this order and the first match wins.
ROUTERS: tuple[APIRouter, ...] = (
    # Provider callbacks first: they are the busiest path (hundreds a second), and matching a request
    # against every route before them was a third of an acknowledgement's time.
    callbacks_router,  # provider callbacks (/webhooks/{key}, /channels/{key}/callback)
    # JSON API (/api/v1/...), the agents' socket (/ws) and the provider callbacks (/webhooks/...):
    contacts_router,
    conversations_router,
    inbox_ws_router,
    channels_router,  # channel CRUD (/api/v1/channels)
    widget_router,  # the widget's visitor API and socket (/widget/...)
    users_router,
    segments_router,
    broadcasts_router,  # /api/v1/broadcasts
    webhooks_router,  # /api/v1/webhooks
    assistant_router,  # /api/v1/knowledge, /api/v1/assistant
    workspace_router,  # business hours and auto-close (/api/v1/workspace/...)
    reports_router,  # /api/v1/reports
    workflows_router,  # /api/v1/workflows
    workflow_hooks_router,  # workflows' incoming webhooks (/hooks/workflows/{id}/{secret})
    notifications_router,  # /api/v1/notifications (the signed-in person's)
    # Pages (HTML):
    shell_router,  # /, and the modules that are not live yet
    users_pages,  # sign-in, language, invitations, password reset, profile
    # Before the contacts router: its /contacts/{contact_id} would otherwise claim /contacts/import.
    contacts_import_pages,
    segments_pages,
    contacts_pages,
    settings_home,  # /settings: the first section the person may open
    workspace_settings_pages,
    users_settings_pages,
    contacts_settings_pages,
    inbox_settings_pages,  # also the files library, /messages/files
    inbox_pages,
    channels_pages,  # Settings > Channels and the widget script
    broadcasts_pages,  # /broadcasts (Owners and Managers)
    webhooks_pages,  # Settings > Integrations > Webhooks
    assistant_pages,  # Settings > Assistant > Knowledge
    reports_pages,  # /reports
    dashboard_pages,  # /dashboard
    data_export_pages,  # Settings > Data export
    workflow_condition_pages,  # the builder's conditions editor (the filter panel)
    workflow_trigger_pages,  # the shortcut menu, the incoming-webhook card
    workflows_pages,  # /workflows (Owners and Managers)
    workflow_settings_pages,  # Settings > Workflow HTTP hosts
    notifications_pages,  # /notifications, /notifications/preferences
)


@cache
def _route_table() -> tuple[BaseRoute, ...]:
    """ROUTERS mounted once per process and shared by every app the process creates.

    FastAPI prepares an included router's routes (their dependencies and parameter models) on the
    first request that reaches them, and keeps that work on the include. Included into each app
    afresh, every new app paid it again: the first request to a page mounted late took 2-7 s. A
    server creates one app per process, but the tests and benchmarks create one per test. Nothing in
    the table belongs to an app: a route reads its settings and database from `request.app.state`.
    (`app.dependency_overrides` would not reach these routes; nothing uses it.)"""
    table = APIRouter(route_class=CheckedInputRoute)
    for router in ROUTERS:
        table.include_router(router)
    return tuple(table.routes)


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)  # once per process; uvicorn's worker processes start here
    app = FastAPI(
        title="Tertulia",
        version=__version__,
        docs_url=None,  # self-hosted below
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=inbox_lifespan,
    )
    app.router.route_class = CheckedInputRoute  # the app's own routes below too (every router sets it)
    app.state.settings = settings
    app.state.db = database or Database(settings.resolved_database_url(), echo=settings.sql_echo)
    app.state.rate_limiter = make_rate_limiter(settings.realtime_url, settings.realtime_prefix)
    app.state.slot_limiter = make_slot_limiter(settings.realtime_url, settings.realtime_prefix)
    app.state.presence = make_presence_store(settings.realtime_url, settings.realtime_prefix)
    app.state.inbound_writer = InboundWriter(
        app.state.db,
        threads=settings.inbound_writer_threads,
        linger_seconds=settings.inbound_writer_linger_ms / 1000,
    )
    app.state.callback_writer = CallbackWriter(app.state.db)
    install_error_handlers(app)
    install_widget(app)  # the widget's CORS
    # Outside the routing, inside the body limit and the security headers installed after it.
    app.add_middleware(CallbackFrontDoor)
    app.router.routes.extend(_route_table())
    # The reports' own assets (Chart.js); before install_web's /static, which would claim the path.
    app.mount(REPORTS_STATIC_PREFIX, CachedStaticFiles(directory=REPORTS_STATIC), name="reports-static")
    install_sections(app, SETTINGS_SECTIONS)
    install_web(app)  # after the routers: security headers, /static, and the error pages around them
    app.add_middleware(RateLimitHeaders)  # on every response of a request counted against an API token
    app.add_middleware(ApiCredentialGate)  # inside the size limit: a body too big is refused unread first
    app.add_middleware(
        BodyLimitMiddleware,
        settings.request_max_bytes,
        upload_limits(
            settings, import_max_bytes=MAX_IMPORT_BYTES, knowledge_import_max_bytes=KNOWLEDGE_IMPORT_MAX_BYTES
        ),
    )

    install_api_docs(
        app, path="/api/docs", js_url=SWAGGER_UI_JS, css_url=SWAGGER_UI_CSS, icon_url=static_url("img/favicon.svg")
    )

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
