"""``sblite export --ollama``: an Ollama Modelfile beside a GGUF, whose TEMPLATE is the training prompt.

    ollama create NAME -f NAME-QUANT.Modelfile && ollama run NAME

``ollama_template`` renders the prompt sblite trained with (the model's chat template around the budget
instruction and the user's message, from ``sblite.protocol``) and turns it into Ollama's Go template, so a
plain question gets ``<budget>N</budget>`` first. ``write_modelfile`` adds the stop tokens and a
``num_predict`` with room past the longest trained budget.

Text only: this module writes no GGUF and runs no model; transformers is imported to read the tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

from sblite import protocol
from sblite.export.common import ExportError


def ollama_template(tokenizer, *, instruction_in_user: bool) -> str:
    """An Ollama (Go) TEMPLATE that renders exactly the prompt sblite trained with: the model's chat
    template applied to the budget instruction and the user's message, ending where the assistant speaks."""
    marker = "\x00SBLITE_PROMPT\x00"
    text = protocol.render_prompt(tokenizer, marker, instruction_in_user=instruction_in_user)
    if text.count(marker) != 1:
        raise ExportError("the chat template does not render the user message once; cannot write a Modelfile")
    head, tail = text.split(marker)
    if tokenizer.bos_token and head.startswith(tokenizer.bos_token):
        head = head[len(tokenizer.bos_token) :]  # llama.cpp adds BOS itself when the model wants it
    return head + "{{ .Prompt }}" + tail + "{{ .Response }}"


def write_modelfile(
    gguf_path: Path,
    model_dir: Path,
    *,
    instruction_in_user: bool,
    max_completion_length: int | None,
    source_name: str | None = None,
) -> Path:
    """``<name>-<quant>.Modelfile`` next to the GGUF (one per quant, so exports into one --out do not clash):
    ``ollama create NAME -f FILE.Modelfile`` then ``ollama run NAME``."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    template = ollama_template(tok, instruction_in_user=instruction_in_user)
    if '"""' in template:
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
        f"# Written by sblite export from {source_name or model_dir.name}. The TEMPLATE is the prompt the",
        "# model was trained with (budget instruction included): a plain question gets <budget>N</budget>…",
        f"FROM ./{gguf_path.name}",
        f'TEMPLATE """{template}"""',
        *[f'PARAMETER stop "{s}"' for s in stops],
        f"PARAMETER num_predict {num_predict}",
        "PARAMETER temperature 0",
        "",
    ]
    path = gguf_path.with_suffix(".Modelfile")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
