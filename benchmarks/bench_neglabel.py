"""Benchmark: vocabulary text encoding (cold vs cached) and NegLabel scoring throughput.

Usage (from the repository root):

    .venv/bin/python benchmarks/bench_neglabel.py
    .venv/bin/python benchmarks/bench_neglabel.py --checkpoint /path/ViT-B-16.safetensors \
        --model ViT-B-16 --quick-gelu --max-words 20000

(a) encodes the WordNet vocabulary (nouns with "the nice {}", adjectives with
"This is a {} photo") through ``cached_text_embeddings`` twice: a cold run into an
empty cache directory, then a cached run. Without ``--checkpoint`` a tiny randomly
initialised open_clip model is used (timings then measure the pipeline, not CLIP).
(b) times ``neglabel_ood_score`` on random unit embeddings (default 5,000 images,
1,000 ID labels, 10,000 negatives, 100 groups, dim 512) and reports images/s.
"""

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TINY = "bench-tiny-clip"
TINY_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_checkpoint(folder):
    import open_clip
    import torch
    from safetensors.torch import save_file

    cfg = folder / f"{TINY}.json"
    cfg.write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    logging.disable(logging.WARNING)  # "initialized randomly" is the point here
    try:
        model = open_clip.create_model(TINY)
    finally:
        logging.disable(logging.NOTSET)
    path = folder / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def bench_vocabulary(args, workdir):
    import torch

    from ood_core.clip.encoder import CLIPEncoder
    from ood_core.clip.lexicon import load_lexicon
    from ood_core.clip.neglabel import DEFAULT_TEMPLATES
    from ood_core.clip.text_cache import cached_text_embeddings

    if args.checkpoint:
        model_name, ckpt = args.model, args.checkpoint
    else:
        model_name, ckpt = TINY, tiny_checkpoint(workdir)
    t = time.perf_counter()
    lex = load_lexicon(cache_dir=workdir, vocabulary=args.vocabulary)
    t_lex = time.perf_counter() - t
    words, pos = lex.words, lex.pos
    if args.max_words and args.max_words < len(words):
        # An even sample keeps the noun/adjective mix.
        keep = np.linspace(0, len(words) - 1, args.max_words).astype(int)
        words, pos = [words[i] for i in keep], [pos[i] for i in keep]
    t = time.perf_counter()
    enc = CLIPEncoder(model_name, pretrained=str(ckpt), quick_gelu=args.quick_gelu or None)
    t_load = time.perf_counter() - t
    cache = workdir / "cache"
    t = time.perf_counter()
    cold = cached_text_embeddings(enc, words, pos, DEFAULT_TEMPLATES, cache_dir=cache,
                                  batch_size=args.text_batch_size)
    t_cold = time.perf_counter() - t
    t = time.perf_counter()
    warm = cached_text_embeddings(enc, words, pos, DEFAULT_TEMPLATES, cache_dir=cache)
    t_warm = time.perf_counter() - t
    assert np.array_equal(cold, warm)
    n_noun = sum(p == "noun" for p in pos)
    print(f"(a) vocabulary encoding  model={model_name} weights={Path(ckpt).name} "
          f"torch_threads={torch.get_num_threads()}")
    print(f"    lexicon: {lex.source}; {len(lex)} words loaded in {t_lex:.1f} s")
    print(f"    encoded {len(words)} words ({n_noun} nouns, {len(words) - n_noun} adjectives), "
          f"dim {cold.shape[1]}; model load {t_load:.2f} s")
    print(f"    cold (encode + write cache): {t_cold:.2f} s = {len(words) / t_cold:,.0f} words/s")
    print(f"    cached (read .npy):          {t_warm:.3f} s  ({t_cold / t_warm:,.0f}x faster)")


def bench_scoring(args):
    from ood_core.clip.neglabel import neglabel_ood_score

    rng = np.random.default_rng(0)

    def rand_unit(n):
        x = rng.standard_normal((n, args.dim)).astype(np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    img, ids, neg = rand_unit(args.images), rand_unit(args.id_labels), rand_unit(args.negatives)
    neglabel_ood_score(img[:100], ids, neg, num_groups=args.groups)  # warm-up
    t = time.perf_counter()
    scores = neglabel_ood_score(img, ids, neg, num_groups=args.groups)
    dt = time.perf_counter() - t
    assert scores.shape == (args.images,) and np.isfinite(scores).all()
    print(f"(b) NegLabel scoring  {args.images} images x {args.negatives} negatives, "
          f"{args.id_labels} ID labels, {args.groups} groups, dim {args.dim}")
    print(f"    {dt:.2f} s = {args.images / dt:,.0f} images/s")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", help="local CLIP weights file (default: tiny random model)")
    p.add_argument("--model", default="ViT-B-16", help="open_clip model name for --checkpoint")
    p.add_argument("--quick-gelu", action="store_true", help="OpenAI weights in a file")
    p.add_argument("--max-words", type=int, default=0,
                   help="encode an even sample of this many words (0 = whole lexicon)")
    p.add_argument("--text-batch-size", type=int, default=256)
    p.add_argument("--vocabulary", default="paper", choices=("paper", "all"),
                   help="WordNet vocabulary: NegLabel's protocol (82,617 words) or all (139,277)")
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--negatives", type=int, default=10000)
    p.add_argument("--id-labels", type=int, default=1000)
    p.add_argument("--groups", type=int, default=100)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--skip-vocab", action="store_true")
    args = p.parse_args()
    print(f"python {sys.version.split()[0]}, cpus={os.cpu_count()}, "
          f"MALLOC_MMAP_THRESHOLD_={os.environ.get('MALLOC_MMAP_THRESHOLD_', 'unset')}")
    if not args.skip_vocab:
        with tempfile.TemporaryDirectory(prefix="bench-neglabel-") as d:
            bench_vocabulary(args, Path(d))
    bench_scoring(args)


if __name__ == "__main__":
    main()
