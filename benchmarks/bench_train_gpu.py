"""Training-step throughput at the paper's shapes: GradCache chunking, no GradCache, and a plain
transformers + peft loop, all in one process, on the same batches. The baseline every ratio is
taken against is named in the output: "pairrel, GradCache, 32 texts (old)".

Shapes (random init, no hub: a Llama of the real sizes and a word-level tokenizer, so token
counts are exact): Sheared-LLaMA-1.3B (64 queries + 128 passages per step) and Llama-3-8B
(128 + 256). The LLM2Vec recipe: LoRA r 16 on every projection, dropout 0.05, bf16 on CUDA,
≤ 512 tokens, queries of 8–40 words and passages of 40–400 words, softmax loss.

Paths, each a pairrel ``Trainer.step`` unless said otherwise:
  gc-count      GradCache, 32 texts per chunk in arrival order, gradient checkpointing (old)
  gc-tokens     GradCache, chunks of length-sorted texts within a token budget (16,384), gc on
  gc-tokens-nogc  the same with a smaller budget (4,096) and no gradient checkpointing
  no-gc         no GradCache: one forward + backward of the whole batch, gc on
  plain         a plain transformers + peft loop on the same batches (full batch, gc on)

Columns: s/step (median after warm-up), tokens/s (real tokens, no padding), useful TFLOP/s =
4 × matmul parameters × tokens / s (forward 2N and input-gradient backward 2N per token of a
frozen base; recomputation and padding are not useful work), peak GiB (CUDA only).

Usage:
    python benchmarks/bench_train_gpu.py                 # both shapes, on the GPU
    python benchmarks/bench_train_gpu.py --shape sheared-1.3b --steps 4
    python benchmarks/bench_train_gpu.py --shape sheared-1.3b --curve 20   # bf16 loss curves, old vs new
    OMP_NUM_THREADS=1 python benchmarks/bench_train_gpu.py --tiny   # tiny shape on CPU, < 1 min (CI)
The ``--tiny`` figures only show that every path runs; they say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
VOCAB = 32000
LORA = {"r": 16, "alpha": 32, "dropout": 0.05,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
SHAPES = {
    "sheared-1.3b": dict(hidden_size=2048, intermediate_size=5504, num_hidden_layers=24, num_attention_heads=16,
                         num_key_value_heads=16, vocab_size=VOCAB),
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=VOCAB),
}
# Per shape: queries per step, and the benchmark's settings (full runs; --tiny scales down).
FULL = {"sheared-1.3b": 64, "llama3-8b": 128}
SETTINGS = {
    "full": dict(max_length=512, query_words=(8, 40), doc_words=(40, 400), chunk=32, tokens=16384, nogc_tokens=4096,
                 steps=4, warm=2, n_queries=1024),
    "tiny": dict(max_length=128, query_words=(4, 16), doc_words=(10, 100), chunk=4, tokens=512, nogc_tokens=256,
                 steps=2, warm=1, n_queries=64),
}
WORDS = [f"w{i}" for i in range(VOCAB - 4)]


def make_tokenizer():
    """Word-level tokenizer: one token per word plus BOS, so lengths are known exactly."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, **{w: i + 4 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def matmul_params(shape: str) -> int:
    s = SHAPES[shape]
    h, inter, layers = s["hidden_size"], s["intermediate_size"], s["num_hidden_layers"]
    kv = h * s["num_key_value_heads"] // s["num_attention_heads"]
    return layers * (2 * h * h + 2 * h * kv + 3 * h * inter)


def random_backbone(shape: str, dtype: torch.dtype):
    from transformers import AutoModel, LlamaConfig

    config = LlamaConfig(max_position_embeddings=2048, **SHAPES[shape])
    config.is_causal = False  # bidirectional, as pairrel.encoder loads decoders
    torch.manual_seed(0)
    with torch.device(DEVICE):
        return AutoModel.from_config(config, dtype=dtype, attn_implementation="sdpa")


class RandomWeights:
    """Stands in for pairrel.encoder's hub loader: the Trainer gets a random backbone of the
    shape (weights of these sizes cannot be downloaded here, and only their shapes matter)."""

    def __init__(self, tokenizer) -> None:
        import pairrel.encoder as encoder

        self.encoder, self.tokenizer, self.shape = encoder, tokenizer, None
        self.original = encoder._load_backbone
        encoder._load_backbone = lambda config: (random_backbone(self.shape, getattr(torch, config.dtype)), self.tokenizer)

    def restore(self) -> None:
        self.encoder._load_backbone = self.original


CURVES = {
    "old-32": dict(chunk=32),
    "old-16": dict(chunk=16),
    "new": dict(tokens=4096, checkpointing=False),
}


def loss_curves(shape: str, batch: int, steps: int, settings: dict, tokenizer, weights: RandomWeights) -> dict:
    """The same ``steps`` training steps (same data, seed and LoRA init) with the former chunking
    (32 and 16 texts per chunk, gradient checkpointing) and the new one (4,096-token budget,
    length-sorted, no checkpointing). LoRA dropout is off so that only arithmetic differs: the two
    former chunkings differ by bf16 rounding alone, which is the noise the new path is held to."""
    weights.shape = shape
    curves = {}
    with tempfile.TemporaryDirectory() as folder:
        prepared = make_source(Path(folder), settings)
        for name, kwargs in CURVES.items():
            curve = dict(settings, warm=0, steps=steps)
            curves[name] = time_trainer(shape, prepared, tokenizer, batch, curve, dropout=0.0, **kwargs)["losses"]
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
    old, old16, new = (np.array(curves[k]) for k in ("old-32", "old-16", "new"))
    noise, diff = np.abs(old16 - old) / np.abs(old), np.abs(new - old) / np.abs(old)
    result = {"losses": curves, "noise_max_rel": float(noise.max()), "new_max_rel": float(diff.max()),
              "noise_mean_rel": float(noise.mean()), "new_mean_rel": float(diff.mean())}
    print(f"loss curve, {shape} shape, {batch} queries, {steps} steps, dropout 0:")
    for step, values in enumerate(zip(*curves.values())):
        print("  step %2d  " % step + "  ".join(f"{n} {v:.5f}" for n, v in zip(curves, values)))
    print(f"  |old-16 - old-32| / old-32 (bf16 noise): max {noise.max():.2e}, mean {noise.mean():.2e}")
    print(f"  |new - old-32| / old-32:                 max {diff.max():.2e}, mean {diff.mean():.2e}", flush=True)
    return result


def make_source(folder: Path, settings: dict, seed: int = 0) -> dict:
    """A prepared source of random-word queries with 3 graded passages each."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    text = lambda lo, hi: " ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi + 1))))  # noqa: E731
    rows = []
    for qi in range(settings["n_queries"]):
        query = text(*settings["query_words"])
        for k, grade in enumerate((2, 1, 0)):
            rows.append(dict(query_id=f"q{qi}", query=query, doc_id=f"d{qi}_{k}", doc=text(*settings["doc_words"]), grade=grade))
    parquet, meta = folder / "src.parquet", folder / "src.meta.json"
    pd.DataFrame(rows).to_parquet(parquet)
    meta.write_text(json.dumps(dict(instruction="Given a web search query, retrieve relevant passages", weight=1.0, max_grade=2)))
    return {"src": {"parquet": str(parquet), "meta": str(meta)}}


def run_config(batch: int, settings: dict, prepared: dict, chunk=None, tokens=None, checkpointing=True, dropout=None,
               model_extra=None) -> dict:
    from pairrel.config import fill_run_defaults

    dtype = "bfloat16" if DEVICE == "cuda" else "float32"
    lora = LORA if dropout is None else {**LORA, "dropout": dropout}
    # the schema fills what is not set here (pairrel.config.fill_run_defaults), as for a study's run
    return fill_run_defaults({
        "experiment": "bench", "run_id": "bench", "grid": {}, "labels": "binary@1", "seed": 42, "fold": None,
        "dir": "",  # set by time_trainer to its temporary run folder
        "model": {"name_or_path": "random", "kind": "decoder", "max_length": settings["max_length"], "template": "{text}",
                  "dtype": dtype, "gradient_checkpointing": checkpointing, "lora": lora, **(model_extra or {})},
        "data": {"sources": {}}, "loss": {"type": "softmax", "temperature": 0.02}, "prepared": prepared,
        "training": {"steps": 1000, "batch_size": batch, "gradcache_chunk": chunk, "gradcache_tokens": tokens, "n_negatives": 1,
                     "learning_rate": 2e-4, "loss_learning_rate": None, "warmup_steps": 300, "weight_decay": 0.0,
                     "max_grad_norm": None, "checkpoint_every": 1000, "log_every": 1, "num_threads": None},
    })


def instructed(texts: list[str], instruction) -> list[str]:
    """``"{instruction}; {text}"`` per text: one instruction for all, or one per text."""
    per_text = [instruction] * len(texts) if isinstance(instruction, str) else instruction
    return [f"{i}; {t}" if i else t for i, t in zip(per_text, texts)]


def batch_tokens(tokenizer, batch, max_length: int) -> int:
    """Real tokens of a step (what the encoder sees, no padding)."""
    texts = instructed(batch.queries, batch.instruction) + instructed(batch.docs, batch.doc_instruction)
    return sum(min(max_length, len(ids)) for ids in tokenizer(texts)["input_ids"])


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def reset_peak() -> None:
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if DEVICE == "cuda" else float("nan")


def summary(shape: str, times: list[float], tokens: list[int]) -> dict:
    seconds = statistics.median(times)
    per_step = float(np.mean(tokens))
    return dict(s_per_step=seconds, tokens_per_step=per_step, tokens_per_s=per_step / seconds,
                useful_tflops=4 * matmul_params(shape) * per_step / seconds / 1e12, peak_gib=peak_gib())


def time_trainer(shape, prepared, tokenizer, batch, settings, **run_kwargs) -> dict:
    from pairrel.train import Trainer

    reset_peak()
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer({**run_config(batch, settings, prepared, **run_kwargs), "dir": run_dir}, run_dir, progress=False)
        times, tokens, losses = [], [], []
        for b in trainer.batcher.iter_steps(settings["warm"] + settings["steps"]):
            sync()
            start = time.perf_counter()
            loss = trainer.step(b)
            sync()
            elapsed = time.perf_counter() - start
            if b.step >= settings["warm"]:
                times.append(elapsed)
                tokens.append(batch_tokens(tokenizer, b, settings["max_length"]))
                losses.append(float(loss))
        result = summary(shape, times, tokens)
        del trainer
    return {**result, "losses": losses}


def time_plain(shape, prepared, tokenizer, batch, settings) -> dict:
    """What one writes without pairrel: transformers + peft, full batch, InfoNCE on one positive."""
    from peft import LoraConfig, get_peft_model

    from pairrel.data.batching import SourceBatcher, load_prepared_source

    reset_peak()
    dtype = torch.bfloat16 if DEVICE == "cuda" else torch.float32
    model = get_peft_model(random_backbone(shape, dtype), LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"],
                           lora_dropout=LORA["dropout"], target_modules=LORA["target_modules"]))
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    sources = {name: load_prepared_source(files["parquet"], files["meta"]) for name, files in prepared.items()}
    batcher = SourceBatcher(sources, batch_size=batch, n_negatives=1, label_granularity="binary@1", seed=42)

    def embed(texts):
        inputs = tokenizer(texts, padding=True, truncation=True, max_length=settings["max_length"], return_tensors="pt").to(DEVICE)
        inputs.pop("token_type_ids", None)
        hidden = model(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return ((hidden * mask).sum(1) / mask.sum(1)).float()

    times, tokens = [], []
    for b in batcher.iter_steps(settings["warm"] + settings["steps"]):
        sync()
        start = time.perf_counter()
        q, d = embed(instructed(b.queries, b.instruction)), embed(instructed(b.docs, b.doc_instruction))
        logits = F.normalize(q, dim=-1) @ F.normalize(d, dim=-1).T / 0.02
        targets = b.targets.to(DEVICE)
        loss = -(targets / targets.sum(1, keepdim=True) * F.log_softmax(logits, 1)).sum(1).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        if b.step >= settings["warm"]:
            times.append(time.perf_counter() - start)
            tokens.append(batch_tokens(tokenizer, b, settings["max_length"]))
    result = summary(shape, times, tokens)
    del model, optimizer
    return result


def bench_shape(shape: str, label: str, batch: int, settings: dict, tokenizer, weights: RandomWeights, only: set[str] | None) -> dict:
    weights.shape = shape
    paths = {
        "gc-count": lambda p: time_trainer(shape, p, tokenizer, batch, settings, chunk=settings["chunk"]),
        "gc-tokens": lambda p: time_trainer(shape, p, tokenizer, batch, settings, tokens=settings["tokens"]),
        "gc-tokens-nogc": lambda p: time_trainer(shape, p, tokenizer, batch, settings, tokens=settings["nogc_tokens"], checkpointing=False),
        "no-gc": lambda p: time_trainer(shape, p, tokenizer, batch, settings),
        "plain": lambda p: time_plain(shape, p, tokenizer, batch, settings),
    }
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        prepared = make_source(Path(folder), settings)
        for name, run in paths.items():
            if only and name not in only:
                continue
            try:
                results[name] = run(prepared)
            except torch.OutOfMemoryError as err:  # a path that does not fit is a result too
                results[name] = {"error": f"out of memory: {str(err).splitlines()[0]}"}
            print(f"  {label} {name}: {json.dumps({k: v for k, v in results[name].items() if k != 'losses'})}", flush=True)
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
    return results


DESCRIPTIONS = {
    "gc-count": "pairrel, GradCache, {chunk} texts (old)",
    "gc-tokens": "pairrel, GradCache, {tokens}-token budget, sorted",
    "gc-tokens-nogc": "pairrel, GradCache, {nogc_tokens}-token budget, no grad. checkpointing",
    "no-gc": "pairrel, no GradCache",
    "plain": "plain transformers + peft loop, no GradCache",
}


def table(all_results: dict, settings: dict) -> str:
    lines = ["| shape | path | s/step | tokens/s | useful TFLOP/s | peak GiB | s/step vs gc-count | vs plain |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for label, results in all_results.items():
        base, plain = results.get("gc-count", {}), results.get("plain", {})
        for name, r in results.items():
            path = DESCRIPTIONS[name].format(**settings)
            if "error" in r:
                lines.append(f"| {label} | {path} | {r['error']} | | | | | |")
                continue
            vs_base = f"{r['s_per_step'] / base['s_per_step']:.2f}×" if "s_per_step" in base else "–"
            vs_plain = f"{r['s_per_step'] / plain['s_per_step']:.2f}×" if "s_per_step" in plain else "–"
            peak = "–" if math.isnan(r["peak_gib"]) else f"{r['peak_gib']:.1f}"
            lines.append(f"| {label} | {path} | {r['s_per_step']:.3f} | {r['tokens_per_s']:,.0f} | {r['useful_tflops']:.3g} "
                         f"| {peak} | {vs_base} | {vs_plain} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny random Llama, short texts: any machine, < 1 min, not a measurement")
    parser.add_argument("--shape", choices=[*FULL, "all"], default="all")
    parser.add_argument("--only", nargs="+", choices=list(DESCRIPTIONS), help="run only these paths")
    parser.add_argument("--steps", type=int, help="timed steps per path (after the warm-up steps)")
    parser.add_argument("--warm", type=int, help="untimed warm-up steps per path")
    parser.add_argument("--curve", type=int, metavar="STEPS",
                        help="instead of timing: loss curves over STEPS steps, former vs new chunking (first --shape)")
    parser.add_argument("--curve-batch", type=int, default=16, help="queries per step of the loss curves")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    settings = dict(SETTINGS["tiny" if args.tiny else "full"])
    if args.steps:
        settings["steps"] = args.steps
    if args.warm is not None:
        settings["warm"] = args.warm
    import transformers

    device = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu"
    print(f"device: {device}; torch {torch.__version__}, transformers {transformers.__version__}", flush=True)
    tokenizer = make_tokenizer()
    weights = RandomWeights(tokenizer)
    # --tiny: one tiny shape stands in for both (the paths, not the shapes, are what it checks)
    shapes = ["tiny"] if args.tiny else list(FULL) if args.shape == "all" else [args.shape]
    all_results = {}
    if args.curve:
        try:
            result = loss_curves(shapes[0], args.curve_batch, args.curve, settings, tokenizer, weights)
        finally:
            weights.restore()
        if args.json:
            args.json.write_text(json.dumps({"device": device, "curve": result}, indent=1))
        return 0
    try:
        for shape in shapes:
            label = f"{shape} shape"
            batch = 8 if args.tiny else FULL[shape]
            print(f"{label}: {batch} queries + {2 * batch} passages per step", flush=True)
            all_results[label] = bench_shape(shape, label, batch, settings, tokenizer, weights, set(args.only) if args.only else None)
    finally:
        weights.restore()
    print()
    print(table(all_results, settings))
    if args.tiny:
        print("\n(--tiny: tiny random model on", device, "- the figures only show that every path runs.)")
    if args.json:
        args.json.write_text(json.dumps({"device": device, "settings": settings, "results": all_results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
