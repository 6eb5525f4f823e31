#!/usr/bin/env python
"""Large JPEGs decoded no larger than the backbone needs: time, and how much the embedding moves.

Not a test: prints a table and writes ``benchmarks/results/bench_jpeg_decode.txt``.

``ood_core.images.load_rgb(path, decode_size)`` decodes a JPEG larger than twice ``decode_size`` on both sides at
1/2, 1/4 or 1/8 scale (libjpeg's scaled decoding), keeping both sides at least ``decode_size``; the extractor and
the CLIP encoder pass twice the short side their transform resizes to (``DECODE_MARGIN``; 512 for the default
EfficientNet-Lite0, 448 for CLIP ViT-B/16). No large photos are installed here, so the large files are real
photos (scikit-image's, 1000-1411 px ones at their own size too) scaled up 2-8x with bicubic interpolation and
saved at JPEG quality 90: their decoding time is a real photo's of that size, their fine detail poorer than a real
one's.

For each file: the time of decoding and preprocessing (``load_rgb`` + the backbone's transform; best of 3) at full
size and reduced, and the relative change of the pyramid embedding (``|e_reduced - e_full| / |e_full|``) beside
two references: the change that re-saving the file at JPEG quality 95 makes (a change nobody would notice) and
the change with a margin of 1 instead of 2 (decoded straight to the resize's size). Then the extractor end to
end (``PyramidExtractor.extract``, 1 decoding worker) on 48 phone-sized files (4032 x 3024), full size against
reduced.

Then CLIP ViT-B/16, which reads files the same way (``CLIPEncoder.load_image``): the change of the model's
input tensor on the same files, and its time per phone photo, reading against the forward pass.

Run (about 3 minutes)::

    OMP_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python benchmarks/bench_jpeg_decode.py
"""

import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

RESULTS = os.path.join(HERE, "results", "bench_jpeg_decode.txt")
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "retina", "hubble_deep_field")
SCALES = (1, 2, 4, 8)
PHONE = (4032, 3024)


def real_photos():
    import skimage.data

    out = {}
    for name in PHOTOS:
        im = getattr(skimage.data, name)()
        out[name] = np.asarray(im[0] if isinstance(im, tuple) else im)[..., :3]
    return out


def best_time(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def clip_section(made, phone_paths, lines):
    """CLIP ViT-B/16 (``CLIPEncoder.load_image``): the change of the model's input tensor (no real CLIP weights are
    installed, so the embedding's change cannot be measured), and the time per phone photo of reading and
    preprocessing against the model's forward pass (random weights: the same computation as trained ones)."""
    import open_clip
    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from ood_core.images import bounded_transform, decode_size, load_rgb

    model, _, _ = open_clip.create_model_and_transforms("ViT-B-16", pretrained=None)
    model.eval()
    prep = bounded_transform(image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False))
    size = decode_size(prep)  # as CLIPEncoder.decode_size
    lines.append(f"CLIP ViT-B/16: decode_size {size}; relative change of the model's input tensor "
                 "|x - x_full| / |x_full|")
    lines.append(f"{'photo':22} {'full ms':>8} {'reduced ms':>10} {'change':>7} {'q95 re-save':>11}")
    print("\n".join(lines[-2:]), flush=True)
    changes, noises = [], []
    for label, path, resaved in made:
        x_full = prep(load_rgb(path))
        if load_rgb(path, size).size == load_rgb(path).size:
            continue
        norm = float(x_full.norm())
        change = float((prep(load_rgb(path, size)) - x_full).norm()) / norm
        noise = float((prep(load_rgb(resaved)) - x_full).norm()) / norm
        t_full = best_time(lambda: prep(load_rgb(path)))
        t_red = best_time(lambda: prep(load_rgb(path, size)))
        changes.append(change), noises.append(noise)
        lines.append(f"{label:22} {1000 * t_full:8.0f} {1000 * t_red:10.0f} {change:7.4f} {noise:11.4f}")
        print(lines[-1], flush=True)
    lines.append(f"CLIP input: mean change {np.mean(changes):.4f} (max {np.max(changes):.4f}); re-saving at quality "
                 f"95 {np.mean(noises):.4f} (max {np.max(noises):.4f}); {len(changes)} files")
    print(lines[-1], flush=True)
    prep_ms = {label: 1000 * np.mean([best_time(lambda: prep(load_rgb(p, s)), 1) for p in phone_paths[:12]])
               for label, s in (("full size", None), ("reduced", size))}
    batch = torch.stack([prep(load_rgb(p, size)) for p in phone_paths[:16]])
    with torch.inference_mode():
        model.encode_image(batch[:2])  # warm-up
        forward_ms = 1000 * best_time(lambda: model.encode_image(batch), 2) / len(batch)
    full, reduced = prep_ms["full size"] + forward_ms, prep_ms["reduced"] + forward_ms
    lines.append(f"CLIP ViT-B/16 per {PHONE[0]}x{PHONE[1]} file (1 thread; reading and forward run one after the "
                 f"other): read + preprocess {prep_ms['full size']:.0f} ms full size, {prep_ms['reduced']:.0f} ms "
                 f"reduced; forward {forward_ms:.0f} ms (batch 16); total {full:.0f} -> {reduced:.0f} ms "
                 f"({full / reduced:.2f}x)")
    print(lines[-1], flush=True)


def main():
    import torch
    from PIL import Image

    import ood_core.features as features
    from ood_core.images import DECODE_MARGIN, decode_size, load_rgb

    torch.set_num_threads(1)
    ext = features.PyramidExtractor("tf_efficientnet_lite0", levels=None, mode="pool", grid=2)
    size = decode_size(ext.transform)
    lines = [f"JPEG decoding at reduced scale: decode_size {size} (margin {DECODE_MARGIN} x the transform's resize); "
             "time of load_rgb + transform (best of 3), relative embedding change |e - e_full| / |e_full|",
             f"{'photo':22} {'file size':>11} {'decoded':>11} {'full ms':>8} {'reduced ms':>10} {'change':>7} "
             f"{'q95 re-save':>11} {'margin 1':>8}"]
    print("\n".join(lines), flush=True)
    t0 = time.time()

    def embed(img):
        return ext.embed_images([img])[0]

    changes, noises, tight, made = [], [], [], []
    photos = real_photos()
    with tempfile.TemporaryDirectory() as tmp:
        for name, px in photos.items():
            for scale in SCALES:
                h, w = px.shape[:2]
                if min(h, w) * scale > 6000:
                    continue
                img = Image.fromarray(px).resize((w * scale, h * scale), Image.BICUBIC) if scale > 1 else \
                    Image.fromarray(px)
                path, resaved = os.path.join(tmp, f"{name}_{scale}.jpg"), os.path.join(tmp, f"{name}_{scale}_95.jpg")
                img.save(path, quality=90)
                img.save(resaved, quality=95)
                full, reduced = load_rgb(path), load_rgb(path, size)
                if reduced.size == full.size:
                    continue  # too small to be reduced: decoded as before
                t_full = best_time(lambda: ext.transform(load_rgb(path)))
                t_red = best_time(lambda: ext.transform(load_rgb(path, size)))
                e_full = embed(full)
                norm = float(np.linalg.norm(e_full))
                change = float(np.linalg.norm(embed(reduced) - e_full)) / norm
                noise = float(np.linalg.norm(embed(load_rgb(resaved)) - e_full)) / norm
                one = float(np.linalg.norm(embed(load_rgb(path, size // DECODE_MARGIN)) - e_full)) / norm
                changes.append(change), noises.append(noise), tight.append(one)
                made.append((f"{name} x{scale}", path, resaved))
                line = (f"{name + f' x{scale}':22} {f'{full.size[0]}x{full.size[1]}':>11} "
                        f"{f'{reduced.size[0]}x{reduced.size[1]}':>11} {1000 * t_full:8.0f} {1000 * t_red:10.0f} "
                        f"{change:7.3f} {noise:11.3f} {one:8.3f}")
                lines.append(line)
                print(line, flush=True)
        lines.append(f"mean change {np.mean(changes):.3f} (max {np.max(changes):.3f}); re-saving at quality 95 "
                     f"{np.mean(noises):.3f} (max {np.max(noises):.3f}); margin 1 {np.mean(tight):.3f} "
                     f"(max {np.max(tight):.3f}); {len(changes)} files")
        print(lines[-1], flush=True)

        # end to end: 48 phone-sized files, one decoding worker, full size against reduced
        arrays, paths = list(photos.values()), []
        for i in range(48):
            path = os.path.join(tmp, f"phone_{i}.jpg")
            Image.fromarray(arrays[i % len(arrays)]).resize(PHONE, Image.BICUBIC).save(path, quality=90)
            paths.append(path)
        rates = {}
        for label, min_side in (("full size", None), ("reduced", size)):
            ext.decode_size = min_side
            ext.extract(paths[:8], batch_size=8, num_workers=1, progress=False)  # warm-up
            t = time.perf_counter()
            ext.extract(paths, batch_size=16, num_workers=1, progress=False)
            rates[label] = len(paths) / (time.perf_counter() - t)
        ext.decode_size = size
        lines.append(f"extractor end to end, 48 files of {PHONE[0]}x{PHONE[1]} (1 decoding worker, batch 16): "
                     f"full size {rates['full size']:.1f} images/s, reduced {rates['reduced']:.1f} images/s "
                     f"({rates['reduced'] / rates['full size']:.1f}x)")
        print(lines[-1], flush=True)
        clip_section(made, paths, lines)
    lines.append(f"wall time {time.time() - t0:.0f} s")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
