"""GraphiQL served by the gateway itself: no CDN, so it works offline and under a strict CSP.

Strawberry's page loads React and GraphiQL from a CDN; without the internet it
stays on "Loading...". This page loads only same-origin files: GraphiQL's
browser bundle, React and ReactDOM, vendored from the npm packages pinned in
`scripts/graphiql/package-lock.json` by `scripts/vendor-graphiql` (their
licences in `static/graphiql/THIRD_PARTY_LICENSES.txt`), and the page's own
`static/graphiql.js`.
"""

from __future__ import annotations

from pathlib import Path

from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

__all__ = ["CONTENT_SECURITY_POLICY", "STATIC_PATH", "page", "routes"]

STATIC_PATH = "/static"
_STATIC = Path(__file__).resolve().parent / "static"
# Everything from this origin only. GraphiQL's dialogs (settings, shortcuts) add a
# <style> element when they open, hence 'unsafe-inline' for styles (never for
# scripts); its stylesheet carries fonts and icons as data: URLs.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
_PAGE = f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Status gateway · GraphiQL</title>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" href="{STATIC_PATH}/graphiql/graphiql.min.css">
    <link rel="stylesheet" href="{STATIC_PATH}/graphiql.css">
  </head>
  <body>
    <div id="graphiql">Loading…</div>
    <script src="{STATIC_PATH}/graphiql/react.production.min.js"></script>
    <script src="{STATIC_PATH}/graphiql/react-dom.production.min.js"></script>
    <script src="{STATIC_PATH}/graphiql/graphiql.min.js"></script>
    <script src="{STATIC_PATH}/graphiql.js"></script>
  </body>
</html>
"""


def page() -> HTMLResponse:
    """The GraphiQL page, with the policy that keeps it to this origin."""
    return HTMLResponse(
        _PAGE,
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


def routes() -> list[BaseRoute]:
    """The page's files (served only while GraphiQL is on)."""
    return [Mount(STATIC_PATH, app=StaticFiles(directory=_STATIC), name="static")]
