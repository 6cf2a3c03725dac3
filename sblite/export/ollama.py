"""``sblite export --ollama``: an Ollama Modelfile beside a GGUF, whose TEMPLATE and SYSTEM give the training prompt.

    ollama create NAME -f NAME-QUANT.Modelfile && ollama run NAME

``ollama_template`` turns the prompt sblite trained with (the model's chat template around the budget
instruction and the user's message, from ``sblite.protocol.render_prompt``) into Ollama's Go template:
``{{ .System }}`` stands where the instruction went (its own system turn, or in front of the question with
``instruction_in_user``), ``{{ .Prompt }}`` where the question went, and the Modelfile's ``SYSTEM`` is the
instruction, so a plain question renders, character for character, the text ``render_prompt`` gives and gets
``<budget>N</budget>`` first. A BOS the chat template writes stays in the TEMPLATE unless the GGUF says the
runtime adds one (``tokenizer.ggml.add_bos_token``, from ``sblite.export.vocab.added_specials``): Ollama
then prepends it itself. ``write_modelfile`` adds the stop tokens and a ``num_predict`` with room past the
longest trained budget. A model without a chat template (a base model) gets a plain ``{{ .Prompt }}``
TEMPLATE and no SYSTEM: its prompts reach it as raw text.

The TEMPLATE uses Ollama's per-turn variables (``.System``/``.Prompt``/``.Response``): one question renders
exactly; Ollama renders a longer chat turn by turn through the same template.

Text only: this module writes no GGUF and runs no model; transformers reads the tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

from sblite import protocol
from sblite.export.common import ExportError
from sblite.export.vocab import added_specials, load_tokenizer

# Stand-ins rendered through the chat template and replaced by Ollama's variables; no template writes them,
# and they differ from their first character on, so the diff of two renders cannot run into one.
SYSTEM_MARK = "\x01sblite-system\x01"
PROMPT_MARK = "\x02sblite-prompt\x02"
#: The TEMPLATE of a model without a chat template: Ollama's default for an imported model.
PLAIN_TEMPLATE = "{{ .Prompt }}"


def _system_block(with_system: str, without: str, specials: list[str]) -> tuple[str, str, str, str]:
    """``(head, block, default, tail)`` with ``with_system == head + block + tail`` and ``without == head +
    default + tail``: the part the system instruction adds. When it only adds (``default`` empty), the block
    can sit at several places with the same text; the leftmost one that opens with a special token is taken,
    so the condition wraps a whole turn (``<|im_start|>system…<|im_end|>\\n``) rather than cutting one."""
    p = 0
    while p < min(len(with_system), len(without)) and with_system[p] == without[p]:
        p += 1
    s = 0
    while s < min(len(with_system), len(without)) - p and with_system[-1 - s] == without[-1 - s]:
        s += 1
    n = len(with_system) - s - p
    default = without[p : len(without) - s]
    start = p
    if not default:
        i = p
        while i > 0 and with_system[i - 1] == with_system[i - 1 + n]:
            i -= 1
            if with_system[i:].startswith(tuple(specials)):
                start = i
    return with_system[:start], with_system[start : start + n], default, with_system[start + n :]


def ollama_template(tokenizer, *, instruction_in_user: bool, add_bos: bool) -> str:
    """An Ollama (Go) TEMPLATE that, with ``SYSTEM`` set to ``protocol.SYSTEM_PROMPT``, renders exactly the
    prompt sblite trained with for one question. ``add_bos``: the GGUF makes the runtime prepend BOS, so a
    BOS the chat template writes is left out here (it would be doubled)."""

    def render(system: str | None) -> str:
        text = protocol.render_prompt(
            tokenizer, PROMPT_MARK, system_prompt=system, instruction_in_user=instruction_in_user
        )
        bos = tokenizer.bos_token
        return text[len(bos) :] if add_bos and bos and text.startswith(bos) else text

    head, block, default, tail = _system_block(
        render(SYSTEM_MARK), render(None), list(tokenizer.get_added_vocab())
    )
    if block.count(SYSTEM_MARK) != 1 or tail.count(PROMPT_MARK) != 1 or PROMPT_MARK in head + block:
        raise ExportError(
            "the chat template does not render the instruction and then the user message once each; "
            "cannot write a Modelfile"
        )
    if "{{" in head + block + default + tail:
        raise ExportError("the chat template renders '{{', which an Ollama TEMPLATE would read as an action")
    otherwise = "{{ else }}" + default if default else ""
    return (
        head
        + "{{ if .System }}"
        + block.replace(SYSTEM_MARK, "{{ .System }}")
        + otherwise
        + "{{ end }}"
        + tail.replace(PROMPT_MARK, "{{ .Prompt }}")
        + "{{ .Response }}"
    )


def write_modelfile(
    gguf_path: Path,
    model_dir: Path,
    *,
    instruction_in_user: bool,
    max_completion_length: int | None,
    source_name: str | None = None,
) -> Path:
    """``<name>-<quant>.Modelfile`` next to the GGUF (one per quant, so exports into one --out do not clash):
    ``ollama create NAME -f FILE.Modelfile`` then ``ollama run NAME``. Without a chat template in
    ``model_dir`` the TEMPLATE is plain (``PLAIN_TEMPLATE``) and there is no SYSTEM."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.chat_template is None:
        template, system = PLAIN_TEMPLATE, None
        about = [
            "# The model has no chat template (a base model): prompts reach it as plain text, without the",
            "# budget instruction.",
        ]
    else:
        # the same probe that wrote tokenizer.ggml.add_bos_token into the GGUF
        add_bos, _ = added_specials(load_tokenizer(model_dir)[0])
        template = ollama_template(tok, instruction_in_user=instruction_in_user, add_bos=add_bos)
        system = protocol.SYSTEM_PROMPT
        about = [
            "# TEMPLATE + SYSTEM render the prompt the model was trained with (SYSTEM is the budget",
            "# instruction): a plain question gets <budget>N</budget> first.",
        ]
    if '"""' in template + (system or ""):
        raise ExportError('the chat template contains """, which a Modelfile cannot quote')
    stops = []
    gen_cfg = model_dir / "generation_config.json"
    eos_ids = [tok.eos_token_id]
    if gen_cfg.is_file():
        eos = json.loads(gen_cfg.read_text(encoding="utf-8")).get("eos_token_id")
        eos_ids += eos if isinstance(eos, list) else [eos]
    for i in eos_ids:
        if i is not None and (t := tok.convert_ids_to_tokens(int(i))) and t not in stops:
            stops.append(t)
    # The model states its budget first; leave room past the longest budget it was trained for.
    num_predict = int((max_completion_length or 1024) * 1.25) + 32
    lines = [
        f"# Written by sblite export from {source_name or model_dir.name}.",
        *about,
        f"FROM ./{gguf_path.name}",
        f'TEMPLATE """{template}"""',
        *([f'SYSTEM """{system}"""'] if system else []),
        *[f'PARAMETER stop "{s}"' for s in stops],
        f"PARAMETER num_predict {num_predict}",
        "PARAMETER temperature 0",
        "",
    ]
    path = gguf_path.with_suffix(".Modelfile")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
