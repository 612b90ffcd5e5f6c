"""GET /ui: the dashboard page (``service.ui``); it reads everything else from the JSON API."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse

from service.ui import page

router = APIRouter(include_in_schema=False)
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' blob: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@router.get("/ui")
async def dashboard() -> HTMLResponse:
    """The dashboard (one page; its content is public, the data behind it needs an API key)."""
    return HTMLResponse(page(), headers={"Content-Security-Policy": CSP, "Cache-Control": "no-cache"})


@router.get("/ui/")
async def dashboard_slash() -> RedirectResponse:
    """``/ui/`` → ``/ui``."""
    return RedirectResponse("/ui")
