"""The dashboard: one static page (``index.html``, no build step) that uses the JSON API with the API key
the user logs in with (kept in the tab's ``sessionStorage``, sent as ``Authorization: Bearer``).

It shows the owner's jobs (state, backend, cost, progress), a job page with live training curves from the
event stream and a spike raster of inference results, the backends with availability and a cost estimate
for a chosen model, and the models with their download.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def page() -> str:
    """The dashboard's HTML (with its inline script and style)."""
    return files(__name__).joinpath("index.html").read_text(encoding="utf-8")
