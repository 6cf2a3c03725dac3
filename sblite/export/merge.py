"""``sblite merge``: a trained LoRA adapter merged into its base model, checked, saved with provenance.

    sblite merge runs/demo --out merged/          # adapter + base -> safetensors + tokenizer

``merge_adapter`` merges in float32, then checks that the merged model's logits equal the adapter model's on
a few budget-format prompts (``sblite.export.checks``) before anything is written; the result goes to a
``.partial`` directory first and is renamed into place, with ``sblite-provenance.json`` naming the run, its
recipe and reward config, the adapter's sha256 and the merge check. ``reusable_merge`` finds an earlier merge
of the very same adapter, so exporting a second quant does not merge again.

This module merges only: GGUF writing and verification live in ``gguf``/``writer``/``checks``. torch and
peft are imported inside ``merge_adapter``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sblite.export.checks import MERGE_TOLERANCE, check_prompts, compare_logits
from sblite.export.common import (
    PROVENANCE_NAME,
    ExportError,
    check_disk_space,
    check_out,
    resolve_spec,
    versions,
)
from sblite.provenance import sha256_file, sha256_text
from sblite.rundir import RunDir

MERGE_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "auto": "auto"}
#: The LoRA weights inside an adapter directory; their sha256 identifies the adapter a merge came from.
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass
class MergeResult:
    out: Path
    base: str
    adapter: str
    dtype: str
    n_params: int
    bytes: int
    seconds: float
    check: dict[str, Any]
    provenance: Path
    reused: bool = False


def source_provenance(run_dir: str | None, adapter: str | None, base: str) -> dict[str, Any]:
    """What a merged model or GGUF came from: the run, its recipe and reward config, the base and adapter."""
    info: dict[str, Any] = {"base": base, "adapter": adapter, "run_dir": run_dir}
    if adapter and (Path(adapter) / ADAPTER_WEIGHTS).is_file():
        info["adapter_sha256"] = sha256_file(Path(adapter) / ADAPTER_WEIGHTS)
    if run_dir:
        run = RunDir(run_dir)
        if run.recipe_file.is_file():
            cfg = run.recipe_dict()
            info["recipe"] = {
                "name": cfg.get("name"),
                "sha256": sha256_text(run.recipe_file.read_text(encoding="utf-8")),
                "model": cfg.get("model", {}),
                "max_completion_length": (cfg.get("grpo") or {}).get("max_completion_length"),
            }
        if run.provenance_file.is_file():
            p = run.provenance()
            info["reward"] = p.get("reward")
            info["data"] = p.get("data")
            info["train_git_commit"] = p.get("git_commit")
            info["stages"] = [
                {k: s.get(k) for k in ("stage", "global_step", "adapter_dir")} for s in p.get("stages", [])
            ]
    return info


def merge_adapter(
    src: str | Path,
    out: str | Path,
    dtype: str = "auto",
    force: bool = False,
    *,
    log: Callable[[str], None] | None = None,
) -> MergeResult:
    """Merge the LoRA adapter of ``src`` (a RUN_DIR or an adapter dir) into its base model and save the
    result to ``out`` as safetensors with the run's tokenizer and chat template.

    The merge happens in float32; the merged model (cast to ``dtype``: f32, f16, bf16 or auto = the base's)
    must give the adapter model's logits on budget-format prompts within ``MERGE_TOLERANCE`` before
    anything is written."""
    import torch

    log = log or (lambda _msg: None)
    start = time.perf_counter()
    out = Path(out)
    if dtype not in MERGE_DTYPES and dtype not in MERGE_TOLERANCE:
        raise ExportError(f"--dtype {dtype}: choose bf16, f16, f32 or auto")
    spec = resolve_spec(str(src))
    if not spec.adapter:
        raise ExportError(
            f"{src} is not a run directory or a LoRA adapter (no adapter_config.json); a full model directory "
            "needs no merge: pass it to `sblite export` directly"
        )
    check_out(out, force, [Path(spec.adapter), *([Path(spec.run_dir)] if spec.run_dir else [])])

    from peft import PeftModel

    from sblite.generate.hf import load_for_inference
    from sblite.logs import quiet_libraries

    quiet_libraries()
    log(f"loading {spec.base} + {spec.adapter}")
    base, tok = load_for_inference(spec.base, dtype="float32", device="cpu", tokenizer=spec.adapter)
    if spec.chat_template:
        tok.chat_template = spec.chat_template
    stored = str(getattr(base.config, "dtype", None) or "float32").replace("torch.", "")
    target = MERGE_DTYPES.get(dtype, dtype)
    target = (stored if stored in MERGE_TOLERANCE else "float32") if target == "auto" else target
    n_params = sum(p.numel() for p in base.parameters())
    need = n_params * {"float32": 4, "float16": 2, "bfloat16": 2}[target] + 64 * 1024 * 1024
    check_disk_space(out, need, f"the merged model ({target})")

    peft_model = PeftModel.from_pretrained(base, spec.adapter)
    peft_model.eval()
    prompts = check_prompts(tok, instruction_in_user=spec.instruction_in_user)
    import copy

    reference = copy.deepcopy(peft_model)  # the adapter model, unmerged, float32
    merged = peft_model.merge_and_unload()
    merged = merged.to(getattr(torch, target))
    merged.eval()
    log("checking merged logits against the adapter model")
    check = compare_logits(reference, merged, tok, prompts)
    check["tolerance"] = MERGE_TOLERANCE[target]
    check["passed"] = check["rel_logit_diff"] <= check["tolerance"]
    del reference
    if not check["passed"]:
        raise ExportError(
            f"merged logits differ from the adapter model's by {check['rel_logit_diff']:.2e} (relative), more "
            f"than the {target} tolerance {check['tolerance']:.0e}; nothing was written"
        )

    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        merged.config.dtype = getattr(torch, target)
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.padding_side = "right"  # a saved model starts neutral; sblite's loaders pick their own side
        tok.save_pretrained(tmp)
        weights = {p.name: sha256_file(p) for p in sorted(tmp.glob("*.safetensors"))}
        prov = {
            "artifact": "merged",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "dtype": target,
            "n_params": n_params,
            "source": source_provenance(spec.run_dir, spec.adapter, spec.base),
            "instruction_in_user": spec.instruction_in_user,
            "sha256": weights,
            "merge_check": check,
            "versions": versions(),
        }
        (tmp / PROVENANCE_NAME).write_text(json.dumps(prov, indent=2, default=str), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    return MergeResult(
        out=out,
        base=spec.base,
        adapter=spec.adapter,
        dtype=target,
        n_params=n_params,
        bytes=size,
        seconds=time.perf_counter() - start,
        check=check,
        provenance=out / PROVENANCE_NAME,
    )


def reusable_merge(merged_dir: Path, adapter: str) -> MergeResult | None:
    """A merge already in ``merged_dir`` of exactly this adapter (same sha256): exporting a second quant
    into the same --out does not merge again."""
    prov_path = merged_dir / PROVENANCE_NAME
    if not prov_path.is_file():
        return None
    prov = json.loads(prov_path.read_text(encoding="utf-8"))
    src = prov.get("source", {})
    file = Path(adapter) / ADAPTER_WEIGHTS
    if not file.is_file() or src.get("adapter_sha256") != sha256_file(file):
        return None
    size = sum(p.stat().st_size for p in merged_dir.iterdir() if p.is_file())
    return MergeResult(
        merged_dir,
        src.get("base", ""),
        adapter,
        prov.get("dtype", ""),
        prov.get("n_params", 0),
        size,
        0.0,
        prov.get("merge_check", {}),
        prov_path,
        reused=True,
    )
