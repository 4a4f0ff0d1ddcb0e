"""A small, deterministic, graded-relevance corpus for the quickstart (synthetic; a test bed).

Text is built from real English words so that a pretrained encoder (all-MiniLM-L6-v2) embeds it
meaningfully. Each passage is about one *topic* (astronomy, cooking, ...) and one *aspect*
(history, cost, safety, ...). Aspects come in related pairs (history~culture, cost~buying,
safety~health). A query asks about a topic and an aspect; the grade of a passage for a query is

    3  same topic and same aspect
    2  same topic, related aspect
    1  same topic, another aspect
    0  another topic (a few sampled per query: judged negatives)

Every passage of the query's topic is judged, so every query has judged documents of all four
grades. Passages mix on-topic sentences with filler and sentences about a distractor topic at
three strengths, so the task is not trivially lexical. A share of the queries is held out:

    <out_root>/train/   docs.tsv, queries.tsv, qrels.txt, meta.json   (training queries)
    <out_root>/test/    the same docs.tsv; held-out queries and their qrels

(the local dataset layout of docs/internals.md). Everything comes from one seeded
``numpy.random.Generator``, so the same parameters give byte-identical files. Nothing is
registered here: the caller registers the two directories (pairrel.data.registry).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pairrel.io import atomic_dir

TOPICS: dict[str, tuple[str, ...]] = {
    "astronomy": ("telescope", "planet", "galaxy", "comet", "orbit", "star"),
    "cooking": ("recipe", "oven", "flour", "sauce", "kitchen", "spice"),
    "gardening": ("soil", "seed", "tomato", "compost", "shovel", "flower"),
    "sailing": ("boat", "sail", "harbor", "anchor", "mast", "yacht"),
    "chess": ("bishop", "knight", "pawn", "checkmate", "chessboard", "rook"),
    "photography": ("camera", "lens", "shutter", "aperture", "portrait", "tripod"),
    "volcanoes": ("lava", "magma", "eruption", "crater", "ash", "volcano"),
    "beekeeping": ("hive", "honey", "beeswax", "pollen", "beekeeper", "swarm"),
    "cycling": ("bicycle", "pedal", "helmet", "gear", "saddle", "cyclist"),
    "coffee": ("espresso", "bean", "roast", "grinder", "barista", "caffeine"),
    "trains": ("locomotive", "railway", "station", "carriage", "track", "conductor"),
    "jazz": ("saxophone", "trumpet", "improvisation", "swing", "drummer", "melody"),
    "skiing": ("slope", "snow", "ski", "chairlift", "powder", "avalanche"),
    "dinosaurs": ("fossil", "skeleton", "predator", "jurassic", "bone", "paleontologist"),
    "knitting": ("yarn", "needle", "wool", "stitch", "sweater", "scarf"),
    "surfing": ("wave", "surfboard", "beach", "tide", "reef", "surfer"),
    "tea": ("teapot", "leaf", "kettle", "brew", "infusion", "teacup"),
    "pottery": ("clay", "kiln", "glaze", "vase", "ceramic", "potter"),
    "fishing": ("rod", "bait", "trout", "hook", "angler", "salmon"),
    "weather": ("storm", "rain", "forecast", "thunder", "cloud", "hurricane"),
    "robots": ("robot", "sensor", "motor", "circuit", "algorithm", "automation"),
    "horses": ("horse", "stable", "pony", "rider", "gallop", "hoof"),
    "wine": ("vineyard", "grape", "cellar", "vintage", "barrel", "sommelier"),
    "bridges": ("bridge", "cable", "steel", "span", "arch", "concrete"),
}

# Aspects in related pairs: aspect 2k is related to aspect 2k+1.
ASPECTS: dict[str, tuple[str, ...]] = {
    "history": ("history", "ancient origins", "past century", "old tradition", "early pioneers"),
    "culture": ("culture", "local festival", "community custom", "annual celebration", "folk stories"),
    "cost": ("price", "cost", "budget", "expense", "cheap option"),
    "buying": ("shop", "purchase", "store", "market", "seller"),
    "safety": ("safety", "injury", "danger", "risk", "accident"),
    "health": ("health", "doctor", "fitness", "medicine", "exercise"),
}

PASSAGE_SENTENCES = (
    "Many people ask about the {a} of the {t}.",
    "The {t} has a long story when it comes to {a}.",
    "A good {t} always depends on the {a} and the {t2}.",
    "Every {t} needs careful attention to {a} before the season starts.",
    "Writers often compare the {t} with the {t2} when they explain {a}.",
    "In this guide we describe how the {t} affects {a}.",
    "Local clubs share advice on {a} for every {t} and {t2}.",
    "Nobody forgets a first {t}, and the {a} is what they remember.",
)
FILLER_SENTENCES = (
    "This page was updated last month.",
    "Readers can find more notes below.",
    "The article continues with several examples.",
    "Some of these details surprised the authors.",
    "Please share your own experience in the comments.",
)
QUERY_TEMPLATES = (
    "what is the {a} of a {t}",
    "{a} of the {t} and {t2}",
    "how does {a} matter for a {t}",
    "tips about {t} {a}",
    "why is {a} important when choosing a {t}",
)
# fraction of a passage's sentences that are on its topic and aspect, by strength
STRENGTHS = (1.0, 0.67, 0.5)

QRELS_DEFS = {
    "0": "Irrelevant: another topic.",
    "1": "Related: same topic, another aspect.",
    "2": "Highly relevant: same topic, a related aspect.",
    "3": "Perfectly relevant: same topic and aspect.",
}
INSTRUCTION = "Given a question about a hobby or subject, retrieve passages that answer it"


def grade(query_topic: int, query_aspect: int, doc_topic: int, doc_aspect: int) -> int:
    """Relevance grade 0-3 of a (topic, aspect) passage for a (topic, aspect) query."""
    if query_topic != doc_topic:
        return 0
    if query_aspect == doc_aspect:
        return 3
    if query_aspect // 2 == doc_aspect // 2:  # aspects are related in pairs (0,1), (2,3), (4,5)
        return 2
    return 1


def _sentence(rng: np.random.Generator, topic_words, other_words, aspect_words) -> str:
    template = PASSAGE_SENTENCES[rng.integers(len(PASSAGE_SENTENCES))]
    return template.format(
        t=topic_words[rng.integers(len(topic_words))],
        t2=other_words[rng.integers(len(other_words))],
        a=aspect_words[rng.integers(len(aspect_words))],
    )


def _passage(rng, topic_words, aspect_words, distractor_words, distractor_aspect) -> str:
    n_sentences = int(rng.integers(3, 6))
    n_on_topic = max(1, round(n_sentences * STRENGTHS[rng.integers(len(STRENGTHS))]))
    sentences = [_sentence(rng, topic_words, topic_words, aspect_words) for _ in range(n_on_topic)]
    for _ in range(n_sentences - n_on_topic):
        if rng.random() < 0.5:
            sentences.append(FILLER_SENTENCES[rng.integers(len(FILLER_SENTENCES))])
        else:
            sentences.append(_sentence(rng, distractor_words, distractor_words, distractor_aspect))
    order = rng.permutation(len(sentences))
    return " ".join(sentences[i] for i in order)


def _query(rng, topic_words, aspect_words) -> str:
    template = QUERY_TEMPLATES[rng.integers(len(QUERY_TEMPLATES))]
    return template.format(
        t=topic_words[rng.integers(len(topic_words))],
        t2=topic_words[rng.integers(len(topic_words))],
        a=aspect_words[rng.integers(len(aspect_words))],
    )


def _write_split(directory: Path, docs_tsv: str, queries: list, qrels: list, meta: dict) -> None:
    directory.mkdir(parents=True)
    (directory / "docs.tsv").write_text(docs_tsv, encoding="utf-8")
    (directory / "queries.tsv").write_text("".join(f"{qid}\t{text}\n" for qid, text in queries), encoding="utf-8")
    (directory / "qrels.txt").write_text("".join(f"{qid} 0 {did} {g}\n" for qid, did, g in qrels), encoding="utf-8")
    (directory / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def generate(
    out_root: str | Path,
    seed: int = 0,
    n_topics: int = 24,
    n_passages: int = 600,
    n_queries: int = 300,
    test_fraction: float = 0.25,
    negatives_per_query: int = 5,
) -> dict[str, Path]:
    """Write the corpus to ``<out_root>/train`` and ``<out_root>/test``; returns those paths.

    Atomic: everything is written in a temporary sibling folder that then replaces ``out_root``.
    Each topic gets every aspect at least once (passages are dealt round-robin), so each query
    has judged passages of grades 3, 2 and 1, plus ``negatives_per_query`` grade-0 passages.
    """
    n_aspects = len(ASPECTS)
    if not 2 <= n_topics <= len(TOPICS):
        raise ValueError(f"n_topics must be between 2 and {len(TOPICS)}, got {n_topics}")
    if n_passages < n_topics * n_aspects:
        raise ValueError(f"n_passages must be at least n_topics * {n_aspects} = {n_topics * n_aspects}, got {n_passages}")
    if not 0 < test_fraction < 1 or n_queries < 2:
        raise ValueError(f"need n_queries >= 2 and 0 < test_fraction < 1, got {n_queries}, {test_fraction}")
    rng = np.random.default_rng(seed)
    topic_words = list(TOPICS.values())[:n_topics]
    aspect_words = list(ASPECTS.values())

    # passage i: topic i % n_topics, aspect (i // n_topics) % n_aspects -> every (topic, aspect) covered
    doc_labels, doc_lines = [], []
    for i in range(n_passages):
        topic, aspect = i % n_topics, (i // n_topics) % n_aspects
        distractor = (topic + 1 + int(rng.integers(n_topics - 1))) % n_topics
        text = _passage(rng, topic_words[topic], aspect_words[aspect], topic_words[distractor],
                        aspect_words[int(rng.integers(n_aspects))])
        doc_labels.append((topic, aspect))
        doc_lines.append(f"d{i:05d}\t{text}\n")
    docs_by_topic = [[i for i, (t, _) in enumerate(doc_labels) if t == topic] for topic in range(n_topics)]

    combos = [(t, a) for t in range(n_topics) for a in range(n_aspects)]
    combo_order = rng.permutation(len(combos))
    queries, qrels_by_query = [], []
    for j in range(n_queries):
        topic, aspect = combos[combo_order[j % len(combos)]]
        qid = f"q{j:04d}"
        queries.append((qid, _query(rng, topic_words[topic], aspect_words[aspect])))
        others = [i for i in range(n_passages) if doc_labels[i][0] != topic]
        negatives = sorted(rng.choice(others, size=min(negatives_per_query, len(others)), replace=False).tolist())
        judged = sorted(docs_by_topic[topic] + negatives)
        qrels_by_query.append([(qid, f"d{i:05d}", grade(topic, aspect, *doc_labels[i])) for i in judged])

    n_test = max(1, round(n_queries * test_fraction))
    test_ids = set(rng.permutation(n_queries)[:n_test].tolist())
    docs_tsv = "".join(doc_lines)
    params = {"seed": seed, "n_topics": n_topics, "n_passages": n_passages, "n_queries": n_queries,
              "test_fraction": test_fraction, "negatives_per_query": negatives_per_query}

    out_root = Path(out_root)
    with atomic_dir(out_root) as tmp:  # whole or absent; the umask's modes (not mkdtemp's 0700)
        for split, wanted in (("train", False), ("test", True)):
            picked = [j for j in range(n_queries) if (j in test_ids) == wanted]
            meta = {"qrels_defs": QRELS_DEFS, "max_grade": 3, "instruction": INSTRUCTION, "split": split,
                    "description": "pairrel quickstart: a synthetic demonstration corpus, not real data",
                    "generator": params}
            _write_split(tmp / split, docs_tsv, [queries[j] for j in picked],
                         [row for j in picked for row in qrels_by_query[j]], meta)
    return {"train": out_root / "train", "test": out_root / "test"}

