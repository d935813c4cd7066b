#!/usr/bin/env python3
"""Translation quality on the sample data: CycleGAN, semi-supervised CycleGAN and Pix2Pix(HD)
trained with the same budget, scored on the held-out test scene beside a baseline.

    python tools/bench_quality.py                      # one seed, the default routes, CPU sizes
    python tools/bench_quality.py --seeds 3            # mean ± std over seeds 0, 1, 2
    python tools/bench_quality.py --upsample transpose,resize --seeds 3   # the upsampling comparison
    python tools/bench_quality.py --routes cyclegan,pix2pix --upsample resize,subpixel --seeds 3 --tta off
                                                       # the gate for making subpixel the default (issue 22)
    python tools/bench_quality.py --gpu                # bigger networks and more steps, for CUDA
    python tools/bench_quality.py --seeds 3 --steps 3200 --size chip_size=128 \
        --size crop_size=128 --size batch_size=1 --out bq_long   # 4x the pixels, larger context:
                                                                   # every target met (~55 min a seed)

Data (``sample_data/``, see its README): unpaired SAR (``sar_train.tif``, region 1) and RGB
(``rgb_train.tif``, region 2), and a small co-registered pair (``sar_pair.tif`` /
``rgb_pair.tif``, inside region 2). None of them touches the test scene: ``sar_test.tif`` is
translated and scored against ``rgb_test_truth.tif`` (never seen in training) and
``landcover_test.tif`` (which class each class was painted as).

Routes (every one trains for the same number of steps of the same batch size, with the same
network width and depth):

* ``cyclegan``  — unpaired chips only (the papers' recipe: ResNet generators, instance norm, LSGAN);
* ``semi``      — the same plus the pairs (``data_paired``: masked L1 both ways, λ 100), with the
  generators and discriminators of ``pix2pixhd`` (below), plus conditional discriminators on the
  pairs (``lambda_pair_gan`` 1) that feature matching uses. Without those (``--set
  semi.lambda_pair_gan=0 --set semi.discriminator=patch --set semi.lambda_feat=0``, the recipe of
  the README's 15-minute and upsampling tables) it painted road as ploughed field in every seed at
  the long size;
* ``pix2pix``   — the pairs only, the paper's recipe (vanilla GAN loss, PatchGAN, instance norm);
* ``pix2pixhd`` — the pairs only, sharpened as Pix2PixHD: two discriminator scales (a 64-pixel crop
  leaves 32 pixels at the second), feature matching (λ 10), LSGAN and no dropout; a ResNet
  generator with U-Net skips (``resnet_skip_6blocks``: seed 0 kept roads and forest their own
  colour, 19.97 dB / SSIM 0.597, where the plain ResNet painted both as others, 19.93 / 0.590) and
  no normalisation (``norm: none``: instance norm removes the SAR level that tells fields apart).

The default routes are ``cyclegan,semi,pix2pixhd``; upsampling is the config default (``resize``)
unless ``--upsample`` names others. Each model translates the test scene as it is and with
test-time augmentation (``--tta``: ``geogan predict --tta``, the mean over the 8 orientations it
was trained under), scored as separate rows (``route +tta``).

Printed per run and as mean ± std over seeds: PSNR, SSIM, SAM, MAE, the classes painted as
another class, the mean share of pixels painted in their own class's colour, the seam ratio
(:func:`geogan.evaluate.seam_ratio` at the prediction's tile size and overlap, divided by the
same ratio of the same model's prediction made in one tile: 1 = tiling changed nothing at the
tile boundaries; the raw ratio, which also moves with what the few boundary lines cross, is in
``results.json`` as ``seam_raw``) and
the training time; then the targets of issue 11 checked against the histogram-matching
baseline (``tools/demo_baseline.py``), for the best route by PSNR and for every route (PSNR and
SSIM can name different best routes), ending with the routes that meet them all. Everything
lands in ``--out`` (default ``bench_quality_out/``), with ``results.json``.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "sample_data"
ROUTES = ("cyclegan", "semi", "pix2pix", "pix2pixhd")
DEFAULT_ROUTES = ("cyclegan", "semi", "pix2pixhd")
PAIRED_ROUTES = ("semi", "pix2pix", "pix2pixhd")
TILE, OVERLAP = 256, 64
LAMBDA_FEAT = 10.0  # Pix2PixHD's feature-matching weight
LAMBDA_PAIR_GAN = 1.0  # the GAN weight of Pix2Pix(HD), beside L1 100

#: Sizes on the CPU: ~15 minutes for the three default routes on 2 idle cores.
CPU = dict(steps=800, batch_size=4, crop_size=64, chip_size=64, ngf=16, ndf=32, n_layers_d=3,
           generator="resnet_6blocks", skip_generator="resnet_skip_6blocks", stride=32, pair_stride=16)
#: Sizes on a CUDA GPU: bigger networks, more steps, more overlapping chips.
GPU = dict(steps=6000, batch_size=8, crop_size=64, chip_size=64, ngf=32, ndf=64, n_layers_d=3,
           generator="resnet_9blocks", skip_generator="resnet_skip_9blocks", stride=16, pair_stride=8)


def route_config(route: str, size: dict, seed: int, upsample: str, steps_per_epoch: int) -> dict:
    """The training config of one route: the same network sizes, steps and batch for all."""
    epochs_total = max(1, round(size["steps"] / steps_per_epoch))
    cfg = dict(generator=size["generator"], ngf=size["ngf"], ndf=size["ndf"], n_layers_d=size["n_layers_d"],
               upsample=upsample, batch_size=size["batch_size"], crop_size=size["crop_size"], seed=seed,
               epochs=epochs_total // 2, epochs_decay=epochs_total - epochs_total // 2,
               lambda_identity=0.0, checkpoint_every=0, log_every=50, device="auto")
    if route in ("cyclegan", "semi"):
        cfg["model"] = "cyclegan"
    else:
        cfg["model"] = "pix2pix"
    if route in ("semi", "pix2pixhd"):
        # the absolute SAR level tells the fields apart (instance norm removes it); skips keep roads;
        # Pix2PixHD's discriminators (a 64-pixel crop leaves 32 pixels at the second scale), LSGAN
        # and no dropout
        cfg.update(norm="none", generator=size["skip_generator"], discriminator="multiscale", num_d=2,
                   gan_mode="lsgan", dropout=False, lambda_feat=LAMBDA_FEAT)
    if route == "semi":
        # ... and they judge the pairs side by side (conditional), as Pix2PixHD's do: roads kept
        cfg["lambda_pair_gan"] = LAMBDA_PAIR_GAN
    return cfg


def export(out: Path, size: dict) -> dict:
    """Chips: unpaired SAR/RGB, and the co-registered pairs (the same for every route and seed)."""
    import geogan

    common = dict(tile_size=size["chip_size"], min_valid=0.95, seed=0, kind_a="sar", kind_b="optical")
    out.mkdir(parents=True, exist_ok=True)
    unpaired, paired = out / "chips", out / "chips_paired"
    if not reuse_chips(unpaired, size["chip_size"], size["stride"]):
        geogan.export_chips(DATA / "sar_train.tif", DATA / "rgb_train.tif", unpaired, stride=size["stride"],
                            val_fraction=0.1, **common)
    if not reuse_chips(paired, size["chip_size"], size["pair_stride"]):
        geogan.export_chips(DATA / "sar_pair.tif", DATA / "rgb_pair.tif", paired, stride=size["pair_stride"],
                            paired=True, val_fraction=0.0, **common)  # few pairs: all for training
    return {"unpaired": unpaired, "paired": paired}


def reuse_chips(folder: Path, chip_size: int, stride: int) -> bool:
    """True when ``folder`` already holds an export of these chips; refuses one of other chips."""
    from geogan.chips import read_chips_metadata

    if not (folder / "geogan_chips.json").exists():
        return False
    meta = read_chips_metadata(folder)
    if (meta["tile_size"], meta["stride"]) != (chip_size, stride):
        raise SystemExit(f"{folder}: holds {meta['tile_size']} px chips every {meta['stride']} px, not {chip_size} "
                         f"every {stride}; choose another --out")
    return True


def steps_per_epoch(chips: Path, batch: int) -> int:
    n_a = len(list((chips / "train_a").glob("*.tif")))
    n_b = len(list((chips / "train_b").glob("*.tif")))
    return max(1, math.ceil(max(n_a, n_b) / batch))


def train_route(route: str, chips: dict, size: dict, seed: int, upsample: str, run_dir: Path,
                overrides: dict) -> tuple[Path, float]:
    import geogan

    data = chips["unpaired"] if route in ("cyclegan", "semi") else chips["paired"]
    cfg = route_config(route, size, seed, upsample, steps_per_epoch(data, size["batch_size"]))
    cfg.update(data=str(data), out=str(run_dir))
    if route == "semi":
        cfg["data_paired"] = str(chips["paired"])
    for key, value in overrides.items():
        target, _, name = key.rpartition(".")
        if not target or target == route:
            cfg[name] = value
    if (run_dir / "model.geogan").exists():
        return run_dir / "model.geogan", float("nan")
    t0 = time.perf_counter()
    path = geogan.train(cfg)
    return path, time.perf_counter() - t0


def score(pred: Path, one_tile: Path | None = None) -> dict:
    """Metrics of a prediction; ``one_tile``: the same model's prediction made in one tile."""
    from geogan.evaluate import evaluate_rasters, seam_ratio

    report = evaluate_rasters(pred, DATA / "rgb_test_truth.tif", classes=DATA / "landcover_test.tif")
    classes = report.classes
    return {"psnr": report.psnr, "ssim": report.ssim, "sam": report.sam, "mae": report.mae,
            "swapped": [c.name or str(c.value) for c in classes.classes if c.painted_as != c.value],
            "painted_as": {c.name or str(c.value): next(x.name or str(x.value) for x in classes.classes
                                                        if x.value == c.painted_as) for c in classes.classes},
            "own_share": statistics.mean(c.own_share for c in classes.classes),
            "seam": seam_ratio(pred, TILE, OVERLAP, reference=one_tile) if one_tile else float("nan"),
            "seam_raw": seam_ratio(pred, TILE, OVERLAP), "class_lines": classes.lines()}


def run_one(route: str, chips: dict, size: dict, seed: int, upsample: str, out: Path, overrides: dict,
            tta_modes: tuple[bool, ...]) -> list[dict]:
    """Train one route and score its translation of the test scene, without and/or with TTA."""
    from geogan.predict import translate_raster

    tag = f"{route}_{upsample}_s{seed}"
    model, seconds = train_route(route, chips, size, seed, upsample, out / tag, overrides)
    results = []
    for tta in tta_modes:
        name = tag + ("_tta" if tta else "")
        pred, one_tile = out / f"{name}.tif", out / f"{name}_one_tile.tif"
        t0 = time.perf_counter()
        translate_raster(model, DATA / "sar_test.tif", pred, tile_size=TILE, overlap=OVERLAP, overwrite=True, tta=tta)
        predict_s = time.perf_counter() - t0
        translate_raster(model, DATA / "sar_test.tif", one_tile, tile_size=one_tile_size(), overlap=0,
                         overwrite=True, tta=tta)
        results.append({"route": route, "upsample": upsample, "tta": tta, "seed": seed, "train_s": seconds,
                        "predict_s": predict_s, **score(pred, one_tile)})
    return results


def one_tile_size(multiple: int = 256) -> int:
    """A tile that holds the whole test scene (a multiple of every generator's size multiple)."""
    from geogan.raster import open_raster

    with open_raster(DATA / "sar_test.tif") as ds:
        return multiple * math.ceil(max(ds.height, ds.width) / multiple)


def baseline(out: Path) -> dict:
    sys.path.insert(0, str(ROOT / "tools"))
    from demo_baseline import baseline as histogram_match

    pred = out / "baseline.tif"
    histogram_match(DATA / "sar_test.tif", DATA / "rgb_train.tif", pred)
    return {"route": "baseline", "upsample": "-", "tta": False, "seed": 0, "train_s": 0.0, **score(pred)}


def fmt(values: list[float], spec: str) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return format(values[0], spec)
    return f"{format(statistics.mean(values), spec)} ± {format(statistics.stdev(values), spec)}"


def summary(results: list[dict]) -> list[str]:
    groups = grouped(results)
    lines = [f"{'route':<14} {'upsample':<9} {'n':>2} {'PSNR dB':>14} {'SSIM':>14} {'SAM deg':>12} {'MAE':>12} "
             f"{'own %':>11} {'seam':>14} {'train s':>9}  classes painted as another (per seed)"]
    for (route, up, tta), rs in groups.items():
        swapped = "; ".join(",".join(r["swapped"]) or "none" for r in rs)
        lines.append(f"{label(route, tta):<14} {up:<9} {len(rs):>2} {fmt([r['psnr'] for r in rs], '.2f'):>14} "
                     f"{fmt([r['ssim'] for r in rs], '.3f'):>14} {fmt([r['sam'] for r in rs], '.2f'):>12} "
                     f"{fmt([r['mae'] for r in rs], '.2f'):>12} {fmt([100 * r['own_share'] for r in rs], '.1f'):>11} "
                     f"{fmt([r['seam'] for r in rs], '.3f'):>14} {fmt([r['train_s'] for r in rs], '.0f'):>9}  {swapped}")
    return lines


def targets(results: list[dict]) -> list[str]:
    """Issue 11's targets, checked on the means over seeds: for the best route by PSNR, then for
    every route (which of them meets all: PSNR and SSIM can name different best routes)."""
    base = next(r for r in results if r["route"] == "baseline")
    groups = grouped([r for r in results if r["route"] != "baseline"])
    if not groups:
        return []
    checks = {key: route_check(rs, base) for key, rs in groups.items()}
    best = max(groups, key=lambda k: checks[k]["psnr"])
    c = checks[best]
    out = [f"best route by PSNR {best[0]} ({best[1]}{', test-time augmentation' if best[2] else ''}), which uses "
           f"no pair of the test scene: PSNR {c['psnr']:+.2f} dB (target >= +4), SSIM {c['ssim']:+.3f} (target >= "
           f"+0.15) over the baseline; classes painted as another: {c['swaps']} over {c['runs']} run(s) (target 0)"]
    paired = [k for k in groups if k[0] in PAIRED_ROUTES]
    unpaired = [k for k in groups if k[0] == "cyclegan"]
    if paired and unpaired:
        bp = max(checks[k]["psnr"] for k in paired) + base["psnr"]
        bu = max(checks[k]["psnr"] for k in unpaired) + base["psnr"]
        out.append(f"paired vs unpaired: best paired route {bp:.2f} dB vs CycleGAN {bu:.2f} dB "
                   f"({'beats' if bp > bu else 'does not beat'} it)")
    seams = [r["seam"] for r in results if r["route"] != "baseline" and not math.isnan(r["seam"])]
    if seams:
        out.append(f"seam ratio (÷ the one-tile prediction's): {min(seams):.3f} .. {max(seams):.3f} over all runs "
                   "(target 1 ± 0.05)")
    out.append("per route (PSNR, SSIM over the baseline; classes painted as another; seam ratio range):")
    for key, c in checks.items():
        out.append(f"  {label(key[0], key[2]):<14} {key[1]:<9} {c['psnr']:+6.2f} dB {c['ssim']:+.3f}  "
                   f"{c['swaps']} over {c['runs']} run(s)  seam {c['seam']}  "
                   f"{'meets every target' if c['meets'] else 'misses: ' + ', '.join(c['missed'])}")
    meeting = [label(k[0], k[2]) for k, c in checks.items() if c["meets"]]
    out.append(f"routes that meet every target: {', '.join(meeting) or 'none'}")
    return out


def route_check(rs: list[dict], base: dict) -> dict:
    """One route's means over seeds against the baseline, and which of issue 11's targets it misses."""
    dp = statistics.mean(r["psnr"] for r in rs) - base["psnr"]
    ds = statistics.mean(r["ssim"] for r in rs) - base["ssim"]
    swaps = sum(len(r["swapped"]) for r in rs)
    seams = [r["seam"] for r in rs if not math.isnan(r["seam"])]
    missed = [name for name, ok in (("PSNR", dp >= 4), ("SSIM", ds >= 0.15), ("classes", swaps == 0),
                                    ("seams", all(abs(s - 1) <= 0.05 for s in seams))) if not ok]
    seam = f"{min(seams):.3f}..{max(seams):.3f}" if seams else "-"
    return {"psnr": dp, "ssim": ds, "swaps": swaps, "runs": len(rs), "seam": seam, "missed": missed,
            "meets": not missed}


def grouped(results: list[dict]) -> dict[tuple[str, str, bool], list[dict]]:
    """Results by (route, upsampling, test-time augmentation), the seeds of one setting together."""
    groups: dict[tuple[str, str, bool], list[dict]] = {}
    for r in results:
        groups.setdefault((r["route"], r["upsample"], bool(r.get("tta", False))), []).append(r)
    return groups


def label(route: str, tta: bool) -> str:
    return route + (" +tta" if tta else "")


def parse_overrides(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected KEY=VALUE or ROUTE.KEY=VALUE")
        out[key.strip()] = yaml.safe_load(value)
    return out


def sized(base: dict, items: list[str]) -> dict:
    """``base`` (CPU or GPU) with ``--size KEY=VALUE`` overrides, each of the type it replaces."""
    size = dict(base)
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in size:
            raise SystemExit(f"--size {item!r}: expected KEY=VALUE with KEY one of {', '.join(size)}")
        try:
            size[key] = type(size[key])(value.strip())
        except ValueError:
            raise SystemExit(f"--size {item!r}: {key} takes a {type(size[key]).__name__}") from None
    return size


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=1, help="repeat with seeds 0..N-1 (default 1)")
    ap.add_argument("--routes", default=",".join(DEFAULT_ROUTES), help=f"comma-separated, of {', '.join(ROUTES)}")
    ap.add_argument("--upsample", default="default",
                    help="transpose, resize, subpixel, or several comma-separated (default: the config default)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per route (default: 800 CPU, 6000 GPU)")
    ap.add_argument("--gpu", action="store_true", help="the CUDA sizes (bigger networks, more steps)")
    ap.add_argument("--size", action="append", default=[], metavar="KEY=VALUE",
                    help="override a size of every route (steps, batch_size, crop_size, chip_size, ngf, ..."
                         "), e.g. --size chip_size=128 --size crop_size=128 --size batch_size=1")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--set", action="append", default=[], metavar="[ROUTE.]KEY=VALUE",
                    help="override a training setting (all routes, or one), e.g. --set semi.lambda_paired=20")
    ap.add_argument("--tta", choices=("off", "on", "both"), default="both",
                    help="score the translation without and/or with test-time augmentation (default both)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench_quality_out")
    args = ap.parse_args(argv)

    import torch

    from geogan.config import TrainConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.gpu and not torch.cuda.is_available():
        raise SystemExit("--gpu: torch sees no CUDA device")
    size = sized(GPU if args.gpu else CPU, args.size)
    if args.steps:
        size["steps"] = args.steps
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    for r in routes:
        if r not in ROUTES:
            raise SystemExit(f"--routes: unknown route {r!r} (expected {', '.join(ROUTES)})")
    ups = [TrainConfig().upsample] if args.upsample == "default" else [u.strip() for u in args.upsample.split(",")]
    overrides = parse_overrides(args.set)
    tta_modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.tta]
    args.out.mkdir(parents=True, exist_ok=True)
    chips = export(args.out, size)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device} ({torch.get_num_threads()} CPU thread(s)), {size['steps']} steps "
          f"of batch {size['batch_size']} per route, {size['generator']} (cyclegan) / {size['skip_generator']} "
          f"ngf {size['ngf']}, crop {size['crop_size']} of {size['chip_size']} px chips",
          flush=True)
    results = [baseline(args.out)]
    for seed in range(args.seeds):
        for route in routes:
            for up in ups:
                for r in run_one(route, chips, size, seed, up, args.out, overrides, tta_modes):
                    results.append(r)
                    print(f"{label(route, r['tta']):<14} {up:<9} seed {seed}: PSNR {r['psnr']:.2f} "
                          f"SSIM {r['ssim']:.3f} SAM {r['sam']:.2f} MAE {r['mae']:.2f} own {100 * r['own_share']:.1f}% "
                          f"seam {r['seam']:.3f} train {r['train_s']:.0f}s predict {r['predict_s']:.1f}s "
                          f"swapped: {', '.join(r['swapped']) or 'none'}", flush=True)
                save(args.out / "results.json", results)  # what is done survives an interruption
    print()
    for line in summary(results) + [""] + targets(results):
        print(line)
    best = max((r for r in results if r["route"] != "baseline"), key=lambda r: r["psnr"], default=None)
    if best is not None:
        print(f"\nclasses of the best run ({best['route']}, {best['upsample']}"
              f"{', tta' if best.get('tta') else ''}, seed {best['seed']}):")
        print("\n".join(best["class_lines"]))
    save(args.out / "results.json", results)
    return 0


def save(path: Path, results: list[dict]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
