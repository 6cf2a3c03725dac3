"""``run_prepare``: a dataset in, a prepared directory out (``sblite prepare`` is a thin layer over it).

    sblite prepare --dataset gsm8k --labels reference --tokenizer ../shared/data/tokenizers/qwen2 --out data/gsm8k
    sblite prepare --dataset gsm8k-test --labels sample --model builtin:smollm2-135m -k 4 --limit 32 --out data/s

The output directory (its layout is ``sblite.data.prepared``) receives, each written to a temp file and
renamed, the report last:

- the SFT file: questions with a correct labelled response: ``id, source, question, answer, completion,
  b_max, level, difficulty`` (+ ``pass_rate, lengths, k`` in sample mode); with ``--targets all`` one row per
  distinct correct response, so a question can appear several times with different budgets;
- the GRPO file: every kept question, ``b_max`` None meaning infinity (no correct response);
- the rejects file: every input record that was not kept, with its line number, field and reason;
- the report (``sblite.data.report``): counts (``read == kept + rejected``), per-level pass rate and budget
  quantiles, rejects by reason, and provenance (input sha256, tokenizer, model, k, temperature, seed,
  versions, arguments).

The steps are: read and validate (``sblite.data.rows.load_rows``), label (reference or sample mode,
``sblite.data.labels``), build the report, write. This module owns the options, the labelling run and the
writing; it must not parse records or spell the output file names, and loads torch/transformers only inside
the functions that label.

Sample mode caches generations under ``DIR/.cache/`` keyed by everything that changes them, so re-running a
killed command continues where it stopped. A non-empty ``DIR`` (other than that cache) is refused unless
``force=True``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sblite.data.fields import Reject, Row
from sblite.data.labels import (
    TARGETS,
    Label,
    SampleCache,
    SampleSettings,
    label_from_samples,
    label_reference,
    rendered_targets,
    sample_generations,
    sample_prompts,
)
from sblite.data.prepared import GRPO_FILE, REJECTS_FILE, REPORT_FILE, SFT_FILE
from sblite.data.readers import SourceError
from sblite.data.report import build_report, prepare_provenance
from sblite.data.rows import LoadedRows, load_rows
from sblite.data.synthetic import VERBOSITY
from sblite.protocol import SAMPLE_STYLES
from sblite.provenance import sha256_file

CACHE_DIR = ".cache"

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
    renderings: tuple[str, ...] = ()  # synthetic.VERBOSITY levels added as pre-filled SFT rows (data.renderings)
    #: of ``renderings``, those written as self rows (budget trained) instead of pre-filled (data.self_renderings)
    self_renderings: tuple[str, ...] = ()
    #: the records after the first ``limit`` that give their ``self_renderings`` rows only (data.stating_questions)
    stating_questions: int = 0
    max_prompt_tokens: int | None = None
    backend: str = "auto"  # auto | hf | vllm (sample mode)
    command: list[str] | None = None  # the argv, for provenance
    sources: dict[str, str] | None = None  # where each option came from (sblite.options), for the report


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


def _load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    from sblite.models import resolve_model

    try:
        return AutoTokenizer.from_pretrained(resolve_model(name))
    except Exception as err:  # noqa: BLE001 - any load failure is a usage error here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PrepareError(f"cannot load tokenizer {name!r}: {first[:200]}") from None


@dataclass
class _Labelled:
    """The rows that were labelled (prompts over the limit moved to the rejects) and how they were labelled."""

    rows: list[Row]
    labels: dict[str, Label]
    engine: str | None = None
    cache_files: list[Path] = field(default_factory=list)
    tokenizer: Any = None  # the one budgets were counted in
    #: ``--renderings``: each question's ``(rendering, budget, completion)`` pre-filled targets
    rendered: dict[str, list[tuple[str, int, str]]] = field(default_factory=dict)


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
    _check_options(opts, generate=generate, tokenizer=tokenizer)
    out = Path(opts.out)
    _check_out_dir(out, opts.force)
    data = _read_rows(opts)
    data, stating = _split_stating(data, opts) if opts.stating_questions else (data, [])
    input_sha = sha256_file(data.source.path) if data.source.path else None
    tok_name = opts.tokenizer or opts.model
    if tokenizer is not None:
        tok = tokenizer
    elif opts.tokenizer or opts.labels == "reference":
        tok = _load_tokenizer(tok_name) if tok_name else None
    else:
        tok = None  # sample mode: the model's own, loaded with it
    if opts.labels == "reference":
        labelled = _label_by_reference(data, tok, opts, prog)
    else:
        cache = (out / CACHE_DIR, input_sha, tok_name)
        labelled = _label_by_sampling(data, tok, opts, prog, cache=cache, generate=generate, verify=verify)
    renderings = _render(labelled, opts.renderings, opts.dataset) if opts.renderings else None
    if renderings is not None:
        renderings["self"] = list(opts.self_renderings)
    stating_lines, stated = _stating_lines(stating, labelled.tokenizer, opts, data.source.name, data.rejects)
    if renderings is not None and opts.stating_questions:
        renderings["stating_questions"] = {"asked": opts.stating_questions, "questions": stated,
                                           "rows": len(stating_lines)}  # fmt: skip
    data.rejects.sort(key=lambda rj: rj.line)
    sft_lines, grpo_lines, out_rows = _output_lines(labelled, data.source.name, opts.self_renderings)
    sft_lines += stating_lines
    provenance = prepare_provenance(
        opts,
        source=data.source,
        fields=data.fields,
        input_sha=input_sha,
        tokenizer=tok_name if tokenizer is None else getattr(tokenizer, "name_or_path", "injected"),
        engine=labelled.engine,
        cache_files=labelled.cache_files,
    )
    report = build_report(
        read=data.read + len(stating),  # the stating records were read too; each is a stating row or a reject
        rows=labelled.rows,
        rejects=data.rejects,
        labels=labelled.labels,
        out_rows=out_rows,
        n_sft=len(sft_lines),
        n_grpo=len(grpo_lines),
        provenance=provenance,
        stating_questions=stated,
    )
    if renderings is not None:
        report["renderings"] = renderings
    _write_outputs(out, sft_lines, grpo_lines, data.rejects, report)
    return PrepareResult(
        out=out, report=report, sft=len(sft_lines), grpo=len(grpo_lines), rejects=data.rejects
    )


# ------------------------------------------------------------------------------------------- steps


def _check_options(opts: PrepareOptions, *, generate: Any, tokenizer: Any) -> None:
    """``PrepareError`` for options that cannot work together, before anything is read."""
    if opts.labels not in ("reference", "sample"):
        raise PrepareError(f"--labels {opts.labels!r}: choose reference or sample")
    if opts.k < 1 or opts.batch_size < 1 or opts.max_new_tokens < 1:
        raise PrepareError("-k, --batch-size and --max-new-tokens must be at least 1")
    if opts.limit is not None and opts.limit < 1:
        raise PrepareError("--limit must be at least 1")
    bad = [v for v in opts.renderings if v not in VERBOSITY]
    if bad:
        raise PrepareError(f"--renderings {','.join(opts.renderings)}: choose from {', '.join(VERBOSITY)}")
    extra = [v for v in opts.self_renderings if v not in opts.renderings]
    if extra:
        raise PrepareError(f"--self-renderings {','.join(extra)}: not in --renderings "
                           f"{','.join(opts.renderings) or '(none)'}; a self row is one of the renderings")
    if opts.stating_questions and not (opts.limit and opts.self_renderings):
        raise PrepareError(f"--stating-questions {opts.stating_questions}: the records after the first --limit give "
                           "their --self-renderings rows; set --limit and --self-renderings (e.g. --limit 24 "
                           "--self-renderings reference)")
    unknown = [s for s in opts.styles if s not in SAMPLE_STYLES]
    if unknown or not opts.styles:
        raise PrepareError(f"--styles {','.join(opts.styles)}: choose from {', '.join(SAMPLE_STYLES)}")
    if opts.targets not in TARGETS:
        raise PrepareError(f"--targets {opts.targets!r}: choose {' or '.join(TARGETS)}")
    if opts.labels == "sample" and not opts.model and generate is None:
        raise PrepareError("--labels sample needs --model (e.g. builtin:smollm2-135m or a model directory)")
    if opts.labels == "reference" and not (opts.tokenizer or opts.model) and tokenizer is None:
        raise PrepareError("--labels reference needs a tokenizer: pass --tokenizer DIR (or --model)")


def _read_rows(opts: PrepareOptions) -> LoadedRows:
    """Read and validate: the first ``--limit`` records (and the ``--stating-questions`` after them), each a row or
    a reject."""
    try:
        return load_rows(
            opts.dataset,
            data_dir=opts.data_dir,
            limit=opts.limit + opts.stating_questions if opts.limit else opts.limit,
            question_field=opts.question_field,
            answer_field=opts.answer_field,
            solution_field=opts.solution_field,
            level_field=opts.level_field,
            id_field=opts.id_field,
        )
    except SourceError as err:
        raise PrepareError(str(err)) from None


def _split_stating(data: LoadedRows, opts: PrepareOptions) -> tuple[LoadedRows, list[Row]]:
    """``(the first --limit records, the rows of the records after them)``. Every reject stays in the first: it
    is reported once, whichever part its record was in. Records are in file order, one row or reject each."""
    assert opts.limit
    lines = sorted([r.line for r in data.rows] + [rj.line for rj in data.rejects])
    if len(lines) <= opts.limit:
        raise PrepareError(f"--stating-questions {opts.stating_questions}: {opts.dataset} has {len(lines)} records, "
                           f"none after the first --limit {opts.limit}; lower --limit or drop --stating-questions")
    cut = lines[opts.limit - 1]
    first = [r for r in data.rows if r.line <= cut]
    stating = [r for r in data.rows if r.line > cut]
    return replace(data, rows=first, read=data.read - len(stating)), stating


def _stating_lines(
    rows: list[Row], tok: Any, opts: PrepareOptions, source_name: str, rejects: list[Reject]
) -> tuple[list[str], int]:
    """``(SFT lines, questions)`` of ``--stating-questions``: each row's ``--self-renderings`` as self rows, marked
    ``stating``. A row whose solution cannot be re-rendered, or whose question is over ``--max-prompt-tokens``,
    becomes a reject (appended to ``rejects``)."""
    lines: list[str] = []
    if opts.max_prompt_tokens and rows:
        lengths = [len(tok.encode(r.question, add_special_tokens=False)) for r in rows]
        rows, _ = _drop_long_prompts(rows, rejects, lengths, opts.max_prompt_tokens, "question")
    stated = 0
    for r in rows:
        try:
            targets = rendered_targets(r, tok, opts.self_renderings)
        except ValueError as err:
            rejects.append(Reject(r.line, "not_renderable", f"--stating-questions: {err}", r.question[:300],
                                  field="solution", id=r.id))  # fmt: skip
            continue
        stated += 1
        base = {"id": r.id, "source": source_name, "question": r.question, "answer": r.answer}
        for rendering, _budget, completion in targets:
            lines.append(json.dumps({**base, "completion": completion, "b_max": None, "level": r.level,
                                     "prefilled": False, "rendering": rendering, "stating": True},
                                    ensure_ascii=False))  # fmt: skip
    return lines, stated


def _label_by_reference(data: LoadedRows, tok: Any, opts: PrepareOptions, prog: ProgressFn) -> _Labelled:
    """Reference mode: each question's budget is its reference solution's length (no model)."""
    max_level = max([5] + [r.level for r in data.rows if r.level is not None])
    rows = data.rows
    if opts.max_prompt_tokens:
        lengths = [len(tok.encode(r.question, add_special_tokens=False)) for r in rows]
        rows, _ = _drop_long_prompts(rows, data.rejects, lengths, opts.max_prompt_tokens, "question")
    labels: dict[str, Label] = {}
    prog("label", 0, len(rows))
    for i, r in enumerate(rows):
        labels[r.id] = label_reference(r, tok, max_level)
        if i % 256 == 255:
            prog("label", 256, None)
    prog("label", len(rows) % 256, None)
    return _Labelled(rows, labels, tokenizer=tok)


def _label_by_sampling(
    data: LoadedRows,
    tok: Any,
    opts: PrepareOptions,
    prog: ProgressFn,
    *,
    cache: tuple[Path, str | None, str | None],
    generate: Callable[[list[str], int], list[list[Any]]] | None,
    verify: Callable[[str, str], bool] | None,
) -> _Labelled:
    """Sample mode: k generations per question and style, verified; the shortest correct labels it.

    ``cache`` is ``(cache dir, input sha256, tokenizer name)``: generations are cached under the dir, keyed
    by everything that changes them. Prompts use the sampled model's chat template; budgets count in the
    target tokenizer (``--tokenizer``, default the model's own)."""
    cache_dir, input_sha, tok_name = cache
    settings = _sample_settings(opts)
    prompt_tok, ctx, engine = tok, None, None
    if generate is None:
        from sblite.data.engines import EngineError, make_generator

        assert opts.model is not None
        try:
            generate, prompt_tok, engine, ctx = make_generator(
                opts.model, settings, backend=opts.backend, seed=opts.seed, max_prompt_tokens=opts.max_prompt_tokens
            )
        except EngineError as err:
            raise PrepareError(str(err)) from None
        tok = tok or prompt_tok
    if tok is None or prompt_tok is None:
        raise PrepareError("--labels sample needs a tokenizer (--tokenizer or --model)")
    rows = data.rows
    prompt_lens = [
        len(prompt_tok.encode(p, add_special_tokens=False))
        for p in sample_prompts(rows, prompt_tok, settings)
    ]
    limit_tokens = opts.max_prompt_tokens or (ctx - opts.max_new_tokens if ctx else None)
    if limit_tokens:
        rows, prompt_lens = _drop_long_prompts(rows, data.rejects, prompt_lens, limit_tokens, "prompt")
    prog("sample", 0, len(rows) * len(opts.styles))
    samples: dict[str, list[dict[str, Any]]] = {r.id: [] for r in rows}
    cache_files: list[Path] = []
    for style in opts.styles:
        # One cache file per style: its key covers the style's instruction, so plain-only runs reuse theirs.
        style_settings = replace(settings, system_prompt=SAMPLE_STYLES[style])
        cache_key = _cache_key(opts, style_settings, input_sha, data.fields, tok_name)
        cache_files.append(cache_dir / f"samples-{cache_key}.jsonl")
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
    labels: dict[str, Label] = {}
    prog("verify", 0, len(rows))
    for r in rows:
        labels[r.id] = label_from_samples(r, samples[r.id], tok, verify, targets=opts.targets)
        prog("verify", 1, None)
    return _Labelled(rows, labels, engine, cache_files, tokenizer=tok)


def _render(labelled: _Labelled, renderings: tuple[str, ...], dataset: str) -> dict[str, Any]:
    """Fill ``labelled.rendered`` (``--renderings``) and return the report's ``renderings`` section. A row
    whose solution cannot be re-rendered keeps its other rows and is counted, with its id, in the report;
    when no row can be, the option is an error."""
    skipped: list[dict[str, str]] = []
    lengths: dict[str, list[int]] = {v: [] for v in renderings}
    for r in labelled.rows:
        try:
            labelled.rendered[r.id] = rendered_targets(r, labelled.tokenizer, renderings)
        except ValueError as err:
            skipped.append({"id": r.id, "line": r.line, "reason": str(err)})
            continue
        for v, budget, _ in labelled.rendered[r.id]:
            lengths[v].append(budget)
    if labelled.rows and not labelled.rendered:
        raise PrepareError(
            f"--renderings: no row of {dataset} has a worked solution in the arithmetic generator's format "
            f"({skipped[0]['reason']}); renderings work on the bundled arith data, drop the option for other sets"
        )
    return {
        "levels": list(renderings),
        "questions": len(labelled.rendered),
        "rows": sum(len(v) for v in labelled.rendered.values()),
        "mean_budget": {v: round(sum(x) / len(x), 1) for v, x in lengths.items() if x},
        "skipped": len(skipped),
        "skipped_rows": skipped[:50],
    }


def _sample_settings(opts: PrepareOptions) -> SampleSettings:
    return SampleSettings(
        k=opts.k,
        temperature=opts.temperature,
        top_p=opts.top_p,
        max_new_tokens=opts.max_new_tokens,
        batch_size=opts.batch_size,
        seed=opts.seed,
        instruction_in_user=opts.instruction_in_user,
    )


def _drop_long_prompts(
    rows: list[Row], rejects: list[Reject], lengths: list[int], limit: int, what: str
) -> tuple[list[Row], list[int]]:
    """The rows whose ``what`` (question or prompt) is at most ``limit`` tokens, and their lengths; each other
    row becomes a ``prompt_too_long`` reject, appended to ``rejects``."""
    kept: list[tuple[Row, int]] = []
    for r, n in zip(rows, lengths, strict=True):
        if n <= limit:
            kept.append((r, n))
            continue
        detail = f"{what} is {n} tokens; limit {limit}"
        rejects.append(Reject(r.line, "prompt_too_long", detail, r.question[:300], field="question", id=r.id))
    return [r for r, _ in kept], [n for _, n in kept]


def _output_lines(
    labelled: _Labelled, source_name: str, self_renderings: tuple[str, ...] = ()
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """``(SFT lines, GRPO lines, GRPO rows with their difficulty source)`` for the labelled rows. A rendering
    in ``self_renderings`` is a self row (its budget trained), every other one pre-filled."""
    sft_lines, grpo_lines, out_rows = [], [], []
    for r in labelled.rows:
        lab = labelled.labels[r.id]
        base = {"id": r.id, "source": source_name, "question": r.question, "answer": r.answer}
        common = {"b_max": lab.b_max, "level": r.level, "difficulty": round(float(lab.difficulty), 4)}
        extra = {k: lab.extra[k] for k in ("pass_rate", "lengths", "k") if k in lab.extra}
        grpo = {**base, **common, **extra}
        grpo_lines.append(json.dumps(grpo, ensure_ascii=False))
        out_rows.append({**grpo, "difficulty_source": lab.difficulty_source})
        for completion in lab.completions:
            sft = {**base, "completion": completion, **common, **extra}
            sft_lines.append(json.dumps(sft, ensure_ascii=False))
        for rendering, _budget, completion in labelled.rendered.get(r.id, ()):
            prefilled = rendering not in self_renderings
            sft = {**base, "completion": completion, **common, "prefilled": prefilled, "rendering": rendering}
            sft_lines.append(json.dumps(sft, ensure_ascii=False))
    return sft_lines, grpo_lines, out_rows


def _write_outputs(
    out: Path, sft_lines: list[str], grpo_lines: list[str], rejects: list[Reject], report: dict[str, Any]
) -> None:
    """Each file to a temp file then renamed; the report last, so its presence means the rest is whole."""
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(out, SFT_FILE, sft_lines)
    _write_atomic(out, GRPO_FILE, grpo_lines)
    _write_atomic(out, REJECTS_FILE, [json.dumps(rj.to_json(), ensure_ascii=False) for rj in rejects])
    _write_atomic(out, REPORT_FILE, json.dumps(report, indent=2, ensure_ascii=False) + "\n")


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
