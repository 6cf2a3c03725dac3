"""``sblite merge`` and ``sblite export --gguf``: a trained adapter becomes a merged model, then a verified GGUF.

    from sblite.export import merge_adapter, export_gguf
    merge_adapter("runs/demo", "merged/")                     # adapter + base -> safetensors, logits checked
    export_gguf("runs/demo", "gguf/", "q8_0", ollama=True)    # merge, write GGUF, verify, Modelfile

The package, bottom layer first (each module imports only those above it):

    common.py   errors, --out and disk-space refusals, provenance file name and versions, result_json
    tensors.py  safetensors -> GGUF tensors (names, types, rotary permutation, conversion)
    vocab.py    the tokenizer in GGUF (tokens, types, merges, special ids, pre-tokenizer, chat templates)
    writer.py   write_gguf: the native GGUF writer (f32/f16/bf16/q8_0), hyper-parameters, size estimate
    checks.py   check prompts, compare_logits, verify_gguf (transformers + llama.cpp), tolerances
    merge.py    merge_adapter, MergeResult, reuse of an earlier merge, merge provenance
    ollama.py   the Ollama TEMPLATE and Modelfile
    gguf.py     export_gguf: the orchestration, ExportResult, the GGUF's provenance file

Importing this package is cheap: torch, transformers, peft, gguf and llama_cpp are imported inside the
functions that use them.

Nothing here trains or changes weights beyond the merge; importing the package loads no heavy library.
"""

from sblite.export.checks import verify_gguf
from sblite.export.common import ExportError, GGUFExportError, VerificationError, result_json
from sblite.export.gguf import ExportResult, export_gguf
from sblite.export.merge import MergeResult, merge_adapter
from sblite.export.ollama import write_modelfile
from sblite.export.writer import write_gguf

__all__ = [
    "ExportError",
    "ExportResult",
    "GGUFExportError",
    "MergeResult",
    "VerificationError",
    "export_gguf",
    "merge_adapter",
    "result_json",
    "verify_gguf",
    "write_gguf",
    "write_modelfile",
]
