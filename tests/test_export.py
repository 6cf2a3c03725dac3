"""`sblite merge` and `sblite export --gguf`: merge check, GGUF writer for llama/qwen2/qwen3 verified by
transformers, Modelfile, provenance, refusals. llama.cpp checks are `slow` and need llama-cpp-python."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sblite import export as ex
from sblite import protocol
from sblite.cli import app
from sblite.export import checks, common, vocab, writer

runner = CliRunner()
HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None


def _make_adapter(base_dir: Path, out: Path, seed: int = 1) -> Path:
    """A LoRA adapter with non-zero weights on ``base_dir`` (what `sblite train` leaves in RUN_DIR/sft)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    peft_model = get_peft_model(model, cfg)
    peft_model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A RUN_DIR as `sblite train` writes it: resolved recipe, provenance with the reward, sft/ adapter."""
    run = tmp_path_factory.mktemp("run")
    _make_adapter(tiny_model_dir, run / "sft")
    recipe = {
        "name": "tiny-test",
        "model": {"name_or_path": str(tiny_model_dir), "instruction_in_user": False},
        "grpo": {"max_completion_length": 96},
    }
    (run / "recipe.resolved.yaml").write_text(yaml.safe_dump(recipe))
    (run / "provenance.json").write_text(json.dumps({"recipe": "tiny-test", "reward": {"alpha_start": 6.0}}))
    return run


@pytest.fixture(scope="module")
def merged(tmp_path_factory, run_dir) -> ex.MergeResult:
    return ex.merge_adapter(run_dir, tmp_path_factory.mktemp("m") / "merged")


def _qwen3_dir(root: Path, tiny_model_dir: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen3Config

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    cfg = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        tie_word_embeddings=False,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    out = root / "tiny-qwen3"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    from sblite.models import resolve_model

    return {
        "llama": tiny_model_dir,
        "qwen2": Path(resolve_model("builtin:tiny-random-qwen2")),
        "qwen3": _qwen3_dir(tmp_path_factory.mktemp("q3"), tiny_model_dir),
    }


def _fields(path: Path) -> dict:
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    return {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}, r


# ------------------------------------------------------------------------------------------- merge


def test_merge_matches_adapter_and_writes_provenance(merged, run_dir):
    assert merged.check["passed"] and merged.check["rel_logit_diff"] <= 1e-4
    assert merged.check["top1_agreement"] == 1.0
    out = merged.out
    assert {"config.json", "model.safetensors", "tokenizer.json", common.PROVENANCE_NAME} <= {
        p.name for p in out.iterdir()
    }
    prov = json.loads((out / common.PROVENANCE_NAME).read_text())
    assert prov["source"]["run_dir"] == str(run_dir)
    assert prov["source"]["recipe"]["name"] == "tiny-test"
    assert prov["source"]["reward"] == {"alpha_start": 6.0}
    assert (
        prov["sha256"]["model.safetensors"]
        == hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    )


def test_merged_model_differs_from_base_and_equals_adapter_logits(merged, run_dir, tiny_model_dir):
    """The adapter is really in the weights: the merged model is not the base model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(merged.out)
    ids = tok(protocol.render_prompt(tok, "What is 2 + 3?"), return_tensors="pt").input_ids
    with torch.no_grad():
        m = AutoModelForCausalLM.from_pretrained(merged.out)(ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
        b = base(ids).logits
        a = PeftModel.from_pretrained(base, run_dir / "sft")(ids).logits
    assert (m - b).abs().max() > 1e-3
    assert (m - a).abs().max() < 1e-4


def test_merge_refuses_to_overwrite_without_force(merged, run_dir):
    with pytest.raises(ex.ExportError, match="--force"):
        ex.merge_adapter(run_dir, merged.out)


def test_merge_force_overwrites_and_bf16_is_checked(tmp_path, run_dir):
    out = tmp_path / "m"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    r = ex.merge_adapter(run_dir, out, "bf16", force=True)
    assert not (out / "stale.txt").exists()
    assert r.dtype == "bfloat16" and r.check["tolerance"] == checks.MERGE_TOLERANCE["bfloat16"]
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_merge_checks_disk_space_before_writing(tmp_path, run_dir, monkeypatch):
    monkeypatch.setattr(common, "_free_bytes", lambda _p: 1024)
    with pytest.raises(ex.ExportError, match="not enough disk space"):
        ex.merge_adapter(run_dir, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_merge_refuses_a_plain_model_and_its_own_source(tiny_model_dir, run_dir, tmp_path):
    with pytest.raises(ex.ExportError, match="not a run directory or a LoRA adapter"):
        ex.merge_adapter(tiny_model_dir, tmp_path / "x")
    with pytest.raises(ex.ExportError, match="overwrite the source"):
        ex.merge_adapter(run_dir, run_dir, force=True)
    with pytest.raises(ex.ExportError, match="--dtype"):
        ex.merge_adapter(run_dir, tmp_path / "y", "int4")


# ------------------------------------------------------------------------------------------- GGUF


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
@pytest.mark.parametrize("quant", ["f32", "f16", "q8_0"])
def test_export_round_trips_through_transformers(family, quant, family_dirs, tmp_path, monkeypatch):
    from sblite.generate import llamacpp

    monkeypatch.setattr(llamacpp, "available", lambda: False)  # the llama.cpp side is the slow test below
    r = ex.export_gguf(family_dirs[family], tmp_path, quant)
    tf = r.verification["transformers"]
    assert r.verification["passed"], r.verification
    metric, tol = checks.GGUF_TOLERANCE[quant]
    assert tf[metric] <= tol and tf["top1_agreement"] > 0.95
    if quant == "f32":
        assert tf["max_abs_logit_diff"] < 1e-5 and tf["top1_agreement"] == 1.0
    assert r.arch == family and r.pre_tokenizer == "gpt-2"
    kv, reader = _fields(r.gguf)
    assert kv["general.architecture"] == family
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["output_norm.weight"] == "F32" and types["blk.0.attn_norm.weight"] == "F32"
    assert types["blk.0.attn_q.weight"] == quant.upper()
    assert ("output.weight" in types) == (family == "qwen3")  # tied embeddings have no output tensor
    if family == "qwen2":
        assert types["blk.0.attn_q.bias"] == "F32"
    if family == "qwen3":
        assert types["blk.0.attn_q_norm.weight"] == "F32"


def test_gguf_tokenizer_metadata(family_dirs, tmp_path, tiny_tokenizer):
    res = writer.write_gguf(
        family_dirs["llama"],
        tmp_path / "t.gguf",
        "f16",
        chat_templates={"default": tiny_tokenizer.chat_template, "selfbudgeter": "x"},
    )
    kv, _ = _fields(res.path)
    assert kv["tokenizer.ggml.model"] == "gpt2" and kv["tokenizer.ggml.pre"] == "gpt-2"
    tokens = kv["tokenizer.ggml.tokens"]
    assert len(tokens) == len(tiny_tokenizer) and tokens[tiny_tokenizer.eos_token_id] == "<|im_end|>"
    assert kv["tokenizer.ggml.eos_token_id"] == tiny_tokenizer.eos_token_id
    assert kv["tokenizer.ggml.padding_token_id"] == tiny_tokenizer.pad_token_id
    assert kv["tokenizer.ggml.add_bos_token"] is False
    assert kv["tokenizer.ggml.token_type"][tiny_tokenizer.eos_token_id] == 3  # CONTROL
    assert len(kv["tokenizer.ggml.merges"]) > 100
    assert kv["tokenizer.chat_template"] == tiny_tokenizer.chat_template
    assert kv["tokenizer.chat_template.selfbudgeter"] == "x"


def test_export_run_dir_merges_writes_modelfile_and_provenance(run_dir, tmp_path, monkeypatch):
    from sblite.generate import llamacpp

    monkeypatch.setattr(llamacpp, "available", lambda: False)
    r = ex.export_gguf(run_dir, tmp_path, "q8_0", ollama=True)
    assert (
        r.merged is not None
        and r.merged.out == tmp_path / "merged"
        and r.gguf.name == f"{run_dir.name}-q8_0.gguf"
    )
    prov = json.loads(r.provenance.read_text())
    assert prov["sha256"] == hashlib.sha256(r.gguf.read_bytes()).hexdigest() == r.sha256
    assert prov["quant"] == "q8_0" and prov["source"]["run_dir"] == str(run_dir)
    assert (
        prov["source"]["reward"] == {"alpha_start": 6.0} and prov["source"]["recipe"]["name"] == "tiny-test"
    )
    assert prov["verification"]["passed"] is True
    text = r.modelfile.read_text()
    assert f"FROM ./{r.gguf.name}" in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    assert "PARAMETER num_predict 152" in text  # 1.25 × the recipe's max_completion_length 96 + 32
    assert "{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n{{ .Response }}" in text
    assert "<budget>N</budget>" in text  # the budget instruction is in the template
    # A second quant into the same --out reuses the merge of the same adapter.
    r2 = ex.export_gguf(run_dir, tmp_path, "f16", verify=False)
    assert r2.merged.reused and json.loads(r2.provenance.read_text())["verification"].startswith("skipped")


def test_export_refusals(family_dirs, tmp_path, monkeypatch, tiny_model_dir):
    from sblite.generate import llamacpp

    with pytest.raises(ex.ExportError, match="choose one of"):
        ex.export_gguf(tiny_model_dir, tmp_path, "q3_fancy")
    monkeypatch.setattr(llamacpp, "quantizer", lambda: None)
    with pytest.raises(ex.ExportError, match='CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install llama-cpp-python'):
        ex.export_gguf(tiny_model_dir, tmp_path, "q4_k_m")
    ex.export_gguf(tiny_model_dir, tmp_path, "f16", verify=False)
    with pytest.raises(ex.ExportError, match="exists; add --force"):
        ex.export_gguf(tiny_model_dir, tmp_path, "f16", verify=False)
    ex.export_gguf(tiny_model_dir, tmp_path, "f16", verify=False, force=True)
    with pytest.raises(ex.ExportError, match="not a model directory"):
        ex.export_gguf(tmp_path / "nowhere", tmp_path / "o", "f16")
    monkeypatch.setattr(common, "_free_bytes", lambda _p: 10)
    with pytest.raises(ex.ExportError, match="not enough disk space"):
        ex.export_gguf(tiny_model_dir, tmp_path / "o2", "f16")


def test_unsupported_architecture_names_the_supported_ones(tmp_path, tiny_tokenizer):
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config

    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(
        GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(tiny_tokenizer))
    ).save_pretrained(tmp_path / "gpt2")
    tiny_tokenizer.save_pretrained(tmp_path / "gpt2")
    with pytest.raises(
        ex.ExportError,
        match=r"GPT2LMHeadModel is not supported.*LlamaForCausalLM \(llama\), "
        r"Qwen2ForCausalLM \(qwen2\), Qwen3ForCausalLM \(qwen3\)",
    ):
        ex.export_gguf(tmp_path / "gpt2", tmp_path / "o", "f16")


def test_pre_tokenizer_detection_by_structure_and_refusal():
    class Tok:
        def encode(self, text, add_special_tokens=True):
            return [len(text)]

    bl = {"type": "ByteLevel", "use_regex": False}
    assert vocab.detect_pre_tokenizer(Tok(), {"pre_tokenizer": {"type": "ByteLevel"}}) == "gpt-2"
    seq = {
        "type": "Sequence",
        "pretokenizers": [{"type": "Split", "pattern": {"Regex": vocab._QWEN2_SPLIT}}, bl],
    }
    assert vocab.detect_pre_tokenizer(Tok(), {"pre_tokenizer": seq}) == "qwen2"
    digits = {
        "type": "Sequence",
        "pretokenizers": [{"type": "Digits", "individual_digits": True}, {"type": "ByteLevel"}],
    }
    assert vocab.detect_pre_tokenizer(Tok(), {"pre_tokenizer": digits}) == "smollm"
    with pytest.raises(ex.GGUFExportError, match="supported: GPT-2 byte-level"):
        vocab.detect_pre_tokenizer(Tok(), {"pre_tokenizer": {"type": "Metaspace"}})


# ------------------------------------------------------------------------------------------- CLI


def test_cli_export_and_merge_errors_are_one_red_line(tiny_model_dir, tmp_path):
    r = runner.invoke(app, ["export", str(tiny_model_dir), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--gguf" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["export", str(tiny_model_dir), "--gguf", "--quant", "q9", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "choose one of" in r.output
    r = runner.invoke(app, ["merge", str(tiny_model_dir), "--out", str(tmp_path / "m")])
    assert r.exit_code == 2 and "not a run directory" in r.output


def test_cli_export_prints_the_verification_numbers(tiny_model_dir, tmp_path):
    r = runner.invoke(
        app, ["export", str(tiny_model_dir), "--gguf", "--quant", "q8_0", "--out", str(tmp_path), "--ollama"]
    )
    assert r.exit_code == 0, r.output
    assert "transformers" in r.output and "top-1" in r.output and "sha256" in r.output
    assert "Converting and de-quantizing" not in r.output  # transformers' own bar is silenced
    assert (tmp_path / "tiny-random-q8_0.gguf").is_file() and (
        tmp_path / "tiny-random-q8_0.Modelfile"
    ).is_file()
    prov = json.loads((tmp_path / "tiny-random-q8_0.gguf.provenance.json").read_text())
    assert prov["settings"]["values"]["quant"] == "q8_0" and prov["settings"]["sources"]["quant"] == "--quant"
    assert prov["settings"]["sources"]["verify"] == "default"  # no recipe: a model dir carries none


# ------------------------------------------------------------------------------------------- llama.cpp


@pytest.mark.slow
@pytest.mark.skipif(not HAS_LLAMA_CPP, reason="llama-cpp-python not installed")
@pytest.mark.parametrize("quant", ["f32", "f16", "q8_0", "q4_k_m"])
def test_llama_cpp_loads_tokenizes_and_continues_like_transformers(run_dir, tmp_path, quant, tiny_tokenizer):
    r = ex.export_gguf(run_dir, tmp_path, quant)
    lc = r.verification["llama_cpp"]
    assert r.verification["passed"], r.verification
    assert lc["loaded"] and lc["tokenization_match"], lc["tokenization_mismatches"]
    for tag, ids in lc["budget_tag_ids"].items():
        assert ids == tiny_tokenizer(tag, add_special_tokens=False).input_ids
    if quant in ("f32", "f16"):
        assert lc["greedy_match"] and lc["greedy_tokens"] > 0
    if quant == "f32":
        assert lc["greedy_diverged_at"] is None and lc["first_step_max_abs_logit_diff"] < 1e-3


@pytest.mark.slow
@pytest.mark.skipif(not HAS_LLAMA_CPP, reason="llama-cpp-python not installed")
def test_generate_gguf_answers_from_the_exported_file(tiny_model_dir, tiny_tokenizer, tmp_path):
    from sblite.generate import llamacpp

    r = ex.export_gguf(tiny_model_dir, tmp_path, "f32", verify=False)
    prompt = protocol.render_prompt(tiny_tokenizer, "What is 2 + 3?") + protocol.prefill(12)
    (gen,) = llamacpp.generate_gguf(r.gguf, [prompt], max_new_tokens=8)
    assert gen.n_tokens == len(gen.token_ids) and 0 < gen.n_tokens <= 8
    assert gen.finish_reason in ("stop", "length")
    streamed = "".join(d for _, d in llamacpp.stream_gguf(r.gguf, prompt, max_new_tokens=8))
    assert streamed == gen.text
    # The greedy continuation is transformers' own (same f32 weights).
    import torch
    from transformers import AutoModelForCausalLM

    ids = tiny_tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    out = AutoModelForCausalLM.from_pretrained(tiny_model_dir).generate(
        ids, max_new_tokens=gen.n_tokens, do_sample=False, eos_token_id=None
    )
    assert list(gen.token_ids) == out[0, ids.shape[1] :].tolist()
    del torch
