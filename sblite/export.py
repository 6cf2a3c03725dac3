"""Merge a trained adapter into its base model and export GGUF files that are proven to load and agree.

    sblite merge  runs/demo --out merged/                     # adapter + base -> safetensors
    sblite export runs/demo --gguf --quant q8_0 --out gguf/   # merge, write GGUF, verify
    sblite export merged/   --gguf --quant q4_k_m --out gguf/ --ollama

``merge_adapter`` merges in float32, then checks that the merged model's logits equal the adapter model's on
a few budget-format prompts before anything is written. ``export_gguf`` writes the GGUF with
``sblite.ggufwrite`` (f32/f16/bf16/q8_0, no llama.cpp, no network) or through llama.cpp's quantizer
(k-quants), then verifies it with its real consumers: transformers loads it (``gguf_file=``) and its
logits must match the merged model's, and, when llama-cpp-python is installed, llama.cpp must load it,
tokenize the budget tags as the HF tokenizer does, and continue a prompt greedily with the same tokens.

Every artifact gets a provenance JSON beside it (source run, recipe, reward config, quant, sha256,
verification numbers). Nothing is overwritten without ``force``, and free disk space is checked first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sblite import protocol
from sblite.data.sources import sha256_file
from sblite.ggufwrite import ALL_QUANTS, LLAMACPP_QUANTS, NATIVE_QUANTS, GGUFExportError

PROVENANCE_NAME = "sblite-provenance.json"
MERGE_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "auto": "auto"}
#: Largest allowed max|Δlogit| / max(1, max|logit|) against the float32 reference, per stored type.
MERGE_TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 4e-2}
#: GGUF read back by transformers vs the merged float32 model: float types by the relative logit difference,
#: quantized ones by the mean KL divergence of the next-token distributions (one logit of a q8_0 model can
#: be a few percent off while the distribution barely moves).
GGUF_TOLERANCE = {
    "f32": ("rel_logit_diff", 1e-4),
    "f16": ("rel_logit_diff", 1e-2),
    "bf16": ("rel_logit_diff", 4e-2),
    "q8_0": ("mean_kl", 2e-2),
}
#: llama.cpp's k-quants: sanity bounds by bit width (SmolLM2-135M q4_k_m measured 0.11).
KQUANT_TOLERANCE = {"q2": 1.0, "q3": 0.5, "q4": 0.3, "q5": 0.15, "q6": 0.1}
#: Types for which llama.cpp's greedy continuation must equal transformers' token for token.
GREEDY_EXACT = ("f32", "f16")
CHECK_QUESTIONS = (
    "What is 12 + 345?",
    "Ann has 7 apples and gets 5 more. How many apples does Ann have now?",
)
CHECK_COMPLETION = protocol.render_completion(24, "7 + 5 = 12. The answer is \\boxed{12}.")


class ExportError(GGUFExportError):
    """Bad input or a failed check; the message says what to do."""


class VerificationError(ExportError):
    """The artifact was written but a consumer disagrees with it; ``result`` holds the numbers."""

    def __init__(self, message: str, result: Any):
        super().__init__(message)
        self.result = result


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


# ------------------------------------------------------------------------------------------- helpers


def _free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_disk_space(target: Path, need: int, what: str) -> None:
    """Fail before writing when the file system holding ``target`` has less than ``need`` bytes free."""
    free = _free_bytes(target)
    if free < need:
        raise ExportError(
            f"not enough disk space for {what}: needs ~{need / 1e9:.2f} GB, {free / 1e9:.2f} GB free at "
            f"{target}; free space or choose another --out"
        )


def _check_out(out: Path, force: bool, protected: list[Path]) -> None:
    resolved = out.resolve()
    for p in protected:
        p = p.resolve()
        if resolved == p or resolved in p.parents:
            raise ExportError(f"--out {out} would overwrite the source {p}; choose another directory")
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; give a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExportError(f"--out {out} exists and is not empty; add --force to overwrite it")


def _versions() -> dict[str, str]:
    from sblite.doctor import package_versions

    return package_versions(("sblite", "torch", "transformers", "peft", "gguf", "llama_cpp_python"))


def source_provenance(run_dir: str | None, adapter: str | None, base: str) -> dict[str, Any]:
    """What a merged model or GGUF came from: the run, its recipe and reward config, the base and adapter."""
    info: dict[str, Any] = {"base": base, "adapter": adapter, "run_dir": run_dir}
    if adapter and (Path(adapter) / "adapter_model.safetensors").is_file():
        info["adapter_sha256"] = sha256_file(Path(adapter) / "adapter_model.safetensors")
    if run_dir:
        run = Path(run_dir)
        recipe = run / "recipe.resolved.yaml"
        if recipe.is_file():
            import yaml

            text = recipe.read_text(encoding="utf-8")
            cfg = yaml.safe_load(text) or {}
            info["recipe"] = {
                "name": cfg.get("name"),
                "sha256": hashlib.sha256(text.encode()).hexdigest(),
                "model": cfg.get("model", {}),
                "max_completion_length": (cfg.get("grpo") or {}).get("max_completion_length"),
            }
        prov = run / "provenance.json"
        if prov.is_file():
            p = json.loads(prov.read_text(encoding="utf-8"))
            info["reward"] = p.get("reward")
            info["data"] = p.get("data")
            info["train_git_commit"] = p.get("git_commit")
            info["stages"] = [
                {k: s.get(k) for k in ("stage", "global_step", "adapter_dir")} for s in p.get("stages", [])
            ]
    return info


def check_prompts(tokenizer, *, instruction_in_user: bool = False) -> list[str]:
    """Budget-format texts the logit checks run on: prompts in the model's chat template, one with a
    complete ``<budget>…</budget><solution>…</solution>`` answer."""
    prompts = [
        protocol.render_prompt(tokenizer, q, instruction_in_user=instruction_in_user) for q in CHECK_QUESTIONS
    ]
    return [prompts[0], prompts[1] + CHECK_COMPLETION]


def compare_logits(ref_model, model, tokenizer, prompts: list[str]) -> dict[str, float]:
    """max |Δlogit|, the same relative to the logit scale, top-1 agreement and the mean KL divergence
    KL(ref ‖ model) of the next-token distributions, over every position of ``prompts``."""
    import torch

    diff = scale = kl_sum = 0.0
    agree = total = 0
    with torch.no_grad():
        for text in prompts:
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
            a = ref_model(ids).logits.float()
            b = model(ids).logits.float()
            diff = max(diff, (a - b).abs().max().item())
            logp, logq = a.log_softmax(-1), b.log_softmax(-1)
            kl_sum += (logp.exp() * (logp - logq)).sum(-1).sum().item()
            scale = max(scale, a.abs().max().item())
            agree += (a.argmax(-1) == b.argmax(-1)).sum().item()
            total += a.shape[1]
    return {
        "max_abs_logit_diff": diff,
        "logit_scale": scale,
        "rel_logit_diff": diff / max(1.0, scale),
        "top1_agreement": agree / max(1, total),
        "mean_kl": max(0.0, kl_sum / max(1, total)),  # float error can make a zero KL slightly negative
        "positions": total,
    }


# ------------------------------------------------------------------------------------------- merge


def _spec_for(src: str):
    from sblite.inference import resolve_model_spec

    try:
        return resolve_model_spec(src)
    except (FileNotFoundError, ValueError) as err:
        raise ExportError(str(err)) from None


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
    spec = _spec_for(str(src))
    if not spec.adapter:
        raise ExportError(
            f"{src} is not a run directory or a LoRA adapter (no adapter_config.json); a full model directory "
            "needs no merge: pass it to `sblite export` directly"
        )
    _check_out(out, force, [Path(spec.adapter), *([Path(spec.run_dir)] if spec.run_dir else [])])

    from peft import PeftModel

    from sblite.generation import load_for_inference
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
            "versions": _versions(),
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


def _reusable_merge(merged_dir: Path, adapter: str) -> MergeResult | None:
    """A merge already in ``merged_dir`` of exactly this adapter (same sha256): exporting a second quant
    into the same --out does not merge again."""
    prov_path = merged_dir / PROVENANCE_NAME
    if not prov_path.is_file():
        return None
    prov = json.loads(prov_path.read_text(encoding="utf-8"))
    src = prov.get("source", {})
    file = Path(adapter) / "adapter_model.safetensors"
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


# ------------------------------------------------------------------------------------------- export


def _templates(model_dir: Path, instruction_in_user: bool) -> dict[str, str] | None:
    from sblite.ggufwrite import budget_chat_template

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
        "selfbudgeter": budget_chat_template(template, protocol.SYSTEM_PROMPT, in_user=instruction_in_user),
    }


def _model_source(src: str) -> tuple[Path, dict[str, Any]] | None:
    """``src`` as a full model directory (with its provenance, if sblite merged it), or None."""
    from sblite.models import resolve_model

    try:
        path = Path(resolve_model(src))
    except (ValueError, FileNotFoundError) as err:
        raise ExportError(str(err)) from None
    if (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
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
) -> ExportResult:
    """Export ``src`` (a merged/full model dir, a ``builtin:`` name, a RUN_DIR or an adapter dir; the last
    two are merged into ``out/merged`` first) to ``out/<name>-<quant>.gguf``, verify it (``verify``),
    write a provenance JSON beside it and, with ``ollama``, a Modelfile.

    Raises ``ExportError`` on bad input (before anything is written) and ``VerificationError`` when the
    written file fails a check (the file and its provenance stay, marked as failed)."""
    from sblite import llamacpp
    from sblite.ggufwrite import estimate_gguf_bytes, write_gguf

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
        spec = _spec_for(str(src))
        if not spec.adapter:
            raise ExportError(f"{src}: not a model directory, run directory or adapter (no config.json)")
        merged_dir = out / "merged"
        merge = None if force else _reusable_merge(merged_dir, spec.adapter)
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

    t0 = time.perf_counter()
    try:
        if quant in NATIVE_QUANTS:
            written = write_gguf(
                model_dir, target, quant, name=name, chat_templates=templates, progress=progress
            )
            seconds["write"] = written.seconds
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
    result.provenance = write_gguf_provenance(result, source, written.tensor_types)
    if failure:
        raise VerificationError(f"{target.name} failed verification: {failure}", result)
    return result


def _stored_dtype(model_dir: Path) -> str:
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    return str(cfg.get("dtype") or cfg.get("torch_dtype") or "float32")


def write_gguf_provenance(result: ExportResult, source: dict[str, Any], tensor_types: dict[str, int]) -> Path:
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
        "versions": _versions(),
    }
    path.write_text(json.dumps(prov, indent=2, default=str), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------- verification


def _silence_gguf_loader_bar() -> None:
    """transformers' GGUF loader draws its own tqdm bar, which would break sblite's progress view."""
    import functools

    import transformers.modeling_gguf_pytorch_utils as loader

    if not isinstance(loader.tqdm, functools.partial):
        loader.tqdm = functools.partial(loader.tqdm, disable=True)


def verify_gguf(
    gguf_path: str | Path, model_dir: str | Path, quant: str, *, instruction_in_user: bool = False
) -> dict[str, Any]:
    """Check ``gguf_path`` with transformers and (when installed) llama.cpp against the model in
    ``model_dir``. Returns the numbers seen; ``failure`` names the first failed check (absent if none)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sblite import llamacpp
    from sblite.logs import quiet_libraries

    quiet_libraries()
    gguf_path = Path(gguf_path)
    tok = AutoTokenizer.from_pretrained(model_dir)
    ref = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompts = check_prompts(tok, instruction_in_user=instruction_in_user)
    report: dict[str, Any] = {"quant": quant}
    failures: list[str] = []

    gguf_src = dict(
        pretrained_model_name_or_path=gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    _silence_gguf_loader_bar()
    try:
        hf = AutoModelForCausalLM.from_pretrained(**gguf_src)
        report["transformers_config"] = "from the GGUF"
    except RuntimeError as err:
        # transformers' GGUF reader maps fewer hparams than llama.cpp reads (e.g. no attention.key_length for
        # qwen3, so a head_dim other than 128 mis-sizes): load the GGUF's weights into the model's config.
        from transformers import AutoConfig

        hf = AutoModelForCausalLM.from_pretrained(**gguf_src, config=AutoConfig.from_pretrained(model_dir))
        report["transformers_config"] = f"from {model_dir} (transformers' GGUF reader: {str(err)[:80]})"
    hf.eval()
    tf = compare_logits(ref, hf, tok, prompts)
    tf["metric"], tf["tolerance"] = GGUF_TOLERANCE.get(quant) or ("mean_kl", KQUANT_TOLERANCE[quant[:2]])
    tf["passed"] = tf[tf["metric"]] <= tf["tolerance"]
    report["transformers"] = tf
    if not tf["passed"]:
        failures.append(f"transformers: {tf['metric']} {tf[tf['metric']]:.2e} > {tf['tolerance']:.0e}")

    if not llamacpp.available():
        report["llama_cpp"] = f"skipped: llama-cpp-python not installed ({llamacpp.INSTALL_HINT})"
    else:
        lc = llamacpp.check_against(gguf_path, tok, ref, hf, prompts, exact=quant in GREEDY_EXACT)
        report["llama_cpp"] = lc
        if not lc["tokenization_match"]:
            failures.append(f"llama.cpp tokenizes differently: {lc['tokenization_mismatches'][:2]}")
        if quant in GREEDY_EXACT and not lc["greedy_match"]:
            failures.append(
                f"llama.cpp's greedy continuation differs from transformers' at token {lc['greedy_diverged_at']}"
            )
    if failures:
        report["failure"] = "; ".join(failures)
    report["passed"] = not failures
    return report


# ------------------------------------------------------------------------------------------- Ollama


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


def result_json(result: ExportResult | MergeResult) -> dict[str, Any]:
    return json.loads(json.dumps(asdict(result), default=str))
