"""`byol-discovery label`: serve the labelling page of one dataset's results.

Run from the folder the pipeline ran in (or a copy of it), with the same config arguments::

    byol-discovery label --dataset sim_optical [--configfile my.yaml] [--config key=value ...]
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from byol_discovery.config import deep_merge, stage_settings

DEFAULT_CONFIG = Path("config") / "config.yaml"
PACKAGE_SNAKEFILE = Path(__file__).resolve().parents[3] / "Snakefile"  # the project's, in a source checkout


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(
        prog="byol-discovery label",
        description="Label a dataset's ranked objects in the browser; Retrain re-ranks them with Snakemake.")
    parse.add_argument("--dataset", help="dataset to label (default: the first one in the config with results)")
    parse.add_argument("--configfile", nargs="+", default=[], metavar="FILE",
                       help="config files merged over config/config.yaml, as given to snakemake")
    parse.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                       help="config values, as given to snakemake")
    parse.add_argument("--directory", default=".", help="folder the pipeline ran in (default: here)")
    parse.add_argument("--snakefile", help="Snakefile for Retrain (default: ./Snakefile, else the project's)")
    parse.add_argument("--host", default="127.0.0.1",
                       help="address to listen on; any other than loopback requires a token, printed once")
    parse.add_argument("--port", type=int, default=8765, help="port (0: any free one)")
    return parse


def load_config(directory: Path, configfiles: Sequence[str], values: Sequence[str]) -> dict[str, Any]:
    """The run's config as Snakemake builds it: config/config.yaml, the config files over it, the values over all."""
    config: dict[str, Any] = {}
    for path in [directory / DEFAULT_CONFIG, *(directory / f for f in configfiles)]:
        if path.is_file() or path != directory / DEFAULT_CONFIG:
            try:
                config = deep_merge(config, yaml.safe_load(path.read_text()) or {})
            except (OSError, yaml.YAMLError) as error:
                raise SystemExit(f"error: cannot read config file {path}: {error}") from None
    for item in values:
        key, separator, text = item.partition("=")
        if not separator:
            raise SystemExit(f"error: --config {item!r}: write KEY=VALUE")
        config = deep_merge(config, {key: yaml.safe_load(text)})
    if not config.get("datasets"):
        raise SystemExit(f"error: no datasets in the config (looked for {directory / DEFAULT_CONFIG}); run from the "
                         "pipeline's folder or give --configfile")
    return config


def pick_dataset(config: dict[str, Any], directory: Path, wanted: str | None) -> str:
    datasets = list(config["datasets"])
    if wanted is not None:
        if wanted not in datasets:
            raise SystemExit(f"error: dataset {wanted!r} is not in the config; it has {datasets}")
        return wanted
    results = directory / config.get("results_dir", "results")
    ready = [name for name in datasets if (results / name / "active_learning" / "ranking.csv").is_file()]
    if not ready:
        raise SystemExit(f"error: no dataset of {datasets} has {results}/<dataset>/active_learning/ranking.csv: "
                         "run the pipeline first (bash run.sh demo)")
    return ready[0]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_state(config: dict[str, Any], directory: Path, dataset: str, snakefile: Path | None,
                config_args: Sequence[str]) -> Any:
    """The shared state of the page for ``dataset``, paths relative to ``directory``."""
    from byol_discovery.labelling.app import Labelling
    from byol_discovery.labelling.images import Cutouts
    from byol_discovery.labelling.labels import LabelFile
    from byol_discovery.labelling.results import Objects, ResultPaths
    from byol_discovery.labelling.retrain import Retrainer, snakemake_command
    from byol_discovery.settings import ActiveLearningSettings, stage_settings_of
    from byol_discovery.stages.active_learning import RANKED_BY

    data = directory / config.get("data_dir", "data")
    results_dir = config.get("results_dir", "results")
    paths = ResultPaths(results=directory / results_dir, dataset=dataset,
                        labels=directory / (config.get("labels_dir") or config.get("data_dir", "data")) / dataset
                        / "labels.csv",
                        catalogue=data / dataset / "catalogue.csv")
    target = stage_settings(config, dataset, "anomaly").get("target") or {}
    learner = stage_settings_of(ActiveLearningSettings, stage_settings(config, dataset, "active_learning"),
                                "active_learning")
    objects = Objects(paths, hidden=[target["column"]] if target.get("column") else [],
                      ranked_by=RANKED_BY[learner.method])
    cutouts = Cutouts(paths.store, paths.catalogue)
    retrainer = None
    if snakefile is not None:
        target = f"{results_dir}/{dataset}/active_learning/ranking.csv"
        retrainer = Retrainer(snakemake_command(snakefile, directory, [target], config_args),
                              rule_log=directory / results_dir / "logs" / dataset / "active_learning.log")
    radio = stage_settings(config, dataset, "preprocess").get("stretch") == "radio"
    return Labelling(paths, objects, cutouts, LabelFile(paths.labels, set(cutouts.index)), retrainer, radio)


def main(argv: Sequence[str] | None = None) -> int:
    import uvicorn

    from byol_discovery.labelling.app import LOOPBACK_NAMES, create_app
    from byol_discovery.labelling.labels import LabelConflict

    args = parser().parse_args(argv)
    directory = Path(args.directory)
    config = load_config(directory, args.configfile, args.config)
    dataset = pick_dataset(config, directory, args.dataset)
    snakefile = Path(args.snakefile) if args.snakefile else next(
        (p for p in (directory / "Snakefile", PACKAGE_SNAKEFILE) if p.is_file()), None)
    config_args = [*(["--configfile", *args.configfile] if args.configfile else []),
                   *(["--config", *args.config] if args.config else [])]
    try:
        state = build_state(config, directory, dataset, snakefile, config_args)
    except (FileNotFoundError, ValueError, LabelConflict) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    threading.Thread(target=state.neighbour_index, daemon=True).start()
    token = None if is_loopback(args.host) else secrets.token_urlsafe(24)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
        # Listening before the address is printed: a browser opened on it at once waits in the
        # backlog until the server accepts, where it would otherwise be refused.
        sock.listen(128)
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port}: {error}; try another --port", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    shown = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    print(f"Labelling {dataset} ({len(state.objects.current())} objects; labels go to {state.paths.labels})")
    if snakefile is None:
        print("Retrain is off: no Snakefile here (give --snakefile)")
    print(url, flush=True)
    hosts = LOOPBACK_NAMES if token is None else None
    server = uvicorn.Server(uvicorn.Config(create_app(state, token, hosts), log_level="warning", access_log=False))
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
