"""Training throughput: our on-device batch augmentation against the usual data path.

Three measurements in one run, same model (BYOL, ResNet-18), image size and batch size:

- ceiling: a bare training step on views already in memory, no augmentation: what the
  model alone costs, the most any data path can reach;
- ours: the training loop's own step (uint8 batch gathered from the in-memory store,
  both views augmented on the device in one warp, then the step);
- per-sample: what the reference implementations do: a DataLoader whose workers augment
  each image on the CPU with torchvision transforms (rotation, centre crop, flips,
  resized crop, blur), then the same step.

Prints images per second and the ratios ours / ceiling and ours / per-sample (ratios are
what to compare across machines). On a GPU it also prints the model FLOP utilisation,
8 x forward FLOPs x img/s / measured bf16 matmul peak. ``--memory`` adds the peak memory
of a short training run on N and 4N images, each in a fresh process, against the size of
the image store: the growth should be the store's growth and no more.

    python benchmarks/bench_train.py                         # 64 px, batch 64, CPU or GPU
    python benchmarks/bench_train.py --size 64 --batch 1024  # a GPU-sized batch
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

from byol_discovery.augmentation import AugmentationConfig, BatchAugmenter  # noqa: E402
from byol_discovery.tensors import cuda_convolutions, resolve_device, to_model_input  # noqa: E402
from byol_discovery.training import TrainConfig, build_model, make_views, train_step  # noqa: E402


def _timed(step, n_steps: int, warmup: int, device: torch.device, batch: int) -> float:
    """Images per second of ``step()`` over ``n_steps`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(n_steps):
        loss = step()
    float(loss)  # waits for the device
    return n_steps * batch / (time.perf_counter() - started)


class PerSampleViews(torch.utils.data.Dataset):
    """Two views of one image, augmented on the CPU with torchvision transforms, per sample."""

    def __init__(self, images: np.ndarray, size: int) -> None:
        from torchvision.transforms import v2

        self.images = images
        self.transform = v2.Compose([
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomRotation(360),
            v2.CenterCrop(int(size / 2**0.5)),
            v2.Resize(size, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.RandomApply([v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True)], p=0.7),
            v2.RandomApply([v2.GaussianBlur(13, sigma=(1.0, 2.0))], p=0.5),
            v2.Normalize([0.5] * images.shape[1], [0.5] * images.shape[1]),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = torch.from_numpy(self.images[index])
        return self.transform(image), self.transform(image)


def _forward_flops(model: torch.nn.Module, channels: int, size: int, device: torch.device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, channels, size, size, device=device))
    model.train()
    return float(counter.get_total_flops())


def _bf16_peak(device: torch.device) -> float:
    """Measured bf16 matmul FLOP/s of this GPU (large square matmuls)."""
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    started, n = time.perf_counter(), 20
    for _ in range(n):
        a @ b
    torch.cuda.synchronize(device)
    return n * 2 * 8192**3 / (time.perf_counter() - started)


def throughput(args: argparse.Namespace) -> dict[str, float]:
    device = resolve_device(args.device)
    torch.manual_seed(0)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.images, args.channels, args.size, args.size), dtype=np.uint8)
    config = TrainConfig(batch_size=args.batch, device=str(device), learning_rate=1e-4,
                         deterministic=not args.autotune)
    model, optimizer = build_model(config, args.channels, device)
    channels_last = device.type == "cuda"
    if channels_last:
        cuda_convolutions(config.deterministic)  # as train_byol sets them
    n = args.batch

    data = torch.from_numpy(images).to(device)
    fixed = to_model_input(data[:n])
    fixed = fixed.contiguous(memory_format=torch.channels_last) if channels_last else fixed
    results = {"ceiling": _timed(lambda: train_step(model, optimizer, fixed, fixed.flip(0), 0.99, device),
                                 args.steps, args.warmup, device, n)}

    augmenter = BatchAugmenter(AugmentationConfig())
    generator = torch.Generator(device=device).manual_seed(0)
    order = torch.Generator().manual_seed(0)

    def ours() -> torch.Tensor:
        batch = torch.randint(len(images), (n,), generator=order).to(device)
        view1, view2 = make_views(data[batch], augmenter, generator, channels_last)
        return train_step(model, optimizer, view1, view2, 0.99, device)

    results["ours"] = _timed(ours, args.steps, args.warmup, device, n)

    loader = torch.utils.data.DataLoader(
        PerSampleViews(images, args.size), batch_size=n, shuffle=True, drop_last=True,
        num_workers=args.workers, pin_memory=device.type == "cuda", persistent_workers=args.workers > 0,
    )
    batches = iter(loader)

    def per_sample() -> torch.Tensor:
        nonlocal batches
        try:
            view1, view2 = next(batches)
        except StopIteration:
            batches = iter(loader)
            view1, view2 = next(batches)
        view1, view2 = view1.to(device, non_blocking=True), view2.to(device, non_blocking=True)
        if channels_last:
            view1 = view1.contiguous(memory_format=torch.channels_last)
            view2 = view2.contiguous(memory_format=torch.channels_last)
        return train_step(model, optimizer, view1, view2, 0.99, device)

    results["per_sample"] = _timed(per_sample, args.steps, args.warmup, device, n)
    if device.type == "cuda":
        flops = _forward_flops(model.backbone, args.channels, args.size, device)
        peak = _bf16_peak(device)
        results.update(forward_gflops=flops / 1e9, bf16_peak_tflops=peak / 1e12,
                       mfu_ours=8 * flops * results["ours"] / peak)
    return results


def _peak_memory_child(n_images: int, args: argparse.Namespace) -> None:
    """Train one short epoch on ``n_images`` and print the peak memory as JSON."""
    from byol_discovery.training import train_byol

    device = resolve_device(args.device)
    images = np.random.default_rng(0).integers(0, 256, (n_images, args.channels, args.size, args.size), np.uint8)
    config = TrainConfig(epochs=1, batch_size=args.batch, device=str(device), num_threads=args.threads,
                         validation_fraction=0.0, hidden_dim=512)
    with tempfile.TemporaryDirectory() as tmp:
        train_byol(images, config, Path(tmp) / "model.pt", Path(tmp) / "history.csv", resume=False)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    print(json.dumps({"images": n_images, "store_bytes": images.nbytes, "peak_bytes": peak}))


def peak_memory(args: argparse.Namespace) -> list[dict[str, float]]:
    rows = []
    for n_images in (args.memory, 4 * args.memory):
        command = [sys.executable, __file__, "--memory-child", str(n_images), "--size", str(args.size),
                   "--batch", str(args.batch), "--channels", str(args.channels), "--device", args.device,
                   "--threads", str(args.threads)]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--images", type=int, default=None,
                        help="images in memory to draw batches from (default: 2048, at least 8 batches, so the "
                             "per-sample DataLoader is not restarted every few steps)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                        help="DataLoader workers of the per-sample baseline (default: the cores, at most 8)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads on the CPU")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--autotune", action="store_true",
                        help="on CUDA, let cuDNN autotune convolutions (train.deterministic: false)")
    parser.add_argument("--memory", type=int, default=0, help="also measure peak memory on N and 4N images")
    parser.add_argument("--memory-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.images is None:
        args.images = max(2048, 8 * args.batch)
    if args.memory_child:
        _peak_memory_child(args.memory_child, args)
        return
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"BYOL ResNet-18 training step, {args.channels}x{args.size}x{args.size}, batch {args.batch}, on {name}")
    results = throughput(args)
    for key in ("ceiling", "ours", "per_sample"):
        print(f"  {key:<11} {results[key]:10.1f} img/s")
    print(f"  ours / ceiling    {results['ours'] / results['ceiling']:.2f}")
    print(f"  ours / per-sample {results['ours'] / results['per_sample']:.2f}")
    if "mfu_ours" in results:
        print(f"  forward {results['forward_gflops']:.3f} GFLOP/img, measured bf16 peak "
              f"{results['bf16_peak_tflops']:.0f} TFLOP/s, MFU (ours) {results['mfu_ours']:.1%}")
    if args.memory:
        small, large = peak_memory(args)
        growth = large["peak_bytes"] - small["peak_bytes"]
        store = large["store_bytes"] - small["store_bytes"]
        print(f"  peak memory {small['peak_bytes'] / 2**20:.1f} MiB on {small['images']} images, "
              f"{large['peak_bytes'] / 2**20:.1f} MiB on {large['images']}: grew {growth / 2**20:.1f} MiB "
              f"for {store / 2**20:.1f} MiB more store (ratio {growth / store:.2f})")


if __name__ == "__main__":
    main()
