"""The CPU demo's held-out evaluation and preview (`make demo`), from the pieces users run.

    python -m model.demo heldout  --corpus out/demo/heldout --out out/demo/heldout/shards
    python -m model.demo evaluate --config configs/train/demo.yaml --protocol out/demo/eval/protocol \
        --train-shards out/demo/curate/shards --trained out/demo/train --untrained out/demo/svd \
        --out out/demo/eval [--steps 10]
    python -m model.demo preview  --generated out/demo/generate --gt out/demo/generate/clip/gt/NAME.mp4 \
        --out out/demo/generate/demo.png

`heldout`: the valid videos of a synthetic corpus made with another seed (scenes training never
saw; `labels.csv` says which are valid) packed into a WebDataset shard, so `model.eval.protocol` can
draw evaluation videos from them like from any held-out shards.

`evaluate`: on every video of a `model.eval.protocol` directory, three methods, each scored by
`model.eval.evaluate` twice (inside the directions the input shows — the paper's masked metrics —
and over the whole panorama):
- trained: `model.generate` with the trained UNet (the run directory), exact protocol poses;
- untrained: the same with the random UNet the training started from;
- baseline: no network: the condition canvas (the input projected at its poses, as generation
  builds it) with every unseen pixel filled by the training clips' mean colour of its latitude.
Prints one table and writes OUT/table.md, OUT/table.json and each method's predictions and
reports under OUT/METHOD/.

`preview`: one image a person reads at a glance, every panel upscaled: per frame, the input view,
the condition canvas (mask outlined), the generated panorama and the ground truth, titled with
the masked and whole-panorama PSNR.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger("model.demo")

METHODS = ("trained", "untrained", "baseline")
REGIONS = (("union", "masked"), ("full", "whole"))


# ------------------------------------------------------------------------------ held-out shards
def pack_heldout(corpus: str | Path, out: str | Path) -> Path:
    """Pack the corpus's valid videos (labels.csv: expected_verdict accepted) into one shard."""
    from shards.video import probe
    from shards.writer import ShardWriter

    corpus, out = Path(corpus), Path(out)
    labels = corpus / "labels.csv"
    if not labels.is_file():
        raise FileNotFoundError(f"--corpus {corpus}: no labels.csv (written by python -m pipeline.synthetic)")
    with labels.open(newline="") as f:
        valid = [row["file"] for row in csv.DictReader(f) if row.get("expected_verdict") == "accepted"]
    if not valid:
        raise ValueError(f"{labels}: no video with expected_verdict accepted")
    with ShardWriter(out, prefix="heldout") as writer:
        for name in valid:
            path = corpus / name
            info = probe(path)
            writer.write(f"{path.stem}_0000", path.read_bytes(), {
                "video_id": path.stem, "clip_index": 0, "source": "synthetic-heldout", "start_s": 0.0,
                "end_s": info.num_frames / info.fps, "fps": info.fps, "num_frames": info.num_frames,
                "width": info.width, "height": info.height, "config_hash": "heldout"})
    return out


# ----------------------------------------------------------------------------------- baseline
def latitude_mean(urls: Sequence[str], height: int, width: int) -> np.ndarray:
    """The training clips' mean colour of every equirect row: (height, 3) float in [0, 255]."""
    from shards.reader import iter_samples, list_shards
    from shards.video import decode_frames

    total, count = np.zeros((height, 3)), 0
    for sample in iter_samples(list_shards(list(urls)), strict=False):
        frames = decode_frames(sample.mp4, size=(width, height)).astype(np.float64)
        total += frames.sum(axis=(0, 2))
        count += frames.shape[0] * frames.shape[2]
    if not count:
        raise ValueError(f"--train-shards {list(urls)}: no decodable clip")
    return total / count


def baseline_panorama(pers: np.ndarray, poses, height: int, row_mean: np.ndarray) -> np.ndarray:
    """The condition canvas, unseen pixels filled with `row_mean` of their latitude: (N, H, 2H, 3) uint8."""
    from model.frames import resize_frames
    from model.generate import condition_canvas

    canvas, mask = condition_canvas(pers, poses, height)
    rows = resize_frames(row_mean.round().clip(0, 255).astype(np.uint8)[None, :, None, :], (height, 1))[0]
    fill = np.broadcast_to(rows[None], canvas.shape)
    return np.where(mask[..., None], canvas, fill)


# ------------------------------------------------------------------------------------ methods
def protocol_names(protocol: Path) -> list[str]:
    gt = protocol / "gt"
    names = sorted(p.stem for p in gt.glob("*.mp4"))
    if not names:
        raise ValueError(f"--protocol {protocol}: no videos in {gt} (run python -m model.eval.protocol first)")
    return names


def generate_all(model: Path, protocol: Path, out: Path, config: Path, steps: int, guidance: str,
                 seed: int = 0) -> None:
    """`model.generate` on every protocol input with its exact poses, at the train config's size."""
    from model.config import TrainConfig
    from model.generate import parse_args, run

    data = TrainConfig.load(config, ["shards=[unused]"]).data
    for name in protocol_names(protocol):
        run(parse_args(["--model", str(model), "--input", str(protocol / "input" / f"{name}.mp4"),
                        "--poses", str(protocol / "input" / f"{name}.json"), "--output", str(out / name),
                        "--height", str(data.height), "--window", str(data.num_frames),
                        "--context", str(data.context_frames), "--fps", str(data.fps), "--steps", str(steps),
                        "--guidance", guidance, "--seed", str(seed)]))


def baseline_all(protocol: Path, out: Path, row_mean: np.ndarray, height: int) -> None:
    from model.poses import Poses
    from shards.video import decode_frames, probe, write_mp4

    for name in protocol_names(protocol):
        video = protocol / "input" / f"{name}.mp4"
        pers = decode_frames(video)
        poses = Poses.load(protocol / "input" / f"{name}.json")
        write_mp4(out / f"{name}.mp4", baseline_panorama(pers, poses, height, row_mean), probe(video).fps, crf=12)


def score(pred: Path, protocol: Path, mask: str, method: str) -> dict:
    from model.eval.evaluate import EvalConfig, evaluate, write_report

    report = evaluate(pred, protocol / "gt", EvalConfig(mask=mask), method)
    write_report(report, pred.parent / f"report_{mask}")
    return report["summary"]["simulated"]


def table_markdown(rows: dict) -> str:
    lines = ["| method | masked PSNR↑ | masked LPIPS↓ | whole PSNR↑ | whole LPIPS↓ |", "|---|---|---|---|---|"]
    for method, r in rows.items():
        lines.append(f"| {method} | {r['masked_psnr']:.2f} | {r['masked_lpips']:.4f} | "
                     f"{r['whole_psnr']:.2f} | {r['whole_lpips']:.4f} |")
    return "\n".join(lines) + "\n"


def evaluate_demo(config: Path, protocol: Path, train_shards: Sequence[str], trained: Path, untrained: Path,
                  out: Path, steps: int = 10, guidance: str = "1,1") -> dict:
    from model.config import TrainConfig

    data = TrainConfig.load(config, ["shards=[unused]"]).data
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    generate_all(trained, protocol, out / "trained" / "pred", config, steps, guidance)
    generate_all(untrained, protocol, out / "untrained" / "pred", config, steps, guidance)
    row_mean = latitude_mean(train_shards, data.height, data.width)
    baseline_all(protocol, out / "baseline" / "pred", row_mean, data.height)
    rows = {}
    for method in METHODS:
        r = {}
        for mask, region in REGIONS:
            summary = score(out / method / "pred", protocol, mask, method)
            r[f"{region}_psnr"], r[f"{region}_lpips"] = summary["psnr"], summary["lpips"]
        r["videos"] = summary["videos"]
        rows[method] = r
    table = table_markdown(rows)
    note = (f"{rows['trained']['videos']} held-out synthetic clips ({protocol}), {data.height}×{data.width}, "
            f"{data.num_frames} frames; masked = directions the input shows (union over frames), "
            f"whole = every pixel; LPIPS as model.eval.evaluate computes it (random AlexNet trunk without weights).")
    (out / "table.md").write_text(table + "\n" + note + "\n")
    (out / "table.json").write_text(json.dumps({"rows": rows, "protocol": str(protocol), "steps": steps,
                                                "guidance": guidance, "seconds": round(time.perf_counter() - t0, 1)},
                                               indent=1) + "\n")
    print(table + "\n" + note)
    return rows


# ------------------------------------------------------------------------------------- preview
def _label(image: np.ndarray, text: str) -> np.ndarray:
    import cv2

    bar = np.zeros((22, image.shape[1], 3), np.uint8)
    cv2.putText(bar, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([bar, image], axis=0)


def _upscale(image: np.ndarray, height: int) -> np.ndarray:
    import cv2

    width = int(round(image.shape[1] * height / image.shape[0]))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)


def preview_image(pers: np.ndarray, condition: np.ndarray, panorama: np.ndarray, gt: np.ndarray, mask: np.ndarray,
                  rows: int = 4, panel_height: int = 192) -> tuple[np.ndarray, dict]:
    """Rows of frames: input | condition canvas | generated | ground truth, upscaled; and the PSNRs."""
    from model.eval.metrics import psnr

    union = mask.any(0)
    figures = {"masked_psnr": psnr(panorama, gt, union), "whole_psnr": psnr(panorama, gt, None),
               "visible_fraction": float(union.mean())}
    shown = np.unique(np.linspace(0, len(panorama) - 1, min(rows, len(panorama))).round().astype(int))
    gap = np.full((panel_height + 22, 8, 3), 255, np.uint8)
    lines = []
    for t in shown:
        panels = [_label(_upscale(pers[t], panel_height), f"input view, frame {t}"),
                  _label(_upscale(condition[t], panel_height), "condition canvas (mask outlined)"),
                  _label(_upscale(panorama[t], panel_height), f"generated, PSNR {psnr(panorama[t], gt[t], union):.1f} dB in mask"),
                  _label(_upscale(gt[t], panel_height), "ground truth")]
        line = panels[0]
        for p in panels[1:]:
            line = np.concatenate([line, gap, p], axis=1)
        lines += [line, np.full((8, line.shape[1], 3), 255, np.uint8)]
    body = np.concatenate(lines[:-1], axis=0)
    title = (f"held-out scene: masked PSNR {figures['masked_psnr']:.2f} dB (directions the input shows, "
             f"{100 * figures['visible_fraction']:.0f}% of the sphere), whole-panorama PSNR {figures['whole_psnr']:.2f} dB")
    return _label(body, title), figures


def preview(generated: Path, gt_video: Path, out: Path, rows: int = 4) -> dict:
    """The demo preview of a `model.generate` output directory against its ground truth: a
    `model.eval.protocol` gt video, in the frame of the poses the generation was given (`--poses`)."""
    import cv2

    from model.frames import resize_frames
    from shards.video import decode_frames, probe, sample_indices

    summary = json.loads((generated / "generation.json").read_text())
    panorama = decode_frames(generated / "panorama.mp4")
    condition = decode_frames(generated / "condition.mp4")
    mask = decode_frames(generated / "mask.mp4")[..., 0] > 127
    info = probe(summary["input"])
    indices = sample_indices(info.num_frames, info.fps, summary["config"]["fps"], summary["frames"], name=summary["input"])
    pers = decode_frames(summary["input"], indices=indices)
    gt_info = probe(gt_video)
    gt_indices = np.minimum((np.asarray(indices) * gt_info.fps / info.fps).round().astype(int), gt_info.num_frames - 1)
    gt = resize_frames(decode_frames(gt_video, indices=gt_indices), panorama.shape[1:3])
    image, figures = preview_image(pers, condition, panorama, gt, mask, rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise ValueError(f"--out {out}: could not write the image (use a .png name)")
    (out.with_suffix(".json")).write_text(json.dumps(figures, indent=1) + "\n")
    return figures


# ----------------------------------------------------------------------------------------- CLI
def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m model.demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    h = sub.add_parser("heldout", help="pack a synthetic corpus's valid videos into a shard")
    h.add_argument("--corpus", required=True)
    h.add_argument("--out", required=True)
    e = sub.add_parser("evaluate", help="trained / untrained / baseline on a protocol directory: one table")
    e.add_argument("--config", required=True, help="the train config (sizes)")
    e.add_argument("--protocol", required=True, help="directory written by python -m model.eval.protocol")
    e.add_argument("--train-shards", nargs="+", required=True, help="training shards (the baseline's mean colours)")
    e.add_argument("--trained", required=True, help="train run directory")
    e.add_argument("--untrained", required=True, help="SVD directory whose random UNet training started from")
    e.add_argument("--out", required=True)
    e.add_argument("--steps", type=int, default=10, help="Euler steps of generation")
    e.add_argument("--guidance", default="1,1", help="guidance MIN,MAX of generation")
    v = sub.add_parser("preview", help="input | condition | generated | ground truth, upscaled, with PSNRs")
    v.add_argument("--generated", required=True, help="a model.generate output directory")
    v.add_argument("--gt", required=True, help="ground-truth equirect video in the poses' frame (model.eval.protocol gt/)")
    v.add_argument("--out", required=True, help="PNG to write")
    v.add_argument("--rows", type=int, default=4)
    args = p.parse_args(argv)
    try:
        if args.command == "heldout":
            print(f"wrote {pack_heldout(args.corpus, args.out)}")
        elif args.command == "evaluate":
            evaluate_demo(Path(args.config), Path(args.protocol), args.train_shards, Path(args.trained),
                          Path(args.untrained), Path(args.out), args.steps, args.guidance)
        else:
            figures = preview(Path(args.generated), Path(args.gt), Path(args.out), args.rows)
            print(f"wrote {args.out}: masked PSNR {figures['masked_psnr']:.2f} dB, "
                  f"whole-panorama PSNR {figures['whole_psnr']:.2f} dB")
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
