"""Response headers that make the pages hard to abuse: CSP, framing, referrer, sniffing, powerful
browser features. When the public base URL is https: HSTS, and every cookie the app sets is Secure
(whichever code path set it)."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No inline script and no eval anywhere: htmx runs with allowEval=false and Alpine is its CSP build.
# Avatars may be any https image, as people paste links to them.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' https: data:",
        "font-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
    # Nothing here uses these; a script that got in could not either.
    (
        b"permissions-policy",
        b"accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), "
        b"payment=(), usb=()",
    ),
]
# One year; not includeSubDomains, which would bind hosts this app does not own.
HSTS = (b"strict-transport-security", b"max-age=31536000")
# The API docs page sends its own CSP (kit.http.API_DOCS_CSP: Swagger UI needs inline styles).
CSP_EXEMPT_PREFIXES = ("/api/docs",)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with_csp = not str(scope.get("path", "")).startswith(CSP_EXEMPT_PREFIXES)
        https = _served_over_https(scope)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                extra = list(SECURITY_HEADERS)
                if with_csp:
                    extra.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))
                if https:
                    extra.append(HSTS)
                    headers = [_secure_cookie(name, value) for name, value in headers]
                headers.extend((name, value) for name, value in extra if name not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _served_over_https(scope: Scope) -> bool:
    app = scope.get("app")
    settings = getattr(getattr(app, "state", None), "settings", None)
    return str(getattr(settings, "base_url", "")).startswith("https://")


def _secure_cookie(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    if name.lower() == b"set-cookie" and b"; secure" not in value.lower():
        return name, value + b"; Secure"
    return name, value
