"""The tokenizer half of a GGUF file: the vocabulary, token types, merges, special ids and chat templates.

What is written follows llama.cpp's ``convert_hf_to_gguf.py``: every BPE token with its type (normal,
control, user-defined, unused padding), the merges, the special ids, whether BOS/EOS are added (probed from
the HF tokenizer itself, whatever the config files say), the pre-tokenizer name llama.cpp needs to split text
as the HF tokenizer does (``detect_pre_tokenizer``), and the named chat templates the caller passes.

Metadata only: no tensors, no file writing, no model loading. transformers (for the tokenizer as training
ran it, ``load_tokenizer``) and ``gguf`` are imported inside functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sblite.export.common import GGUFExportError
from sblite.provenance import sha256_text

# llama.cpp names its pre-tokenizers by hashing the token ids of this text (convert_hf_to_gguf_update.py);
# the few hashes of the families sblite supports are kept here, so detection needs no network.
_CHKTXT = (
    "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n🚀 (normal) 😶\u200d🌫️ (multiple emojis concatenated) "
    "✅ 🦙🦙 3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 កាន់តែពិសេសអាច😁 ?我想在apple工作1314151天～ "
    "------======= нещо на Български ''''''```````\"\"\"\"......!!!!!!?????? I've been 'told he's there, "
    "'RE you sure? 'M not sure I'll make it, 'D you like some tea? We'Ve a'lL"
)
_KNOWN_PRE_HASHES = {
    "855059429035d75a914d1eda9f10a876752e281a054a7a3d421ef0533e5b6249": "smollm",  # SmolLM/SmolLM2
    "e636dc30a262dcc0d8c323492e32ae2b70728f4df7dfe9737d9f920a282b8aea": "qwen2",  # Qwen1.5/2/2.5
    "d4540891389ea895b53b399da6ac824becc30f2fba0e9ddbb98f92e55ca0e97c": "qwen2",  # Qwen3
    "b3f499bb4255f8ca19fccd664443283318f2fd2414d5e0b040fbdd0cc195d6c5": "deepseek-r1-qwen",
    "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5": "llama-bpe",  # Llama 3
    "3ce83efda5659b07b1ad37ca97ca5797ea4285d9b9ab0dc679e4a720c9da7454": "gpt-2",
}
# A tokenizer trained locally has no known hash: recognise its pre-tokenizer by structure instead.
_QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)


def detect_pre_tokenizer(tokenizer, tokenizer_json: dict[str, Any] | None = None) -> str:
    """llama.cpp's name for how the tokenizer splits text before BPE (``tokenizer.ggml.pre``).

    A known model is recognised by the hash llama.cpp uses; otherwise the HF pre-tokenizer's structure
    decides (GPT-2 byte-level regex, Qwen2's or Llama 3's split regex, SmolLM's digit split)."""
    chkhsh = sha256_text(str(_encode(tokenizer, _CHKTXT)))
    if chkhsh in _KNOWN_PRE_HASHES:
        return _KNOWN_PRE_HASHES[chkhsh]
    pre = (tokenizer_json or {}).get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if (
        kinds == ["Digits", "ByteLevel"]
        and steps[0].get("individual_digits")
        and steps[1].get("use_regex", True)
    ):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        regex = (steps[0].get("pattern") or {}).get("Regex")
        if regex == _QWEN2_SPLIT:
            return "qwen2"
        if regex == _LLAMA3_SPLIT:
            return "llama-bpe"
    raise GGUFExportError(
        f"the tokenizer's pre-tokenizer ({' + '.join(k or '?' for k in kinds) or 'none'}, hash {chkhsh[:12]}…) "
        "is not one sblite can name for llama.cpp; supported: GPT-2 byte-level, SmolLM, Qwen2/Qwen3, "
        "DeepSeek-R1-Distill-Qwen, Llama 3"
    )


def _encode(tokenizer, text: str, add_special_tokens: bool = True) -> list[int]:
    """Token ids from a ``tokenizers.Tokenizer`` or a transformers tokenizer."""
    enc = tokenizer.encode(text, add_special_tokens=add_special_tokens)
    return list(enc.ids) if hasattr(enc, "ids") else list(enc)


def added_specials(tokenizer) -> tuple[bool, bool]:
    """Whether encoding text adds a token before it and after it: ``tokenizer.ggml.add_bos_token`` /
    ``add_eos_token``. Probed from the tokenizer itself, whatever the config files say, because what llama.cpp
    (and Ollama) prepend must be what the HF tokenizer does; the Modelfile's TEMPLATE relies on the same answer.
    """
    probe, plain = _encode(tokenizer, "a"), _encode(tokenizer, "a", add_special_tokens=False)
    k = next((i for i in range(len(probe) - len(plain) + 1) if probe[i : i + len(plain)] == plain), 0)
    return k > 0, len(probe) - k - len(plain) > 0


def _looks_special(token: str) -> bool:
    return (token.startswith("<|") and token.endswith("|>")) or (
        token.startswith("<｜") and token.endswith("｜>")
    )


def vocab_tokens(
    tokenizer, added_tokens: list[dict[str, Any]], vocab_size: int
) -> tuple[list[str], list[int]]:
    """Token strings and ``gguf.TokenType`` values for ids ``0..vocab_size-1``, as llama.cpp expects them.
    ``tokenizer`` is a ``tokenizers.Tokenizer``; ``added_tokens`` is tokenizer.json's list."""
    import gguf

    reverse = {i: t for t, i in tokenizer.get_vocab(with_added_tokens=True).items()}
    added = {a["id"]: a for a in added_tokens}
    if reverse and max(reverse) >= vocab_size:
        raise GGUFExportError(
            f"the tokenizer has id {max(reverse)} but the model's vocab_size is {vocab_size}"
        )
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        if i in added:
            if not added[i].get("normalized", False):  # llama.cpp assumes added tokens are pre-normalised
                ids = _encode(tokenizer, token, add_special_tokens=False)
                token = tokenizer.decode(ids, skip_special_tokens=False)
            if added[i].get("special") or _looks_special(token):
                types.append(gguf.TokenType.CONTROL)
            else:
                token = token.replace("\u2581", " ")
                types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    return tokens, [int(t) for t in types]


def load_tokenizer(model_dir: Path):
    """``model_dir``'s tokenizer as transformers runs it (``AutoTokenizer``'s ``tokenizers`` backend) and that
    backend's JSON. Not tokenizer.json as stored: for some model types transformers replaces its
    pre-tokenizer with the family's own (a Qwen2 config gets Qwen2's digit-by-digit split whatever
    tokenizer.json says), and the GGUF must split text as the model was trained on."""
    from transformers import AutoTokenizer

    if not (model_dir / "tokenizer.json").is_file():
        raise GGUFExportError(
            f"{model_dir}: no tokenizer.json (sblite writes BPE tokenizers from tokenizer.json)"
        )
    tokenizer = AutoTokenizer.from_pretrained(model_dir).backend_tokenizer
    return tokenizer, json.loads(tokenizer.to_str())


def add_tokenizer(w, model_dir: Path, config: dict[str, Any], chat_templates: dict[str, str] | None) -> str:
    """Add ``model_dir``'s BPE tokenizer (``load_tokenizer``) and ``chat_templates`` to GGUF writer ``w``;
    returns the pre-tokenizer name written."""
    import gguf

    tokenizer, tok_json = load_tokenizer(model_dir)
    if (tok_json.get("model") or {}).get("type") != "BPE":
        raise GGUFExportError(
            f"{model_dir}: tokenizer model {tok_json.get('model', {}).get('type')!r} is not BPE"
        )
    pre = detect_pre_tokenizer(tokenizer, tok_json)
    tokens, types = vocab_tokens(tokenizer, tok_json.get("added_tokens") or [], config["vocab_size"])
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    special.add_special_token["bos"], special.add_special_token["eos"] = added_specials(tokenizer)
    tok_cfg_path = model_dir / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text(encoding="utf-8")) if tok_cfg_path.is_file() else {}
    eos = tok_cfg.get("eos_token")
    eos = eos.get("content") if isinstance(eos, dict) else eos
    if isinstance(eos, str) and (eos_id := tokenizer.token_to_id(eos)) is not None:
        special.special_token_ids["eos"] = (
            eos_id  # the tokenizer's EOS ends a chat turn; config.json may differ
        )
    if chat_templates:
        special.chat_template = [{"name": k, "template": v} for k, v in chat_templates.items()]
    special.add_to_gguf(w, quiet=True)
    return pre
