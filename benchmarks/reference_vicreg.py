"""A minimal VICReg on the embedded digits in plain PyTorch: the known-good reference loop.

Independent of the project's method, data and Lightning code (it reads only the rendered digits),
so a number it shares with ``table2.py`` is not an artefact of either. Views are drawn per sample
on whole batches: random resized crop (optionally shifted further, ``--translate``), colour
jitter (p 0.8), channel permutation, grayscale, inversion, and a recolouring that maps the
luminance onto a random colour pair as the rendering draws one (``--recolor``). Each epoch it
prints the k-NN top-1 on the validation split (k 20, cosine, T 0.07, clean images) and what
the 20 neighbours share: the fg/bg polarity and the digit's position (mean distance in pixels;
random pairs: 2.5). ``--log-every`` traces the loss terms, output std, effective rank and
gradient norm; ``--loss simclr`` swaps in InfoNCE and ``--loss simsiam --head simsiam`` SimSiam
as controls.
README, "Calibrating the digits benchmark", lists the ablations run with it. Example:
    python benchmarks/reference_vicreg.py --epochs 10 --stop-after 2 --gray 1.0 --out g.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import time

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from solo_sqsp.data.digits import load_embedded_digits

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
PERMUTATIONS = torch.tensor([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])
HEADS = {
    "solo1024": [512, 1024, 1024, 1024],
    "authors": [512] * 5 + [2048],
    "simsiam": [512, 2048, 2048],  # the reference SimSiam's 2-layer CIFAR projector
}
PREDICTOR_HIDDEN = 512  # SimSiam's bottleneck predictor (Chen & He 2021)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--epochs", type=int, default=10, help="length of the schedule")
    add("--stop-after", type=int, default=0, help="stop after this many epochs of it")
    add("--seed", type=int, default=0)
    add("--lr", type=float, default=0.03, help="peak lr (SGD, momentum 0.9)")
    add("--wd", type=float, default=5e-4)
    add("--warmup", type=float, default=0.1, help="linear warm-up share, then cosine")
    add("--head", choices=sorted(HEADS), default="authors")
    add("--batch", type=int, default=128)
    add("--cov", type=float, default=1.0, help="covariance weight (invariance, variance: 25)")
    add("--crop-min", type=float, default=0.5)
    add("--translate", type=float, default=0.0, help="extra shift per view, share of the side")
    add("--jitter", type=float, default=0.4, help="brightness, contrast, saturation")
    add("--permute", type=float, default=0.5, help="channel permutation probability")
    add("--gray", type=float, default=0.2, help="grayscale probability")
    add("--invert", type=float, default=0.0, help="inversion probability")
    add("--recolor", type=float, default=0.0, help="probability of a random new colour pair")
    add("--gray-probe", action="store_true", help="k-NN on grayscale images")
    add(
        "--loss",
        choices=["vicreg", "simclr", "simsiam"],
        default="vicreg",
        help="controls: simclr (InfoNCE), simsiam (predictor, stop-gradient; --head simsiam)",
    )
    add("--tau", type=float, default=0.2, help="InfoNCE temperature")
    add("--log-every", type=int, default=0)
    add("--threads", type=int, default=2)
    add("--out", help="JSON of the per-epoch curve")
    return parser.parse_args()


def to_tensor(images) -> Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255).contiguous()


def grayscale(x: Tensor) -> Tensor:
    return (x * LUMA).sum(1, keepdim=True).expand(-1, 3, -1, -1)


def where(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), a, b)


def view(x: Tensor, args: argparse.Namespace, g: torch.Generator) -> Tensor:
    """One augmented, normalised view of every image of ``x`` (module docstring)."""
    n = len(x)

    def uniform(low: float, high: float) -> Tensor:
        return low + (high - low) * torch.rand(n, generator=g)

    area, log_ratio = uniform(args.crop_min, 1.0), uniform(math.log(3 / 4), math.log(4 / 3))
    w = (area * log_ratio.exp()).sqrt().clamp(max=1.0)
    h = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    shift = 2 * args.translate
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = w, h
    theta[:, 0, 2] = (1 - w) * uniform(-1, 1) + shift * uniform(-1, 1)
    theta[:, 1, 2] = (1 - h) * uniform(-1, 1) + shift * uniform(-1, 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    j = args.jitter
    brightness, contrast, saturation = (uniform(1 - j, 1 + j).view(n, 1, 1, 1) for _ in "bcs")
    jittered = (v * brightness).clamp(0, 1)
    mean = grayscale(jittered).mean((1, 2, 3), keepdim=True)
    jittered = ((jittered - mean) * contrast + mean).clamp(0, 1)
    jittered = ((jittered - grayscale(jittered)) * saturation + grayscale(jittered)).clamp(0, 1)
    v = where(uniform(0, 1) < 0.8, jittered, v)
    order = PERMUTATIONS[torch.randint(0, 6, (n,), generator=g)].view(n, 3, 1, 1)
    v = where(uniform(0, 1) < args.permute, v.gather(1, order.expand_as(v)), v)
    v = where(uniform(0, 1) < args.gray, grayscale(v), v)
    v = where(uniform(0, 1) < args.invert, 1 - v, v)
    lum = grayscale(v)
    low, high = lum.amin((1, 2, 3), keepdim=True), lum.amax((1, 2, 3), keepdim=True)
    c0, c1 = torch.rand(2, n, 3, 1, 1, generator=g)
    recolored = c0 + (c1 - c0) * (lum - low) / (high - low + 1e-6)
    v = where(uniform(0, 1) < args.recolor, recolored, v)
    return (v - MEAN) / STD


def resnet18() -> nn.Module:
    """torchvision's ResNet18 with the CIFAR stem (3x3 stride-1 conv, no max-pool), 512-d out."""
    net = torchvision.models.resnet18()
    net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    net.maxpool, net.fc = nn.Identity(), nn.Identity()
    return net


def mlp(dims: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d_in, d_out in itertools.pairwise(dims[:-1]):
        layers += [nn.Linear(d_in, d_out), nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.Linear(dims[-2], dims[-1]))


def vicreg_terms(z1: Tensor, z2: Tensor) -> dict[str, Tensor]:
    """Invariance (MSE), variance (hinge on the std, mean of both views), covariance (both)."""

    def std_hinge(z: Tensor) -> Tensor:
        return F.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean()

    def off_diagonal(z: Tensor) -> Tensor:
        zc = z - z.mean(0)
        c = zc.T @ zc / (len(z) - 1)
        return (c.pow(2).sum() - c.diagonal().pow(2).sum()) / z.shape[1]

    return {
        "sim": F.mse_loss(z1, z2),
        "var": (std_hinge(z1) + std_hinge(z2)) / 2,
        "cov": off_diagonal(z1) + off_diagonal(z2),
    }


def info_nce(z1: Tensor, z2: Tensor, tau: float) -> Tensor:
    """SimCLR's NT-Xent over both views (Chen et al. 2020): each view's positive is the other."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T / tau).fill_diagonal_(float("-inf"))
    n = len(z1)
    return F.cross_entropy(logits, torch.cat([torch.arange(n, 2 * n), torch.arange(n)]))


def simsiam(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
    """SimSiam's symmetrised negative cosine, each prediction against the other view's
    projection with its gradient stopped (Chen & He 2021, Eq. 2-4)."""
    return (
        -(F.cosine_similarity(p1, z2.detach()).mean() + F.cosine_similarity(p2, z1.detach()).mean())
        / 2
    )


def nuisances(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per image: polarity (foreground brighter than the border's median) and the digit's
    centre ``(y, x)`` in pixels."""
    lum = (images * LUMA).sum(1)
    border = torch.cat([lum[:, 0], lum[:, -1], lum[:, :, 0], lum[:, :, -1]], 1)
    dev = (lum - border.median(1).values[:, None, None]).flatten(1)
    polarity = dev.gather(1, dev.abs().argmax(1, keepdim=True))[:, 0] > 0
    mask = (dev.abs() > 0.15).float().view_as(lum)
    count = mask.sum((1, 2)).clamp(min=1)
    side = torch.arange(lum.shape[1], dtype=torch.float32)
    centre = torch.stack(
        [(mask * side.view(1, -1, 1)).sum((1, 2)), (mask * side.view(1, 1, -1)).sum((1, 2))], 1
    )
    return polarity, centre / count[:, None]


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    digits = load_embedded_digits()
    x_train, x_val = to_tensor(digits.train.images), to_tensor(digits.val.images)
    y_train = torch.from_numpy(digits.train.targets).long()
    y_val = torch.from_numpy(digits.val.targets).long()
    (pol_train, pos_train), (pol_val, pos_val) = nuisances(x_train), nuisances(x_val)
    net, projector = resnet18(), mlp(HEADS[args.head])
    width = HEADS[args.head][-1]
    predictor = mlp([width, PREDICTOR_HIDDEN, width]) if args.loss == "simsiam" else nn.Identity()
    params = [*net.parameters(), *projector.parameters(), *predictor.parameters()]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=args.wd)
    steps = len(x_train) // args.batch
    total, warm = steps * args.epochs, max(1, int(args.warmup * steps * args.epochs))

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)

    @torch.no_grad()
    def probe() -> dict[str, float]:
        net.eval()

        def features(x: Tensor) -> Tensor:
            x = grayscale(x) if args.gray_probe else x
            return F.normalize(torch.cat([net((c - MEAN) / STD) for c in x.split(512)]), dim=1)

        sims, idx = (features(x_val) @ features(x_train).T).topk(20, dim=1)
        votes = torch.zeros(len(x_val), 10).scatter_add_(1, y_train[idx], (sims / 0.07).exp())
        net.train()
        return {
            "knn": round((votes.argmax(1) == y_val).float().mean().item() * 100, 1),
            "same_polarity": round(
                (pol_train[idx] == pol_val[:, None]).float().mean().item() * 100, 1
            ),
            "position_distance": round(
                (pos_train[idx] - pos_val[:, None]).norm(dim=-1).mean().item(), 2
            ),
        }

    g = torch.Generator().manual_seed(args.seed)
    curve, train_s = [{"epoch": 0, "train_s": 0, **probe()}], 0.0
    print(vars(args), curve[0], flush=True)
    for epoch in range(args.stop_after or args.epochs):
        start = time.perf_counter()
        order = torch.randperm(len(x_train), generator=g)
        for i in range(steps):
            x = x_train[order[i * args.batch : (i + 1) * args.batch]]
            z1, z2 = projector(net(view(x, args, g))), projector(net(view(x, args, g)))
            terms = vicreg_terms(z1, z2)
            loss = 25 * terms["sim"] + 25 * terms["var"] + args.cov * terms["cov"]
            if args.loss == "simclr":
                loss = info_nce(z1, z2, args.tau)
            if args.loss == "simsiam":
                loss = simsiam(predictor(z1), predictor(z2), z1, z2)
            if not torch.isfinite(loss):
                raise SystemExit(f"non-finite loss at epoch {epoch + 1}, step {i}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            if args.log_every and i % args.log_every == 0:
                zc = (z1 - z1.mean(0)).detach()
                s = torch.linalg.svdvals(zc)
                rank = (s.sum() ** 2 / (s**2).sum()).item()
                grads = [p.grad.norm() for p in net.parameters()]
                print(
                    f"  step {epoch * steps + i} lr {scheduler.get_last_lr()[0]:.4f} "
                    + " ".join(f"{k} {v.item():.3f}" for k, v in terms.items())
                    + f" z std {z1.std(0).mean().item():.3f} effective rank {rank:.0f} "
                    f"backbone grad {torch.stack(grads).norm().item():.2f}",
                    flush=True,
                )
        train_s += time.perf_counter() - start
        curve.append({"epoch": epoch + 1, "train_s": round(train_s), **probe()})
        print(curve[-1], flush=True)
    if args.out:
        with open(args.out, "w") as file:
            json.dump({"args": vars(args), "curve": curve}, file, indent=1)


if __name__ == "__main__":
    main()
