"""Interactive API docs at `/api/docs`: Swagger UI over the OpenAPI document
(`/api/v1/openapi.json`), served by the server itself.

Swagger UI's bundle and stylesheet come from the `swagger-ui-dist` npm package, copied
under `static/apidocs/` by `npm run build` (503 until built, as the SDK); the page and the
script that starts it are Seatguard's own. The page's Content-Security-Policy lets it load
scripts, styles, images and requests from this server only, and no inline script: nothing
of a third party runs in an operator's browser holding a secret key. "Try it out" calls the
API with the secret key the reader gives in "Authorize" (a bearer token), which stays in
that page.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from .assets import Assets

__all__ = ["CSP", "DOCS_PATH", "routes"]

DOCS_PATH = "/api/docs"
"""Where the interactive docs are."""
_STATIC = Path(str(resources.files("seatguard") / "static" / "apidocs"))
_BUILT = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
"""Swagger UI sets style attributes (hence inline styles), never inline scripts."""
_HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "no-cache"}
NOT_BUILT = "The API docs' assets are not built: run `npm run build`."

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Seatguard REST API</title>
<link rel="stylesheet" href="{DOCS_PATH}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS_PATH}/swagger-ui-bundle.js"></script>
<script src="{DOCS_PATH}/init.js"></script>
</body>
</html>
"""

INIT = """window.ui = SwaggerUIBundle({
  url: '/api/v1/openapi.json',
  dom_id: '#swagger-ui',
  deepLinking: true,
  persistAuthorization: false,
});
"""


async def page(request: Request) -> Response:
    return HTMLResponse(PAGE, headers=_HEADERS)


async def init(request: Request) -> Response:
    return Response(INIT, media_type="text/javascript; charset=utf-8", headers=_HEADERS)


async def built(request: Request) -> Response:
    """Swagger UI's bundle or stylesheet, gzipped where accepted, with an ETag."""
    name = request.path_params["name"]
    media_type = _BUILT.get(name)
    if media_type is None:
        return PlainTextResponse("Not Found", status_code=404)
    assets: Assets = request.app.state.assets
    asset = await assets.get(_STATIC / name)
    if asset is None:
        return PlainTextResponse(NOT_BUILT, status_code=503)
    return assets.response(request, asset, media_type, _HEADERS)


def routes() -> list[BaseRoute]:
    return [
        Route(DOCS_PATH, page),
        Route(f"{DOCS_PATH}/init.js", init),
        Route(DOCS_PATH + "/{name}", built),
    ]
