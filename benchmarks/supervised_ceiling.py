"""How good can kNN accuracy on a radio dataset get? Features trained *with* the labels.

The goal for label-free features is a margin over the cost-free baselines (pixel PCA, a
randomly initialised network). This measures what the same kNN test gives for features a
ResNet-18 learnt from labels: it is trained (cross-entropy; each batch flipped left-right
and up-down at random, the whole batch together) on a random half
of the labelled images, and its pooled features are scored by kNN (k=5, 20 random 80/20
splits, Euclidean / cosine) on the other half, next to both baselines on that half:

    python benchmarks/supervised_ceiling.py --dataset first --size 32 --crop-size 100 --power 0.5 --align

Uses the stores of ``ablate_recipe.py`` (same cache, built on first use). A diagnostic, not
part of the pipeline: the pipeline never sees labels when it trains.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from ablate_recipe import MIRABEST_BASIC, REPO, build, knn_row, labelled  # puts the package on sys.path
from byol_discovery.evaluation import pixel_pca_features
from byol_discovery.feature_extraction import extract_features, random_backbone
from byol_discovery.tensors import to_model_input


def knn_pair(features: np.ndarray, labels: np.ndarray, seed: int) -> str:
    return " / ".join(f"{value:.3f}" for value in knn_row(features, labels, seed).values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["first", "mirabest"], default="first")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--crop-size", type=int, default=100)
    parser.add_argument("--power", type=float, default=0.5)
    parser.add_argument("--align", action="store_true")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="draws the halves, the network and the batches")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "runs" / "ablation")
    parser.add_argument("--mirabest-archive", type=Path, default=MIRABEST_BASIC,
                        help="the MiraBest basic release (default: ../shared/data beside the checkout)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    images, labels = build(args.dataset, args.size, args.crop_size, args.cache, args.power, args.align,
                           args.mirabest_archive)
    keep = labelled(labels)
    images, labels = images[keep], labels[keep].astype(str)
    classes, targets = np.unique(labels, return_inverse=True)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(labels))
    train_half, test_half = order[: len(order) // 2], order[len(order) // 2:]
    print(f"{args.dataset}: {len(labels)} labelled images, {len(classes)} classes; "
          f"trained on {len(train_half)}, scored on {len(test_half)}")

    pixel = pixel_pca_features(images, 50, seed=args.seed)
    random = extract_features(random_backbone("resnet18", images.shape[1], False, args.seed), images, device="cpu")
    print(f"other half: pixel PCA {knn_pair(pixel[test_half], labels[test_half], args.seed)}; "
          f"random ResNet-18 {knn_pair(random[test_half], labels[test_half], args.seed)}", flush=True)

    backbone = random_backbone("resnet18", images.shape[1], False, args.seed)
    model = torch.nn.Sequential(backbone, torch.nn.Linear(512, len(classes)))
    optimizer = torch.optim.Adam(model.parameters(), args.learning_rate)
    inputs, target_tensor = to_model_input(torch.from_numpy(images)), torch.from_numpy(targets)
    for epoch in range(1, args.epochs + 1):
        model.train()
        shuffled = torch.from_numpy(rng.permutation(train_half))
        for start in range(0, len(shuffled), args.batch_size):
            batch = shuffled[start:start + args.batch_size]
            x = inputs[batch]
            for dim in (-1, -2):
                if rng.random() < 0.5:
                    x = x.flip(dim)
            loss = torch.nn.functional.cross_entropy(model(x), target_tensor[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if epoch % 5 == 0 or epoch == args.epochs:
            features = extract_features(backbone, images, device="cpu")
            print(f"epoch {epoch}: kNN of the label-trained features on the other half "
                  f"{knn_pair(features[test_half], labels[test_half], args.seed)}", flush=True)


if __name__ == "__main__":
    main()
