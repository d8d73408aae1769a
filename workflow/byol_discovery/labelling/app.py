"""The labelling page's web application (Starlette): the page, its static files and a JSON API.

Routes (all under the token when one is set)::

    GET  /                         the page
    GET  /api/info                 dataset, score columns, clusters, progress, retrain status
    GET  /api/objects              a page of objects: sort, order, offset, limit, unlabelled_first,
                                   method + cluster, search
    GET  /api/objects/{id}         one object: every column, label, sky links, FITS at hand
    GET  /api/objects/{id}/image   PNG (source=store|fits)
    GET  /api/objects/{id}/similar nearest neighbours in feature space
    GET  /api/map                  the clusters stage's 2-D map; /api/map/nearest?x=&y= the id nearest a point
    POST /api/labels               {"id": ..., "label": 0-5}: written to labels.csv at once
    GET|POST /api/retrain          Snakemake's active_learning run: status | start
"""

from __future__ import annotations

import contextlib
import hmac
import json
import math
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from byol_discovery.labelling.images import Cutouts
from byol_discovery.labelling.labels import LabelConflict, LabelFile
from byol_discovery.labelling.results import Objects, ResultPaths
from byol_discovery.labelling.retrain import Retrainer

STATIC = Path(str(resources.files("byol_discovery.labelling") / "static"))
MAX_PAGE = 500
TARGET_LABEL = 5  # the label that marks a find (the simulated person's target_label)


@dataclass
class Labelling:
    """Everything the routes share for one dataset."""

    paths: ResultPaths
    objects: Objects
    cutouts: Cutouts
    labels: LabelFile
    retrainer: Retrainer | None
    radio: bool = False

    def __post_init__(self) -> None:
        self._neighbours: Any = None
        self._neighbours_lock = threading.Lock()

    def neighbour_index(self) -> tuple[list[str], dict[str, int], Any]:
        """The ids, their rows, and a function giving a row's nearest rows, built once (the
        server starts it at once, in the background, so the first "more like this" is quick).

        The neighbours stage's table (neighbours/neighbours.h5, the one LOF reads) when the run
        wrote one, so the page shows the same neighbours as the pipeline at any size; else an
        exact search on the PCA features (results of a run before that stage existed)."""
        with self._neighbours_lock:
            if self._neighbours is None:
                self._neighbours = self._table_neighbours() if self.paths.neighbours.is_file() else self._searched()
            return self._neighbours

    def _table_neighbours(self) -> tuple[list[str], dict[str, int], Any]:
        from byol_discovery.neighbour_search import load_neighbours

        table = load_neighbours(self.paths.neighbours)
        ids = [str(i) for i in table.ids]
        return ids, {i: n for n, i in enumerate(ids)}, lambda row, k: table.indices[row, :k]

    def _searched(self) -> tuple[list[str], dict[str, int], Any]:
        from sklearn.neighbors import NearestNeighbors

        from byol_discovery.io.store import load_features

        found_ids, x, _ = load_features(self.paths.pca_features)
        ids = [str(i) for i in found_ids]
        index = NearestNeighbors().fit(x)

        def nearest(row: int, k: int) -> np.ndarray:
            found = index.kneighbors(x[row: row + 1], n_neighbors=min(k + 1, len(ids)))[1][0]
            return found[found != row][:k]

        return ids, {i: n for n, i in enumerate(ids)}, nearest

    def similar(self, object_id: str, k: int) -> list[str]:
        """The ``k`` nearest objects to ``object_id`` in PCA feature space (at most as many as
        the neighbours table holds)."""
        ids, position, nearest = self.neighbour_index()
        return [ids[n] for n in nearest(position[object_id], k)]

    def progress(self) -> dict[str, int]:
        labels = self.labels.labels()
        return {"labelled": len(labels), "targets": sum(v == TARGET_LABEL for v in labels.values()),
                "total": len(self.objects.current())}


def sky_links(ra: Any, dec: Any, radio: bool) -> dict[str, str]:
    """The object in the Legacy Surveys viewer (VLASS for radio data), SIMBAD and NED."""
    if not isinstance(ra, (int, float)) or not isinstance(dec, (int, float)) or not (
            math.isfinite(ra) and math.isfinite(dec)):
        return {}
    layer = "vlass1.2" if radio else "ls-dr10"
    position = quote(f"{ra:.6f} {dec:+.6f}")
    return {
        "Legacy Surveys": f"https://www.legacysurvey.org/viewer?ra={ra:.6f}&dec={dec:.6f}&layer={layer}&zoom=15",
        "SIMBAD": f"https://simbad.cds.unistra.fr/simbad/sim-coo?Coord={position}&Radius=10&Radius.unit=arcsec",
        "NED": ("https://ned.ipac.caltech.edu/conesearch?search_type=Near%20Position%20Search"
                f"&ra={ra:.6f}d&dec={dec:.6f}d&radius=0.17&in_csys=Equatorial&in_equinox=J2000"),
    }


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _cross_site(request: Request) -> JSONResponse | None:
    """A 403 for a POST sent by another site's page (its Origin is not this server): a page
    elsewhere must not label or start Snakemake through the person's browser."""
    origin = request.headers.get("origin")
    if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
        return _error(403, f"requests from {origin} are refused: open the page from this server's URL")
    return None


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, got {value}")
    return value


class TokenGate:
    """Every request needs the token (query ``token``, header ``X-Token`` or the cookie the
    first request with the query sets); others get 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = (request.query_params.get("token") or request.headers.get("x-token")
                 or request.cookies.get("byol_token") or "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            response = _error(401, "this server needs the token printed when it started: open the URL it printed")
            await response(scope, receive, send)
            return

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and request.query_params.get("token"):
                cookie = f"byol_token={self.token}; HttpOnly; SameSite=Strict; Path=/"
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie.encode())]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def create_app(state: Labelling, token: str | None = None, hosts: list[str] | None = None) -> Starlette:
    """The application for one dataset; with ``token``, every request must carry it; with
    ``hosts``, only requests addressed to those names are answered (on loopback: a web page
    elsewhere cannot reach the server by pointing a name of its own at 127.0.0.1)."""

    def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    def info(request: Request) -> Response:
        return JSONResponse({
            "dataset": state.paths.dataset, "score_columns": state.objects.score_columns(),
            "ranked_by": state.objects.ranked_by,
            "clusters": state.objects.clusters(), "progress": state.progress(),
            "retrain": state.retrainer.status() if state.retrainer else {"state": "unavailable"},
            "labels_file": str(state.paths.labels),
        })

    def objects(request: Request) -> Response:
        params = request.query_params
        try:
            method = params.get("method") or None
            cluster = (method, _int(request, "cluster", 0, -1, 10**9)) if method else None
            page = state.objects.page(
                state.labels.labels(), sort=params.get("sort", "rank"), descending=params.get("order") == "desc",
                offset=_int(request, "offset", 0, 0, 10**9), limit=_int(request, "limit", 50, 1, MAX_PAGE),
                unlabelled_first=params.get("unlabelled_first") in ("1", "true"), cluster=cluster,
                search=params.get("search", "")[:200])
        except (ValueError, LabelConflict) as error:
            return _error(400 if isinstance(error, ValueError) else 409, str(error))
        return JSONResponse({**page, "progress": state.progress()})

    def detail(request: Request) -> Response:
        object_id = request.path_params["object_id"]
        try:
            found = state.objects.detail(object_id, state.labels.labels())
        except KeyError:
            return _error(404, f"no object {object_id!r} in dataset {state.paths.dataset!r}")
        except LabelConflict as error:
            return _error(409, str(error))
        fields = found["fields"]
        return JSONResponse({"id": object_id, **found, "links": sky_links(fields.get("ra"), fields.get("dec"),
                                                                          state.radio),
                             "fits": state.cutouts.has_fits(object_id)})

    def image(request: Request) -> Response:
        object_id = request.path_params["object_id"]
        source = request.query_params.get("source", "store")
        if source not in ("store", "fits"):
            return _error(400, f"source must be 'store' or 'fits', got {source!r}")
        try:
            png = state.cutouts.fits_png(object_id) if source == "fits" else state.cutouts.store_png(object_id)
        except KeyError:
            what = "no original FITS file at hand for" if object_id in state.cutouts.index else "no object"
            return _error(404, f"{what} {object_id!r}")
        except (ValueError, OSError) as error:
            return _error(422, f"cannot show {object_id!r}: {error}")
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    def similar(request: Request) -> Response:
        object_id = request.path_params["object_id"]
        try:
            k = _int(request, "k", 8, 1, 100)
            return JSONResponse({"id": object_id, "similar": state.similar(object_id, k)})
        except ValueError as error:
            return _error(400, str(error))
        except KeyError:
            return _error(404, f"no object {object_id!r} in dataset {state.paths.dataset!r}")

    def map_points(request: Request) -> Response:
        return JSONResponse(state.objects.map_points())

    def map_nearest(request: Request) -> Response:
        try:
            x, y = (float(request.query_params[name]) for name in ("x", "y"))
            if not (np.isfinite(x) and np.isfinite(y)):
                raise ValueError
        except (KeyError, ValueError):
            return _error(400, "give the map position as numbers x and y")
        try:
            return JSONResponse({"id": state.objects.nearest_on_map(x, y)})
        except KeyError as error:
            return _error(404, str(error))

    async def label(request: Request) -> Response:
        if refused := _cross_site(request):
            return refused
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return _error(415, 'send JSON (Content-Type: application/json): {"id": "...", "label": 0-5}')
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, 'send JSON: {"id": "...", "label": 0-5}')
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            return _error(400, 'send JSON: {"id": "...", "label": 0-5}')
        object_id, value = body["id"], body.get("label")
        if object_id not in state.cutouts.index:
            return _error(404, f"no object {object_id!r} in dataset {state.paths.dataset!r}; nothing written")
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 5:
            return _error(400, f"label must be an integer from 0 to 5, got {value!r}; nothing written")
        try:
            reloaded = state.labels.set(object_id, value)
        except LabelConflict as error:
            return _error(409, str(error))
        note = (f"{state.paths.labels} was changed outside this page; its labels were read again and kept"
                if reloaded else "")
        return JSONResponse({"id": object_id, "label": value, "reloaded": reloaded, "message": note,
                             "progress": state.progress()})

    def retrain_status(request: Request) -> Response:
        if state.retrainer is None:
            return _error(503, "retrain is not available: no Snakefile was found (start the server from the "
                               "project folder, or give --snakefile)")
        return JSONResponse(state.retrainer.status())

    def retrain_start(request: Request) -> Response:
        if refused := _cross_site(request):
            return refused
        if state.retrainer is None:
            return retrain_status(request)
        if not state.retrainer.start():
            return JSONResponse({**state.retrainer.status(), "message": "a retrain is already running"},
                                status_code=409)
        return JSONResponse(state.retrainer.status(), status_code=202)

    routes = [
        Route("/", index),
        Route("/api/info", info),
        Route("/api/objects", objects),
        Route("/api/objects/{object_id:str}", detail),
        Route("/api/objects/{object_id:str}/image", image),
        Route("/api/objects/{object_id:str}/similar", similar),
        Route("/api/map", map_points),
        Route("/api/map/nearest", map_nearest),
        Route("/api/labels", label, methods=["POST"]),
        Route("/api/retrain", retrain_status, methods=["GET"]),
        Route("/api/retrain", retrain_start, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=hosts)] if hosts else []
    middleware += [Middleware(TokenGate, token=token)] if token else []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        state.cutouts.close()

    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan, max_body_size=64 * 1024)
