"""``sblite export --gguf``: a model, run or adapter becomes a verified GGUF with provenance beside it.

    sblite export runs/demo --gguf --quant q8_0 --out gguf/   # merge, write GGUF, verify
    sblite export merged/   --gguf --quant q4_k_m --out gguf/ --ollama

``export_gguf`` orchestrates: a run or adapter is merged first (``sblite.export.merge``, reusing an earlier
merge of the same adapter), the GGUF is written by ``sblite.export.writer`` (f32/f16/bf16/q8_0, no
llama.cpp, no network) or through llama.cpp's quantizer (k-quants), then verified by its real consumers
(``sblite.export.checks``: transformers and llama.cpp), an Ollama Modelfile is written on request
(``sblite.export.ollama``), and ``NAME-QUANT.gguf.provenance.json`` records the source run, recipe, reward
config, quant, sha256 and the verification numbers. Nothing is overwritten without ``force``, and free disk
space is checked first. A model without a chat template (a base model) is exported as it is: no budget
template in the GGUF, a plain Modelfile TEMPLATE, and a note saying so (``ExportResult.notes``, provenance).

This module decides and records; it does not convert tensors, compare logits or render templates itself.
Heavy imports (torch, transformers, gguf, llama_cpp) happen inside the modules it calls, at call time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sblite import protocol
from sblite.export.checks import verify_gguf
from sblite.export.common import (
    PROVENANCE_NAME,
    ExportError,
    GGUFExportError,
    VerificationError,
    check_disk_space,
    resolve_spec,
    versions,
)
from sblite.export.merge import MergeResult, merge_adapter, reusable_merge
from sblite.export.ollama import write_modelfile
from sblite.export.writer import (
    ALL_QUANTS,
    LLAMACPP_QUANTS,
    NATIVE_QUANTS,
    estimate_gguf_bytes,
    read_tensor_types,
    write_gguf,
)
from sblite.provenance import sha256_file
from sblite.rundir import ADAPTER_CONFIG


@dataclass
class ExportResult:
    gguf: Path
    quant: str
    bytes: int
    sha256: str
    n_params: int
    arch: str
    pre_tokenizer: str
    seconds: dict[str, float]
    merged: MergeResult | None
    model_dir: Path
    verification: dict[str, Any] = field(default_factory=dict)
    modelfile: Path | None = None
    provenance: Path | None = None
    #: Names of the chat templates written into the GGUF (``default``, ``selfbudgeter``); empty for a model
    #: without one (a base model), which is exported as it is, without the budget template.
    chat_templates: list[str] = field(default_factory=list)
    #: What the user should know about this export, one line each (the CLI prints them).
    notes: list[str] = field(default_factory=list)


def _templates(model_dir: Path, instruction_in_user: bool) -> dict[str, str] | None:
    cfg_path = model_dir / "tokenizer_config.json"
    template = None
    if (model_dir / "chat_template.jinja").is_file():
        template = (model_dir / "chat_template.jinja").read_text(encoding="utf-8")
    elif cfg_path.is_file():
        template = json.loads(cfg_path.read_text(encoding="utf-8")).get("chat_template")
    if not isinstance(template, str):
        return None
    return {
        "default": template,
        "selfbudgeter": protocol.budget_chat_template(
            template, protocol.SYSTEM_PROMPT, in_user=instruction_in_user
        ),
    }


def _model_source(src: str) -> tuple[Path, dict[str, Any]] | None:
    """``src`` as a full model directory (with its provenance, if sblite merged it), or None."""
    from sblite.models import resolve_model

    try:
        path = Path(resolve_model(src))
    except (ValueError, FileNotFoundError) as err:
        raise ExportError(str(err)) from None
    if (path / "config.json").is_file() and not (path / ADAPTER_CONFIG).is_file():
        prov_path = path / PROVENANCE_NAME
        prov = json.loads(prov_path.read_text(encoding="utf-8")) if prov_path.is_file() else {}
        return path, prov
    return None


def export_gguf(
    src: str | Path,
    out: str | Path,
    quant: str = "f16",
    *,
    ollama: bool = False,
    verify: bool = True,
    force: bool = False,
    dtype: str = "auto",
    progress: Callable[[str, int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
    settings: dict[str, Any] | None = None,
) -> ExportResult:
    """Export ``src`` (a merged/full model dir, a ``builtin:`` name, a RUN_DIR or an adapter dir; the last
    two are merged into ``out/merged`` first) to ``out/<name>-<quant>.gguf``, verify it (``verify``),
    write a provenance JSON beside it and, with ``ollama``, a Modelfile.

    Raises ``ExportError`` on bad input (before anything is written) and ``VerificationError`` when the
    written file fails a check (the file and its provenance stay, marked as failed)."""
    from sblite.generate import llamacpp

    log = log or (lambda _msg: None)
    quant = quant.lower()
    if quant not in ALL_QUANTS:
        raise ExportError(f"--quant {quant}: choose one of {', '.join(ALL_QUANTS)}")
    if quant in LLAMACPP_QUANTS and llamacpp.quantizer() is None:
        raise ExportError(
            f"--quant {quant} needs llama.cpp's quantizer: install it with "
            f"`{llamacpp.INSTALL_HINT}` (or put llama-quantize on PATH); "
            f"{', '.join(NATIVE_QUANTS)} need nothing extra"
        )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; give a directory")
    seconds: dict[str, float] = {}
    merge: MergeResult | None = None
    found = _model_source(str(src))
    if found is not None:
        model_dir, prov_in = found
        source = prov_in.get("source") or {"base": str(src)}
        instruction_in_user = bool(prov_in.get("instruction_in_user", False))
        name = model_dir.name if not str(src).startswith("builtin:") else str(src).split(":", 1)[1]
    else:
        spec = resolve_spec(str(src))
        if not spec.adapter:
            raise ExportError(f"{src}: not a model directory, run directory or adapter (no config.json)")
        merged_dir = out / "merged"
        merge = None if force else reusable_merge(merged_dir, spec.adapter)
        if merge is None:
            log(f"merging {spec.adapter} into {spec.base}")
            merge = merge_adapter(src, merged_dir, dtype, force=force, log=log)
        seconds["merge"] = merge.seconds
        model_dir = merged_dir
        source = json.loads(merge.provenance.read_text(encoding="utf-8")).get("source", {})
        instruction_in_user = spec.instruction_in_user
        name = Path(spec.run_dir).name if spec.run_dir else Path(spec.adapter).name
    target = out / f"{name}-{quant}.gguf"
    if target.exists() and not force:
        raise ExportError(f"{target} exists; add --force to overwrite it")
    try:
        check_disk_space(out, estimate_gguf_bytes(model_dir, quant), f"the {quant} GGUF")
    except GGUFExportError as err:
        raise ExportError(str(err)) from None
    templates = _templates(model_dir, instruction_in_user)
    notes = []
    if templates is None:
        notes.append(
            f"{model_dir} has no chat template (a base model): the GGUF has no budget template, prompts are "
            "plain text" + ("; the Modelfile's TEMPLATE is plain {{ .Prompt }}" if ollama else "")
        )
        log(notes[-1])

    t0 = time.perf_counter()
    try:
        if quant in NATIVE_QUANTS:
            written = write_gguf(
                model_dir, target, quant, name=name, chat_templates=templates, progress=progress
            )
            seconds["write"] = written.seconds
            tensor_types = written.tensor_types
        else:
            base_q = "bf16" if _stored_dtype(model_dir) == "bfloat16" else "f16"
            inter = out / f".{name}-{base_q}.intermediate.gguf"
            written = write_gguf(
                model_dir, inter, base_q, name=name, chat_templates=templates, progress=progress
            )
            seconds["write"] = written.seconds
            log(f"quantizing to {quant} with llama.cpp")
            t1 = time.perf_counter()
            try:
                tool = llamacpp.quantize(inter, target, quant)
            finally:
                inter.unlink(missing_ok=True)
            seconds["quantize"] = time.perf_counter() - t1
            source = {**source, "quantizer": tool}
            tensor_types = read_tensor_types(target)  # llama.cpp chose them, not the f16/bf16 intermediate
    except GGUFExportError as err:
        raise ExportError(str(err)) from None
    seconds["export_total"] = time.perf_counter() - t0
    size = target.stat().st_size
    digest = sha256_file(target)
    result = ExportResult(
        gguf=target,
        quant=quant,
        bytes=size,
        sha256=digest,
        n_params=written.n_params,
        arch=written.arch,
        pre_tokenizer=written.pre_tokenizer,
        seconds=seconds,
        merged=merge,
        model_dir=model_dir,
        chat_templates=list(templates or {}),
        notes=notes,
    )
    failure = None
    if verify:
        log("verifying with transformers" + (" and llama.cpp" if llamacpp.available() else ""))
        t2 = time.perf_counter()
        result.verification = verify_gguf(target, model_dir, quant, instruction_in_user=instruction_in_user)
        seconds["verify"] = time.perf_counter() - t2
        failure = result.verification.get("failure")
    if ollama:
        max_len = (source.get("recipe") or {}).get("max_completion_length")
        result.modelfile = write_modelfile(
            target,
            model_dir,
            instruction_in_user=instruction_in_user,
            max_completion_length=max_len,
            source_name=name,
        )
    result.provenance = write_gguf_provenance(result, source, tensor_types, settings)
    if failure:
        raise VerificationError(f"{target.name} failed verification: {failure}", result)
    return result


def _stored_dtype(model_dir: Path) -> str:
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")


def write_gguf_provenance(
    result: ExportResult,
    source: dict[str, Any],
    tensor_types: dict[str, int],
    settings: dict[str, Any] | None = None,
) -> Path:
    """``NAME-QUANT.gguf.provenance.json`` beside the GGUF: where it came from, what it holds, its sha256,
    timings, the verification numbers (or that verification was skipped) and ``settings``: the resolved
    export options with where each came from (``sblite.options.Resolved.to_json``)."""
    path = result.gguf.with_name(result.gguf.name + ".provenance.json")
    prov = {
        "artifact": "gguf",
        "file": result.gguf.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quant": result.quant,
        "arch": result.arch,
        "pre_tokenizer": result.pre_tokenizer,
        "bytes": result.bytes,
        "sha256": result.sha256,
        "n_params": result.n_params,
        "tensor_types": tensor_types,
        "model_dir": str(result.model_dir),
        "source": source,
        "seconds": result.seconds,
        "verification": result.verification or "skipped (--no-verify)",
        "modelfile": result.modelfile.name if result.modelfile else None,
        "chat_templates": result.chat_templates,
        "notes": result.notes,
        "settings": settings,
        "versions": versions(),
    }
    path.write_text(json.dumps(prov, indent=2, default=str), encoding="utf-8")
    return path
