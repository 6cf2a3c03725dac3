"""`sblite merge` and `sblite export --gguf`: merge check, GGUF writer for llama/qwen2/qwen3 verified by
transformers, Modelfile, provenance, refusals, base models without a chat template. llama.cpp checks are
`slow` and need llama-cpp-python; those on the real Qwen2.5 vocabulary (Qwen2 as DeepSeek-R1-Distill, Qwen3 at
f16, q8_0, q4_k_m) also need ../shared. The Modelfile's rendering is tested in tests/test_ollama.py."""

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
    # transformers runs the tiny BPE under a Qwen2 config with Qwen2's own split regex, and so must llama.cpp
    assert r.arch == family and r.pre_tokenizer == ("qwen2" if family == "qwen2" else "gpt-2")
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


@pytest.mark.skipif(not HAS_LLAMA_CPP, reason="llama-cpp-python not installed")
@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_gguf_splits_text_as_transformers_runs_the_tokenizer(family, family_dirs, tmp_path):
    """The tiny tokenizer.json says GPT-2 byte-level, but transformers loads it under a Qwen2 config with
    Qwen2's digit-by-digit split; llama.cpp reading the GGUF must produce the ids training saw, every family."""
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    res = writer.write_gguf(family_dirs[family], tmp_path / "t.gguf", "f16")
    tok = AutoTokenizer.from_pretrained(family_dirs[family])
    llm = Llama(model_path=str(res.path), vocab_only=True, verbose=False)
    try:
        for text in (*checks.check_prompts(tok), "What is 12 + 345? 2024 apples"):
            ids = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
            assert ids == tok(text, add_special_tokens=False).input_ids, text
    finally:
        llm.close()


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


# ------------------------------------------------------------------- base models (no chat template)


def test_cli_exports_a_base_model_without_a_chat_template(tmp_path, _sblite_cache):
    """A model without a chat template is a normal thing to export: the GGUF is written and verified on
    plain texts, without the budget template, and the export says so; the Modelfile's TEMPLATE is plain."""
    import shutil

    from sblite.models import resolve_model

    base = tmp_path / "base-qwen2"
    shutil.copytree(resolve_model("builtin:tiny-random-qwen2"), base)
    (base / "chat_template.jinja").unlink()
    assert "chat_template" not in json.loads((base / "tokenizer_config.json").read_text())
    out = tmp_path / "out"
    r = runner.invoke(app, ["export", str(base), "--gguf", "--quant", "q8_0", "--out", str(out), "--ollama"])
    assert r.exit_code == 0, r.output
    assert "Traceback" not in r.output and "Cannot use chat template" not in r.output
    assert "no chat template (a base model)" in " ".join(r.output.split())
    prov = json.loads((out / "base-qwen2-q8_0.gguf.provenance.json").read_text())
    assert prov["verification"]["passed"] is True and prov["chat_templates"] == []
    assert len(prov["notes"]) == 1 and "no chat template (a base model)" in prov["notes"][0]
    kv, _ = _fields(out / "base-qwen2-q8_0.gguf")
    assert not any(k.startswith("tokenizer.chat_template") for k in kv)
    modelfile = (out / "base-qwen2-q8_0.Modelfile").read_text()
    assert 'TEMPLATE """{{ .Prompt }}"""' in modelfile and "SYSTEM" not in modelfile


# ------------------------------------------------- Qwen2 (DeepSeek-R1-Distill) and Qwen3 on the real vocabulary



def _shared_qwen_dir(root: Path, shared_data: Path, family: str, make_r1_tokenizer) -> Path:
    """A tiny random Qwen2 or Qwen3 over the shared Qwen2.5 tokenizer: Qwen2 as DeepSeek-R1-Distill (its special
    tokens and chat template, tied embeddings), Qwen3 with ChatML (untied, q/k norms). Width 256 so that every
    matrix row is a multiple of 256 and q4_k_m really writes Q4_K (narrower rows fall back to q5_0/q8_0)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen3Config

    from sblite.models import CHATML_TEMPLATE

    if family == "qwen2":
        tok = make_r1_tokenizer()
    else:
        tok = AutoTokenizer.from_pretrained(shared_data / "tokenizers" / "qwen2")
        tok.add_special_tokens({"eos_token": "<|im_end|>", "additional_special_tokens": ["<|im_start|>"]})
        tok.chat_template = CHATML_TEMPLATE
    config_cls = Qwen2Config if family == "qwen2" else Qwen3Config
    cfg = config_cls(vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, head_dim=64, max_position_embeddings=1024,
                     tie_word_embeddings=family == "qwen2", bos_token_id=tok.bos_token_id,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.generation_config.eos_token_id = tok.eos_token_id
    out = root / f"tiny-{family}"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def shared_qwen_dirs(tmp_path_factory, shared_data, make_r1_tokenizer) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("shared-qwen")
    return {family: _shared_qwen_dir(root, shared_data, family, make_r1_tokenizer) for family in ("qwen2", "qwen3")}


def _next_token_agreement(llm, ref, tok, texts: list[str]) -> dict[str, float]:
    """llama.cpp against the float32 transformers model, next-token logits after every 8th prefix of ``texts``
    (and the whole text): max |Δlogit|, the same relative to the logit scale, and the mean KL(ref ‖ llama.cpp)."""
    import torch

    from sblite.generate import llamacpp

    diff = scale = kl = 0.0
    n = 0
    for text in texts:
        ids = protocol.encode_prompt(tok, text)
        with torch.no_grad():
            ref_logits = ref(torch.tensor([ids])).logits[0].double()
        for k in sorted({*range(8, len(ids), 8), len(ids)}):
            _, first = llamacpp.greedy(llm, ids[:k], 0)
            a, b = ref_logits[k - 1], torch.from_numpy(first[: ref_logits.shape[-1]]).double()
            diff, scale = max(diff, (a - b).abs().max().item()), max(scale, a.abs().max().item())
            kl += (a.softmax(-1) * (a.log_softmax(-1) - b.log_softmax(-1))).sum().item()
            n += 1
    return {
        "max_abs_logit_diff": diff,
        "rel_logit_diff": diff / max(1.0, scale),
        "mean_kl": kl / n,
        "positions": n,
    }


@pytest.mark.slow
@pytest.mark.skipif(not HAS_LLAMA_CPP, reason="llama-cpp-python not installed")
@pytest.mark.parametrize("quant", ["f16", "q8_0", "q4_k_m"])
@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_cli_qwen_exports_load_in_llama_cpp_with_transformers_logits(
    family, quant, shared_qwen_dirs, tmp_path
):
    """`sblite export --gguf` of a tiny Qwen2 (R1-Distill tokenizer and template) / Qwen3 on the real Qwen2.5
    vocabulary: the export's own verification passes, llama.cpp tokenizes budget-format texts (a pre-filled
    prompt included) as sblite does, and its next-token logits are transformers' within the export's own
    tolerance for that type."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sblite.generate import llamacpp

    src = shared_qwen_dirs[family]
    r = runner.invoke(app, ["export", str(src), "--gguf", "--quant", quant, "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    path = tmp_path / f"{src.name}-{quant}.gguf"
    prov = json.loads(path.with_name(path.name + ".provenance.json").read_text())
    v = prov["verification"]
    assert v["passed"] and v["llama_cpp"]["loaded"] and v["llama_cpp"]["tokenization_match"], v
    assert prov["arch"] == family and prov["pre_tokenizer"] == "qwen2"
    assert prov["chat_templates"] == ["default", "selfbudgeter"]
    assert prov["tensor_types"].get("Q4_K" if quant == "q4_k_m" else quant.upper(), 0) > 0, prov[
        "tensor_types"
    ]

    tok = AutoTokenizer.from_pretrained(src)
    ref = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    llm = llamacpp.load(str(path), 512)
    prefilled = protocol.render_prompt(tok, checks.CHECK_QUESTIONS[0], budget=48)
    texts = [*checks.check_prompts(tok), prefilled]
    for text in texts:
        assert llamacpp.tokenize_prompt(llm, text) == protocol.encode_prompt(tok, text)
    for tag in llamacpp.BUDGET_TAGS:
        assert llamacpp.tokenize(llm, tag) == tok(tag, add_special_tokens=False).input_ids
    got = _next_token_agreement(llm, ref, tok, texts)
    metric, tol = checks.gguf_tolerance(quant)
    print(f"{family} {quant}: {got}")
    assert got[metric] <= tol, (metric, got)
