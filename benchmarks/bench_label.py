"""The labelling page at survey size: server start, time to first screen and the latency of
one label, at a small baseline size and at 300,000 synthetic objects (ratios printed).

    python benchmarks/bench_label.py [--n 300000] [--baseline 3000] [--labelled 2000]

"First screen" is the API calls the page makes before a person can label: info, the first
page of the list, the top object's detail and image, and the thumbnails in view; "more like
this" and the map follow it and are timed apart. Calls go through Starlette's test client (in
process, no network), on a synthetic results folder (tests/labelling_results.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))
sys.path.insert(0, str(REPO))

from byol_discovery.labelling import command  # noqa: E402
from byol_discovery.labelling.app import create_app  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from tests.labelling_results import CONFIG, DATASET, write_results  # noqa: E402

THUMBNAILS_IN_VIEW = 16


def _timed(call) -> tuple[float, object]:
    clock = time.perf_counter()
    result = call()
    return time.perf_counter() - clock, result


def measure(n: int, labelled: int, dims: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        ranked = write_results(root, n=n, n_fits=3, dims=dims)
        labels = root / "data" / DATASET / "labels.csv"
        labels.write_text("id,label\n" + "".join(f"{i},0\n" for i in ranked[-labelled:]))
        start, state = _timed(lambda: command.build_state(CONFIG, root, DATASET, None, []))
        figures = {"start_s": start}
        with TestClient(create_app(state)) as client:
            def first_screen() -> None:
                client.get("/api/info").raise_for_status()
                items = client.get("/api/objects", params={"limit": 50}).json()["items"]
                top = items[0]["id"]
                detail = client.get(f"/api/objects/{top}").json()
                source = "fits" if detail["fits"] else "store"
                client.get(f"/api/objects/{top}/image", params={"source": source}).raise_for_status()
                for item in items[:THUMBNAILS_IN_VIEW]:
                    client.get(f"/api/objects/{item['id']}/image").raise_for_status()

            figures["first_screen_s"], _ = _timed(first_screen)
            figures["first_similar_s"], _ = _timed(lambda: client.get(f"/api/objects/{ranked[0]}/similar"))
            figures["map_s"], _ = _timed(lambda: client.get("/api/map"))
            figures["sorted_page_s"], _ = _timed(
                lambda: client.get("/api/objects", params={"sort": "lof", "order": "desc", "unlabelled_first": 1}))
            figures["search_s"], _ = _timed(lambda: client.get("/api/objects", params={"search": ranked[n // 2]}))
            latencies = []
            for object_id in ranked[:21]:
                seconds, answer = _timed(lambda i=object_id: client.post("/api/labels", json={"id": i, "label": 1}))
                answer.raise_for_status()
                latencies.append(seconds)
            figures["label_median_s"] = statistics.median(latencies[1:])  # the first warms the code paths
    return figures


def main() -> None:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--n", type=int, default=300_000, help="objects (default 300000)")
    parse.add_argument("--baseline", type=int, default=3_000, help="objects of the baseline run")
    parse.add_argument("--labelled", type=int, default=2_000, help="labels already in labels.csv")
    parse.add_argument("--dims", type=int, default=32, help="PCA feature dimensions")
    args = parse.parse_args()
    base = measure(args.baseline, min(args.labelled, args.baseline // 2), args.dims)
    big = measure(args.n, args.labelled, args.dims)
    print(f"labelling page, {args.labelled} labels in labels.csv, {args.dims} PCA dimensions")
    print(f"{'figure':<18}{args.baseline:>12,}{args.n:>12,}{'ratio':>8}")
    for key in base:
        print(f"{key:<18}{base[key]:>12.3f}{big[key]:>12.3f}{big[key] / base[key]:>8.1f}")


if __name__ == "__main__":
    main()
