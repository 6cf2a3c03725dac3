"""The Ollama Modelfile: its TEMPLATE + SYSTEM, rendered as Ollama renders one question, give the prompt sblite
trained with, character for character, and its tokens (with the BOS the GGUF's flag makes the runtime add)
are the HF chat template's. Cases: the tiny ChatML tokenizer, SmolLM2's (whose BOS is ``<|im_start|>``, the
template's first token) and DeepSeek-R1-Distill's template over the shared Qwen2 tokenizer, both as the
shared README builds it (no BOS added on encode) and as the real model's tokenizer encodes (BOS added)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from sblite import protocol
from sblite.export import ollama, vocab

HAS_LLAMA_CPP = importlib.util.find_spec("llama_cpp") is not None
QUESTION = "Ann has 7 apples and gets 5 more. How many apples does Ann have now?"


def render_like_ollama(modelfile: str, prompt: str) -> str:
    """What Ollama renders for one user message (``template.Execute`` with a legacy template): ``System`` is
    the Modelfile's SYSTEM, ``Prompt`` the message, and the template is cut at ``{{ .Response }}``. Knows
    ``{{ .System }}``, ``{{ .Prompt }}`` and a flat ``{{ if .System }}…{{ else }}…{{ end }}``; any other
    action fails the test rather than being guessed at."""
    (template,) = re.findall(r'^TEMPLATE """(.*?)"""$', modelfile, flags=re.S | re.M)
    systems = re.findall(r'^SYSTEM """(.*?)"""$', modelfile, flags=re.S | re.M)
    system = systems[0] if systems else ""
    template = template.split("{{ .Response }}")[0]

    def branch(m: re.Match) -> str:
        return m.group(1) if system else (m.group(2) or "")

    template = re.sub(
        r"\{\{ if \.System \}\}(.*?)(?:\{\{ else \}\}(.*?))?\{\{ end \}\}", branch, template, flags=re.S
    )
    out = template.replace("{{ .System }}", system).replace("{{ .Prompt }}", prompt)
    assert "{{" not in out, f"an action the stand-in does not know: {out!r}"
    return out


@pytest.fixture(scope="module")
def tokenizer_dir(request, tmp_path_factory, tiny_model_dir):
    """A directory holding the case's tokenizer (what ``write_modelfile`` reads), built once per case."""
    built: dict[str, Path] = {}

    def build(case: str) -> Path:
        if case not in built:
            built[case] = _build(case)
        return built[case]

    def _build(case: str) -> Path:
        if case == "tiny":
            return tiny_model_dir
        if case == "smollm2":
            from sblite.models import resolve_model

            try:
                return Path(resolve_model("builtin:smollm2-135m"))
            except FileNotFoundError as err:
                pytest.skip(str(err))
        make_r1 = request.getfixturevalue("make_r1_tokenizer")
        out = tmp_path_factory.mktemp(case)
        make_r1(add_bos=case == "r1-bos").save_pretrained(out)
        return out

    return build


def _reference_ids(tok, case: str, in_user: bool) -> list[int]:
    """The ids the model was trained on for QUESTION; for ChatML templates, also the HF chat template's own."""
    text = protocol.render_prompt(tok, QUESTION, instruction_in_user=in_user)
    ids = protocol.encode_prompt(tok, text)
    messages = protocol.build_messages(QUESTION, instruction_in_user=in_user)
    hf = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)["input_ids"]
    if case.startswith("r1"):
        # R1's generation prompt forces "<think>\n" after its header; sblite's prompt ends at the header
        # (protocol.render_prompt): the Modelfile follows sblite, and is the HF rendering up to that point.
        assert hf[: len(ids)] == ids
    else:
        assert hf == ids
    return ids


CASES = ["tiny", "smollm2", "r1", "r1-bos"]


@pytest.mark.parametrize("in_user", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_modelfile_renders_the_training_prompt_token_for_token(case, in_user, tokenizer_dir, tmp_path):
    from transformers import AutoTokenizer

    model_dir = tokenizer_dir(case)
    tok = AutoTokenizer.from_pretrained(model_dir)
    path = ollama.write_modelfile(
        tmp_path / "m-f16.gguf", model_dir, instruction_in_user=in_user, max_completion_length=64
    )
    text = path.read_text(encoding="utf-8")
    rendered = render_like_ollama(text, QUESTION)
    # the flag the GGUF writer stores as tokenizer.ggml.add_bos_token (read back from a GGUF below)
    add_bos, _ = vocab.added_specials(vocab.load_tokenizer(model_dir)[0])
    expected = protocol.render_prompt(tok, QUESTION, instruction_in_user=in_user)
    if add_bos:  # the runtime prepends BOS; the template must not write it a second time
        assert expected.startswith(tok.bos_token) and rendered == expected[len(tok.bos_token) :]
    else:
        assert rendered == expected
    ids = ([tok.bos_token_id] if add_bos else []) + tok.encode(rendered, add_special_tokens=False)
    assert ids == _reference_ids(tok, case, in_user)
    assert protocol.SYSTEM_PROMPT in text and "<budget>N</budget>" in text
    # With the SYSTEM line removed (a user clearing it), the template renders the no-instruction prompt.
    plain = render_like_ollama(re.sub(r'^SYSTEM """.*?"""$', "", text, flags=re.S | re.M), QUESTION)
    no_system = protocol.render_prompt(tok, QUESTION, system_prompt=None)
    assert plain == (no_system[len(tok.bos_token) :] if add_bos else no_system)


def test_base_model_modelfile_is_a_plain_template(tmp_path, tiny_model_dir):
    import shutil

    model_dir = tmp_path / "base"
    shutil.copytree(tiny_model_dir, model_dir)
    (model_dir / "chat_template.jinja").unlink()
    path = ollama.write_modelfile(
        tmp_path / "base-f16.gguf", model_dir, instruction_in_user=False, max_completion_length=None
    )
    text = path.read_text(encoding="utf-8")
    assert render_like_ollama(text, "2 + 3 =") == "2 + 3 ="
    assert 'TEMPLATE """{{ .Prompt }}"""' in text and "SYSTEM" not in text and "no chat template" in text


def _tiny_model_over(tokenizer_dir: Path, out: Path) -> Path:
    """A 2-layer random Llama over the tokenizer in ``tokenizer_dir`` (the GGUF's vocabulary is what matters)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize(
    "case", ["tiny", *[pytest.param(c, marks=pytest.mark.slow) for c in ("smollm2", "r1", "r1-bos")]]
)
def test_gguf_bos_flag_is_the_one_the_modelfile_assumes(case, tokenizer_dir, tmp_path, monkeypatch):
    """Export GGUF + Modelfile; the add_bos flag read back from the GGUF, plus the rendered TEMPLATE's tokens,
    give the training ids, and llama.cpp tokenizing the rendered text as Ollama's runner does (special tokens
    parsed, BOS added when the GGUF says so) gives them too."""
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    from sblite.export import export_gguf

    model_dir = tokenizer_dir(case)
    if case != "tiny":
        model_dir = _tiny_model_over(model_dir, tmp_path / case)
    tok = AutoTokenizer.from_pretrained(model_dir)
    r = export_gguf(model_dir, tmp_path / "out", "f16", ollama=True, verify=False)
    flag = GGUFReader(str(r.gguf)).fields["tokenizer.ggml.add_bos_token"].contents()
    rendered = render_like_ollama(r.modelfile.read_text(encoding="utf-8"), QUESTION)
    ids = _reference_ids(tok, case, False)
    assert ([tok.bos_token_id] if flag else []) + tok.encode(rendered, add_special_tokens=False) == ids
    if tok.bos_token:  # BOS comes from the template or from the runtime, never both
        assert rendered.startswith(tok.bos_token) != flag
    if HAS_LLAMA_CPP:
        from llama_cpp import Llama

        llm = Llama(model_path=str(r.gguf), vocab_only=True, verbose=False)
        try:
            assert list(llm.tokenize(rendered.encode("utf-8"), add_bos=True, special=True)) == ids
        finally:
            llm.close()
