"""``run_prepare``: a dataset in, a prepared directory out (``sblite prepare`` is a thin layer over it).

    sblite prepare --dataset gsm8k --labels reference --tokenizer ../shared/data/tokenizers/qwen2 --out data/gsm8k
    sblite prepare --dataset gsm8k-test --labels sample --model builtin:smollm2-135m -k 4 --limit 32 --out data/s

The output directory receives (each written to a temp file and renamed, ``report.json`` last):

- ``sft.jsonl``: questions with a correct labelled response: ``id, source, question, answer, completion,
  b_max, level, difficulty`` (+ ``pass_rate, lengths, k`` in sample mode); with ``--targets all`` one row per
  distinct correct response, so a question can appear several times with different budgets;
- ``grpo.jsonl``: every kept question, ``b_max`` None meaning infinity (no correct response);
- ``rejects.jsonl``: every input record that was not kept, with its line number, field and reason;
- ``report.json``: counts (``read == kept + rejected``), per-level pass rate and budget quantiles, rejects by
  reason, and provenance (input sha256, tokenizer, model, k, temperature, seed, versions, arguments).

Sample mode caches generations under ``DIR/.cache/`` keyed by everything that changes them, so re-running a
killed command continues where it stopped. A non-empty ``DIR`` (other than that cache) is refused unless
``force=True``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from sblite.data.labels import (
    TARGETS,
    Label,
    SampleCache,
    SampleSettings,
    label_from_samples,
    label_reference,
    sample_generations,
    sample_prompts,
)
from sblite.data.sources import (
    Reject,
    Row,
    SourceError,
    Validator,
    collect_columns,
    read_records,
    resolve_fields,
    resolve_source,
    sha256_file,
)
from sblite.protocol import SAMPLE_STYLES

CACHE_DIR = ".cache"
OUTPUT_FILES = ("sft.jsonl", "grpo.jsonl", "rejects.jsonl", "report.json")

#: ``progress(stage, advance, total)``: ``total`` is set on a stage's first call (advance 0).
ProgressFn = Callable[[str, int, int | None], None]


class PrepareError(Exception):
    """A usage or input problem; the message is one line saying what to fix (the CLI exits 2 with it)."""


@dataclass
class PrepareOptions:
    dataset: str
    out: str
    labels: str = "reference"  # reference | sample
    model: str | None = None
    tokenizer: str | None = None
    k: int = 4
    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 512
    batch_size: int = 8
    limit: int | None = None
    seed: int = 0
    question_field: str | None = None
    answer_field: str | None = None
    solution_field: str | None = None
    level_field: str | None = None
    id_field: str | None = None
    data_dir: str | None = None
    force: bool = False
    instruction_in_user: bool = False
    styles: tuple[str, ...] = ("plain",)  # sample mode: instructions to sample under (protocol.SAMPLE_STYLES)
    targets: str = "shortest"  # sample mode: shortest | all (every distinct correct response is an SFT row)
    max_prompt_tokens: int | None = None
    backend: str = "auto"  # auto | hf | vllm (sample mode)
    command: list[str] | None = None  # the argv, for provenance


@dataclass
class PrepareResult:
    out: Path
    report: dict[str, Any]
    sft: int = 0
    grpo: int = 0
    rejects: list[Reject] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- helpers


def _check_out_dir(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise PrepareError(f"--out {out}: exists and is not a directory")
    if out.is_dir():
        present = [p.name for p in out.iterdir() if p.name != CACHE_DIR]
        if present and not force:
            raise PrepareError(
                f"--out {out} is not empty ({', '.join(sorted(present)[:4])}); pass --force to overwrite"
            )


def _write_atomic(out: Path, name: str, lines: list[str] | str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if isinstance(lines, str):
                f.write(lines)
            else:
                for line in lines:
                    f.write(line)
                    f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _quantiles(values: list[int]) -> dict[str, float | None]:
    if not values:
        return {"p10": None, "p50": None, "p90": None}
    v = sorted(values)

    def q(p: float) -> float:  # linear interpolation, as numpy's default
        pos = (len(v) - 1) * p
        lo = int(pos)
        hi = min(lo + 1, len(v) - 1)
        return round(v[lo] + (v[hi] - v[lo]) * (pos - lo), 1)

    return {"p10": q(0.1), "p50": q(0.5), "p90": q(0.9)}


def _versions() -> dict[str, str | None]:
    from sblite.doctor import package_versions

    pkgs = ("sblite", "transformers", "datasets", "math-verify", "torch", "tokenizers")
    return {"python": platform.python_version(), **dict.fromkeys(pkgs), **package_versions(pkgs)}


def _load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    from sblite.models import resolve_model

    try:
        return AutoTokenizer.from_pretrained(resolve_model(name))
    except Exception as err:  # noqa: BLE001 - any load failure is a usage error here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PrepareError(f"cannot load tokenizer {name!r}: {first[:200]}") from None


def _stats(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> list[dict[str, Any]]:
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(key(r), []).append(r)
    out = []
    for g in sorted(groups, key=lambda x: (x is None, str(x) if not isinstance(x, int) else f"{x:04d}")):
        rs = groups[g]
        budgets = [r["b_max"] for r in rs if r["b_max"] is not None]
        rates = [r["pass_rate"] for r in rs if "pass_rate" in r]
        out.append(
            {
                "group": g,
                "count": len(rs),
                "labelled": len(budgets),
                "pass_rate": round(sum(rates) / len(rates), 4) if rates else None,
                "difficulty_mean": round(sum(r["difficulty"] for r in rs) / len(rs), 4),
                "budget": _quantiles(budgets),
            }
        )
    return out


def _difficulty_bucket(d: float) -> str:
    lo = min(int(d * 5), 4) / 5
    return f"{lo:.1f}-{lo + 0.2:.1f}"


# ------------------------------------------------------------------------------------------- main entry


def run_prepare(
    opts: PrepareOptions,
    *,
    progress: ProgressFn | None = None,
    generate: Callable[[list[str], int], list[list[Any]]] | None = None,
    tokenizer: Any = None,
    verify: Callable[[str, str], bool] | None = None,
) -> PrepareResult:
    """Read, validate, label and write one prepared dataset; see the module docstring.

    ``generate``/``tokenizer``/``verify`` replace the model, tokenizer and verifier (tests inject doubles);
    by default the tokenizer comes from ``--tokenizer`` or the model, the generator is ``generate_batch`` on
    the model (vLLM with ``backend="vllm"``, or ``auto`` on a GPU with vLLM installed), and the verifier is
    ``sblite.verify.is_correct``. Raises ``PrepareError`` (usage/input problems) and nothing else on bad data.
    """
    prog = progress or (lambda stage, advance, total: None)
    if opts.labels not in ("reference", "sample"):
        raise PrepareError(f"--labels {opts.labels!r}: choose reference or sample")
    if opts.k < 1 or opts.batch_size < 1 or opts.max_new_tokens < 1:
        raise PrepareError("-k, --batch-size and --max-new-tokens must be at least 1")
    if opts.limit is not None and opts.limit < 1:
        raise PrepareError("--limit must be at least 1")
    unknown = [s for s in opts.styles if s not in SAMPLE_STYLES]
    if unknown or not opts.styles:
        raise PrepareError(f"--styles {','.join(opts.styles)}: choose from {', '.join(SAMPLE_STYLES)}")
    if opts.targets not in TARGETS:
        raise PrepareError(f"--targets {opts.targets!r}: choose {' or '.join(TARGETS)}")
    if opts.labels == "sample" and not opts.model and generate is None:
        raise PrepareError("--labels sample needs --model (e.g. builtin:smollm2-135m or a model directory)")
    if opts.labels == "reference" and not (opts.tokenizer or opts.model) and tokenizer is None:
        raise PrepareError("--labels reference needs a tokenizer: pass --tokenizer DIR (or --model)")
    out = Path(opts.out)
    _check_out_dir(out, opts.force)

    # ---- read and validate
    try:
        source = resolve_source(opts.dataset, opts.data_dir)
        records = list(read_records(source))
        fields = resolve_fields(
            source,
            collect_columns(records),
            question_field=opts.question_field,
            answer_field=opts.answer_field,
            solution_field=opts.solution_field,
            level_field=opts.level_field,
            id_field=opts.id_field,
        )
    except SourceError as err:
        raise PrepareError(str(err)) from None
    if not records:
        raise PrepareError(f"{opts.dataset}: no records to read")
    validate = Validator(source, fields)
    rows: list[Row] = []
    rejects: list[Reject] = []
    read = 0
    for rec in records:
        if opts.limit is not None and read >= opts.limit:
            break
        read += 1
        res = validate(rec)
        (rows if isinstance(res, Row) else rejects).append(res)  # type: ignore[arg-type]
    input_sha = sha256_file(source.path) if source.path else None

    # ---- tokenizer (and model)
    tok_name = opts.tokenizer or opts.model
    if tokenizer is not None:
        tok = tokenizer
    elif opts.tokenizer or opts.labels == "reference":
        tok = _load_tokenizer(tok_name) if tok_name else None
    else:
        tok = None  # sample mode: the model's own, loaded with it
    max_level = max([5] + [r.level for r in rows if r.level is not None])

    labels: dict[str, Label] = {}
    settings = SampleSettings(
        k=opts.k,
        temperature=opts.temperature,
        top_p=opts.top_p,
        max_new_tokens=opts.max_new_tokens,
        batch_size=opts.batch_size,
        seed=opts.seed,
        instruction_in_user=opts.instruction_in_user,
    )
    cache_files: list[Path] = []
    engine = None
    if opts.labels == "reference":
        if opts.max_prompt_tokens:
            rows, rejects = _reject_long_prompts(
                rows, rejects, [r.question for r in rows], tok, opts.max_prompt_tokens
            )
        prog("label", 0, len(rows))
        for i, r in enumerate(rows):
            labels[r.id] = label_reference(r, tok, max_level)
            if i % 256 == 255:
                prog("label", 256, None)
        prog("label", len(rows) % 256, None)
    else:
        # Prompts use the sampled model's chat template; budgets count in the target tokenizer
        # (--tokenizer, default the model's own).
        prompt_tok, ctx = tok, None
        if generate is None:
            generate, prompt_tok, engine, ctx = _make_generator(opts, settings)
            tok = tok or prompt_tok
        if tok is None or prompt_tok is None:
            raise PrepareError("--labels sample needs a tokenizer (--tokenizer or --model)")
        prompts = sample_prompts(rows, prompt_tok, settings)
        prompt_lens = [len(prompt_tok.encode(p, add_special_tokens=False)) for p in prompts]
        limit_tokens = opts.max_prompt_tokens or (ctx - opts.max_new_tokens if ctx else None)
        if limit_tokens:
            keep = [i for i, n in enumerate(prompt_lens) if n <= limit_tokens]
            for i, n in enumerate(prompt_lens):
                if n > limit_tokens:
                    r = rows[i]
                    rejects.append(
                        Reject(
                            r.line,
                            "prompt_too_long",
                            f"prompt is {n} tokens; limit {limit_tokens}",
                            r.question[:300],
                            field="question",
                            id=r.id,
                        )
                    )
            rows = [rows[i] for i in keep]
            prompt_lens = [prompt_lens[i] for i in keep]
        prog("sample", 0, len(rows) * len(opts.styles))
        samples: dict[str, list[dict[str, Any]]] = {r.id: [] for r in rows}
        for style in opts.styles:
            # One cache file per style: its key covers the style's instruction, so plain-only runs reuse theirs.
            style_settings = replace(settings, system_prompt=SAMPLE_STYLES[style])
            cache_key = _cache_key(opts, style_settings, input_sha, fields, tok_name)
            cache_files.append(out / CACHE_DIR / f"samples-{cache_key}.jsonl")
            got = sample_generations(
                rows,
                sample_prompts(rows, prompt_tok, style_settings),
                generate,
                style_settings,
                SampleCache(cache_files[-1]),
                prompt_lengths=prompt_lens,
                on_progress=lambda n, cached: prog("sample", n, None),
            )
            for r in rows:
                samples[r.id] += [{**g, "style": style} for g in got[r.id]]
        if verify is None:
            from sblite.verify import is_correct as verify
        prog("verify", 0, len(rows))
        for r in rows:
            labels[r.id] = label_from_samples(r, samples[r.id], tok, verify, targets=opts.targets)
            prog("verify", 1, None)

    rejects.sort(key=lambda rj: rj.line)
    # ---- write
    sft_lines, grpo_lines, out_rows = [], [], []
    for r in rows:
        lab = labels[r.id]
        base = {"id": r.id, "source": source.name, "question": r.question, "answer": r.answer}
        common = {"b_max": lab.b_max, "level": r.level, "difficulty": round(float(lab.difficulty), 4)}
        extra = {k: lab.extra[k] for k in ("pass_rate", "lengths", "k") if k in lab.extra}
        grpo = {**base, **common, **extra}
        grpo_lines.append(json.dumps(grpo, ensure_ascii=False))
        out_rows.append({**grpo, "difficulty_source": lab.difficulty_source})
        for completion in lab.completions:
            sft = {**base, "completion": completion, **common, **extra}
            sft_lines.append(json.dumps(sft, ensure_ascii=False))
    reject_counts = Counter(rj.reason for rj in rejects)
    report = {
        "counts": {
            "read": read,
            "kept": len(rows),
            "rejected": len(rejects),
            "sft": len(sft_lines),
            "sft_questions": sum(1 for r in rows if labels[r.id].completions),
            "grpo": len(grpo_lines),
            "no_correct_response": sum(1 for r in out_rows if r["b_max"] is None),
            "rejects_by_reason": dict(sorted(reject_counts.items())),
        },
        "by_level": _stats(out_rows, lambda r: r["level"]),
        "by_difficulty": _stats(out_rows, lambda r: _difficulty_bucket(r["difficulty"])),
        "difficulty_sources": dict(Counter(r["difficulty_source"] for r in out_rows)),
        "provenance": {
            "source": source.describe(),
            "fields": fields.describe(),
            "input_sha256": input_sha,
            "labels": opts.labels,
            "tokenizer": tok_name if tokenizer is None else getattr(tokenizer, "name_or_path", "injected"),
            "model": opts.model,
            "engine": engine,
            "k": opts.k if opts.labels == "sample" else None,
            "temperature": opts.temperature if opts.labels == "sample" else None,
            "top_p": opts.top_p if opts.labels == "sample" else None,
            "max_new_tokens": opts.max_new_tokens if opts.labels == "sample" else None,
            "instruction_in_user": opts.instruction_in_user if opts.labels == "sample" else None,
            "styles": list(opts.styles) if opts.labels == "sample" else None,
            "targets": opts.targets if opts.labels == "sample" else None,
            "sample_caches": [str(f) for f in cache_files] or None,
            "seed": opts.seed,
            "limit": opts.limit,
            "sample_cache": str(cache_files[0]) if cache_files else None,
            "budget_measure": "protocol.count_solution_tokens of the tokenised completion (tokens after </budget>)",
            "versions": _versions(),
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "options": {k: v for k, v in asdict(opts).items() if k != "command"},
            "command": opts.command,
        },
    }
    assert report["counts"]["read"] == report["counts"]["kept"] + report["counts"]["rejected"]
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out, "sft.jsonl", sft_lines)
    _write_atomic(out, "grpo.jsonl", grpo_lines)
    _write_atomic(out, "rejects.jsonl", [json.dumps(rj.to_json(), ensure_ascii=False) for rj in rejects])
    _write_atomic(out, "report.json", json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return PrepareResult(out=out, report=report, sft=len(sft_lines), grpo=len(grpo_lines), rejects=rejects)


def _reject_long_prompts(rows, rejects, texts, tok, limit):
    kept = []
    for r, text in zip(rows, texts, strict=True):
        n = len(tok.encode(text, add_special_tokens=False))
        if n > limit:
            rejects.append(
                Reject(
                    r.line,
                    "prompt_too_long",
                    f"question is {n} tokens; limit {limit}",
                    r.question[:300],
                    field="question",
                    id=r.id,
                )
            )
        else:
            kept.append(r)
    return kept, rejects


def _cache_key(opts: PrepareOptions, settings: SampleSettings, input_sha, fields, tok_name) -> str:
    """Everything that changes the generations (not --limit: a longer run reuses a shorter one's work)."""
    key = {
        "dataset": opts.dataset,
        "input_sha256": input_sha,
        "fields": fields.describe(),
        "model": opts.model,
        "tokenizer": tok_name,
        "settings": asdict(settings),
        "backend": opts.backend,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _make_generator(opts: PrepareOptions, settings: SampleSettings):
    """``(generate, model tokenizer, engine name, context length)`` for sample mode on the chosen backend."""
    from sblite.generation import VLLMGenerator, generate_batch, load_for_inference, vllm_available

    backend = opts.backend
    if backend not in ("auto", "hf", "vllm"):
        raise PrepareError(f"--backend {backend!r}: choose auto, hf or vllm")
    if backend == "vllm" and not vllm_available():
        raise PrepareError("--backend vllm needs the vllm package and a CUDA GPU; use --backend hf")
    use_vllm = backend == "vllm" or (backend == "auto" and vllm_available())
    assert opts.model is not None
    try:
        if use_vllm:
            gen = VLLMGenerator(opts.model, seed=opts.seed)
            ctx = getattr(gen.llm.llm_engine.model_config, "max_model_len", None)
            tokenizer = gen.tokenizer

            return _sampler(gen.generate, settings), tokenizer, "vllm", ctx
        model, model_tok = load_for_inference(opts.model)
    except PrepareError:
        raise
    except Exception as err:  # noqa: BLE001 - a bad model path is a usage error
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PrepareError(f"cannot load model {opts.model!r}: {first[:200]}") from None
    tokenizer = model_tok
    ctx = getattr(model.config, "max_position_embeddings", None)

    return _sampler(partial(generate_batch, model, model_tok), settings), tokenizer, "hf-compact", ctx


def _sampler(engine_generate: Callable[..., list[list[Any]]], settings: SampleSettings):
    """``generate(prompts, seed)`` for sample mode over any engine with ``generate_batch``'s contract."""

    def generate(prompts: list[str], seed: int) -> list[list[Any]]:
        return engine_generate(
            prompts,
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            num_return_sequences=settings.k,
            batch_size=len(prompts),
            seed=seed,
        )

    return generate


def load_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a prepared ``*.jsonl`` back (tests, the trainer)."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def render_report(report: dict[str, Any]) -> Any:
    """The report as a rich renderable: rows per level with pass rate and budget quantiles, rejects by reason."""
    from rich.console import Group
    from rich.table import Table

    counts = report["counts"]
    prov = report["provenance"]

    def fmt(v: Any) -> str:
        return "—" if v is None else (f"{v:.0f}" if isinstance(v, float) and v.is_integer() else str(v))

    title = (
        f"sblite prepare: {prov['source']['spec']} ({prov['labels']} labels, tokenizer {prov['tokenizer']})"
    )
    levels = Table(title=title, title_justify="left")
    for col in ("level", "rows", "labelled", "pass", "diff", "budget p10", "p50", "p90"):
        levels.add_column(col, justify="right", no_wrap=True)
    groups = report["by_level"]
    if len(groups) == 1 and groups[0]["group"] is None:  # no levels: show difficulty buckets instead
        levels.columns[0].header = "difficulty"
        groups = report["by_difficulty"]
    for g in groups:
        pr = g["pass_rate"]
        levels.add_row(
            fmt(g["group"]) if g["group"] is not None else "none",
            str(g["count"]),
            str(g["labelled"]),
            "—" if pr is None else f"{pr:.0%}",
            f"{g['difficulty_mean']:.2f}",
            fmt(g["budget"]["p10"]),
            fmt(g["budget"]["p50"]),
            fmt(g["budget"]["p90"]),
        )
    summary = Table(show_header=True, title="counts", title_justify="left")
    for col in ("read", "kept", "rejected", "sft", "grpo", "no correct response"):
        summary.add_column(col, justify="right")
    summary.add_row(
        *(str(counts[c]) for c in ("read", "kept", "rejected", "sft", "grpo", "no_correct_response"))
    )
    parts: list[Any] = [levels, summary]
    if counts["rejects_by_reason"]:
        rej = Table(title="rejects by reason", title_justify="left")
        rej.add_column("reason")
        rej.add_column("rows", justify="right")
        for reason, n in counts["rejects_by_reason"].items():
            rej.add_row(reason, str(n))
        parts.append(rej)
    return Group(*parts)
