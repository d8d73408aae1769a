"""Which BYOL recipe gives label-free features better than what costs nothing?

Builds the image store of a radio dataset with the pipeline's own code, then for each
recipe trains BYOL and measures kNN accuracy (k=5, 20 random 80/20 splits, Euclidean and
cosine) of the features, next to the two baselines of the validate stage (PCA of raw
pixels; a randomly initialised backbone). Prints one row per recipe, and appends the rows
to a CSV so a long ablation can be run in pieces:

    python benchmarks/ablate_recipe.py --dataset first --recipes paper demo
    python benchmarks/ablate_recipe.py --dataset mirabest --recipes demo --size 48
    python benchmarks/ablate_recipe.py --dataset mirabest --size 32 --power 0.5 --epochs 8 \
        --baselines --recipes radio radio+power_p=0 radio+fixed_batchnorm=false

`first` is the FIRST set of the firstgalaxydata package (FRI / FRII / Compact / Bent);
`mirabest` the MiraBest basic release in ../shared/data (confident FRI / FRII). A GPU is
used when present (the same recipes with more epochs are the long budget).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))  # the package, installed or not

from byol_discovery.augmentation import AugmentationConfig  # noqa: E402
from byol_discovery.config import deep_merge, from_mapping, stage_settings  # noqa: E402
from byol_discovery.evaluation import knn_accuracy, pixel_pca_features  # noqa: E402
from byol_discovery.feature_extraction import extract_features, load_backbone, random_backbone  # noqa: E402
from byol_discovery.io.store import ImageStore  # noqa: E402
from byol_discovery.preprocessing import PreprocessConfig, build_store  # noqa: E402
from byol_discovery.training import TrainConfig, train_byol  # noqa: E402

MIRABEST_BASIC = REPO.parent / "shared" / "data" / "mirabest" / "MiraBest_basic_batches.tar.gz"
MIRABEST_BASIC_MD5 = "fa9d6ad8fdde95b0a19df11433e8bca3"

CONFIG = REPO / "config"


def workflow_recipe(dataset: str, *config_files: str) -> TrainConfig:
    """The training settings for ``dataset`` of config files merged in order, as Snakemake
    merges them (the benchmark sets the epochs)."""
    config: dict = {}
    for name in config_files:
        config = deep_merge(config, yaml.safe_load((CONFIG / name).read_text()))
    settings = stage_settings(config, dataset, "train")
    settings.pop("probe_label", None)  # the benchmark always probes with the dataset's labels
    return from_mapping(TrainConfig, settings, f"{' + '.join(config_files)}: train")


# What the paper's code did (Koketsoc137/Feature_extraction): Adam 1e-4, batch 32, rotation + crop,
# flips, resized crop (0.7, 1) p=0.7, blur sigma 1-2 p=0.5; constant EMA 0.99.
PAPER = workflow_recipe("mirabest", "mirabest.yaml", "presets/paper.yaml")

RECIPES: dict[str, TrainConfig] = {
    "paper": PAPER,
    # Larger steps, cosine schedule, faster-moving target for a short run, last epoch kept.
    "demo": dataclasses.replace(
        PAPER, batch_size=64, learning_rate=1e-3, lr_schedule="cosine", warmup_epochs=1, tau=0.96,
        tau_schedule="cosine", select="last", weight_decay=1e-5, optimizer="adamw",
    ),
    # For radio images (docs/recipes.md, "Representation quality on radio images"): the paper's
    # optimiser; rotations and flips without zoom or blur, each view's brightness raised to
    # a power in (2/3, 3/2); batch norm statistics fixed.
    "radio": workflow_recipe("mirabest", "mirabest.yaml"),
}


def _variant(name: str) -> TrainConfig:
    """A recipe by name, with ``+key=value`` overrides (e.g. ``demo+tau=0.9+crop_scale=0.3,1``:
    a range takes both ends)."""
    base, *overrides = name.split("+")
    config = RECIPES[base]
    augmentation = {}
    fields = {}
    for override in overrides:
        key, value = override.split("=", 1)
        parsed: object = value
        if "," in value:
            parsed = tuple(float(v) for v in value.split(","))
        elif value in ("true", "false"):
            parsed = value == "true"
        else:
            for cast in (int, float):
                try:
                    parsed = cast(value)
                    break
                except ValueError:
                    continue
        if key in {f.name for f in dataclasses.fields(AugmentationConfig)}:
            augmentation[key] = parsed
        else:
            fields[key] = parsed
    if augmentation:
        fields["augmentation"] = dataclasses.replace(config.augmentation, **augmentation)
    return dataclasses.replace(config, **fields)


def store_name(size: int, crop_size: int, power: float, align: bool) -> str:
    """What tells one store of a dataset from another (also names the training runs on it)."""
    return f"{size}_{crop_size}_p{power:g}{'_aligned' if align else ''}"


def build(
    dataset: str, size: int, crop_size: int, cache: Path, power: float = 1.0, align: bool = False,
    mirabest_archive: Path = MIRABEST_BASIC,
) -> tuple[np.ndarray, np.ndarray]:
    """The dataset's store (built once per size, crop, power and alignment) as images and labels."""
    out = cache / dataset
    store = out / f"store_{store_name(size, crop_size, power, align)}.h5"
    if not store.is_file():
        if dataset == "first":
            from byol_discovery.sources.first import extract_first

            if not (out / "catalogue.csv").is_file():
                extract_first(out)
            label = "label"
        else:
            from byol_discovery.sources.mirabest import extract_mirabest

            if not (out / "catalogue.csv").is_file():
                extract_mirabest({"path": str(mirabest_archive), "md5": MIRABEST_BASIC_MD5}, out)
            label = "label_confident"
        config = PreprocessConfig(
            image_size=size, channels=1, stretch="radio", crop="centre", crop_size=crop_size, power=power,
            align=align,
        )
        build_store(out / "catalogue.csv", store, out / "quarantine.csv", config, columns=[label], workers=2)
    with ImageStore(store) as images:
        catalogue = images.catalogue()
        column = "label" if dataset == "first" else "label_confident"
        return images.load_images(), catalogue[column].to_numpy()


def labelled(labels: np.ndarray) -> np.ndarray:
    """Which objects carry a label (non-empty text)."""
    return pd.Series(labels).fillna("").astype(str).str.len().to_numpy() > 0


def knn_row(features: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, float]:
    return {
        f"knn_{metric}": knn_accuracy(features, labels, k=5, n_splits=20, metric=metric, seed=seed)[0]
        for metric in ("euclidean", "cosine")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["first", "mirabest"], default="first")
    parser.add_argument("--size", type=int, default=48, help="image size in the store (px)")
    parser.add_argument("--crop-size", type=int, default=0, help="central crop before resizing (0: whole image)")
    parser.add_argument("--power", type=float, default=1.0, help="power of the stretched values (0.5: square root)")
    parser.add_argument("--align", action="store_true",
                        help="store images with the major axis horizontal, brighter half left and top")
    parser.add_argument("--dihedral", action="store_true",
                        help="average backbone features over the 8 quarter turns and mirror images")
    parser.add_argument("--small-stem", action="store_true",
                        help="3x3 stride-1 stem without max pooling, for the baseline and every recipe")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipes", nargs="+", default=["paper", "demo"])
    parser.add_argument("--baselines", action="store_true", help="also measure pixel PCA and random init")
    parser.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "runs" / "ablation")
    parser.add_argument("--mirabest-archive", type=Path, default=MIRABEST_BASIC,
                        help="the MiraBest basic release (default: ../shared/data beside the checkout)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "runs" / "ablation.csv")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    images, labels = build(args.dataset, args.size, args.crop_size, args.cache, args.power, args.align,
                           args.mirabest_archive)
    keep = labelled(labels)
    print(f"{args.dataset}: {len(images)} images of {images.shape[1:]}; {keep.sum()} labelled")
    rows = []
    common = {"dataset": args.dataset, "size": args.size, "crop_size": args.crop_size, "power": args.power,
              "align": args.align, "dihedral": args.dihedral, "small_stem": args.small_stem, "seed": args.seed}
    if args.baselines:
        pixel = pixel_pca_features(images, 50, seed=args.seed)
        rows.append({**common, "recipe": "baseline: pixel PCA (50)", "epochs": 0, "seconds": 0.0,
                     **knn_row(pixel[keep], labels[keep], args.seed)})
        random = extract_features(random_backbone("resnet18", 1, args.small_stem, args.seed), images, device="auto",
                                  dihedral=args.dihedral)
        rows.append({**common, "recipe": "baseline: random ResNet-18", "epochs": 0, "seconds": 0.0,
                     **knn_row(random[keep], labels[keep], args.seed)})
        print(pd.DataFrame(rows).to_string(index=False))
    for name in args.recipes:
        config = dataclasses.replace(_variant(name), epochs=args.epochs, seed=args.seed, num_threads=args.threads,
                                     small_stem=args.small_stem)
        store = store_name(args.size, args.crop_size, args.power, args.align)
        stem = "_small" if args.small_stem else ""
        run = args.cache / "runs" / f"{args.dataset}_{store}{stem}_{name}_{args.epochs}"
        started = time.perf_counter()
        history = train_byol(images, config, run / "model.pt", run / "history.csv", labels=labels, resume=False)
        seconds = time.perf_counter() - started
        features = extract_features(load_backbone(run / "model.pt"), images, device="auto", dihedral=args.dihedral)
        probe = " ".join(f"{value:.3f}" for value in history["knn_probe"])
        rows.append({**common, "recipe": name, "epochs": args.epochs, "seconds": round(seconds, 1),
                     **knn_row(features[keep], labels[keep], args.seed), "probe_by_epoch": probe})
        print(pd.DataFrame(rows[-1:]).to_string(index=False), flush=True)
    frame = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, mode="a", header=not args.out.is_file(), index=False)
    print(frame.drop(columns=["probe_by_epoch"], errors="ignore").to_string(index=False))


if __name__ == "__main__":
    main()
