"""``sblite merge`` and ``sblite export --gguf``: options → ``sblite.export``; result tables.

Parse, resolve, call one library function, print: no pipeline logic lives here."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sblite.cli.app import app, console, err_console, fail, resolve_settings


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


@app.command("merge")
def merge_cmd(
    src: Annotated[str, typer.Argument(help="RUN_DIR (newest stage) or a LoRA adapter directory")],
    out: Annotated[str, typer.Option(help="directory for the merged model (safetensors + tokenizer)")],
    dtype: Annotated[str | None, typer.Option(
        help="bf16, f16, f32 or auto (the base model's) [export.merge_dtype of the run's recipe]")] = None,
    recipe: Annotated[str | None, typer.Option(help="take --dtype's default from this recipe's export: section")] = None,
    force: Annotated[bool, typer.Option(help="overwrite a non-empty --out")] = False,
    dry_run: Annotated[bool, typer.Option(help="print the resolved settings and where each came from, and exit")] = False,
) -> None:
    """Merge a trained LoRA adapter into its base model; checks merged logits against the adapter's."""
    from sblite.options import EXPORT

    settings = resolve_settings("sblite merge", {"dtype": EXPORT["dtype"]}, {"dtype": dtype}, recipe, src, dry_run=dry_run)
    if settings is None:
        return
    from sblite.export import ExportError, merge_adapter

    try:
        with console.status("merging…") as status:
            result = merge_adapter(src, out, settings["dtype"], force, log=lambda m: status.update(escape(m)))
    except (ExportError, OSError) as err:
        raise fail(str(err)) from None
    c = result.check
    table = Table(title=f"merged: {result.out}", title_justify="left")
    for col in ("base", "dtype", "params", "size", "seconds", "max |Δlogit| (rel)", "top-1 agree"):
        table.add_column(col, overflow="fold")
    table.add_row(escape(result.base), result.dtype, f"{result.n_params / 1e6:.2f} M", _mb(result.bytes),
                  f"{result.seconds:.1f}", f"{c['max_abs_logit_diff']:.2e} ({c['rel_logit_diff']:.1e} ≤ "
                  f"{c['tolerance']:.0e})", f"{c['top1_agreement']:.1%}")
    console.print(table)


@app.command("export")
def export_cmd(
    src: Annotated[str, typer.Argument(help="merged/full MODEL_DIR, builtin: name, RUN_DIR or adapter dir")],
    out: Annotated[str, typer.Option(help="output directory for NAME-QUANT.gguf (+ merged/ for a run)")],
    gguf: Annotated[bool, typer.Option("--gguf", help="export GGUF (the only format today)")] = False,
    recipe: Annotated[str | None, typer.Option(help="take defaults from this recipe's export: section "
                                               "(default: the run's own recipe when SRC is a run)")] = None,
    quant: Annotated[str | None, typer.Option(
        help="f32, f16, bf16, q8_0 (no llama.cpp needed); q4_k_m, q5_k_m, q6_k, … (llama.cpp) [export.quant]")] = None,
    ollama: Annotated[bool | None, typer.Option("--ollama/--no-ollama",
                                                help="also write an Ollama Modelfile [export.ollama]")] = None,
    verify: Annotated[bool | None, typer.Option("--verify/--no-verify",
                                                help="check the file with transformers and llama.cpp [export.verify]")] = None,
    dtype: Annotated[str | None, typer.Option(help="merge dtype when SRC is a run: bf16, f16, f32, auto "
                                              "[export.merge_dtype]")] = None,
    force: Annotated[bool, typer.Option(help="overwrite existing outputs")] = False,
    dry_run: Annotated[bool, typer.Option(help="print the resolved settings and where each came from, and exit")] = False,
) -> None:
    """Export a model to GGUF (merging a run first), verified by transformers and llama.cpp.

    Options left out come from the recipe's ``export:`` section (``--recipe``, or the run's own recipe)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sblite.options import EXPORT

    if not gguf:
        raise fail("choose a format: --gguf")
    cli = dict(quant=quant, ollama=ollama, verify=verify, dtype=dtype)
    settings = resolve_settings("sblite export", EXPORT, cli, recipe, src, dry_run=dry_run)
    if settings is None:
        return
    from sblite.export import ExportError, VerificationError, export_gguf

    quant = settings["quant"]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("preparing", total=None)

        def progress(name: str, done: int, total: int) -> None:
            bar.update(task, description=f"writing {quant} tensors", completed=done, total=total)

        def log(message: str) -> None:
            bar.update(task, description=escape(message))

        try:
            result = export_gguf(src, out, quant, ollama=settings["ollama"], verify=settings["verify"], force=force,
                                 dtype=settings["dtype"], progress=progress, log=log,
                                 settings=settings.to_json())
            failure = None
        except VerificationError as err:
            result, failure = err.result, str(err)
        except (ExportError, OSError, RuntimeError) as err:
            bar.stop()
            raise fail(str(err)) from None
    _print_export(result)
    if failure:
        raise fail(failure, code=1)


def _print_export(result) -> None:
    table = Table(title=f"exported: {result.gguf}", title_justify="left")
    table.add_column("item")
    table.add_column("value", overflow="fold")
    for note in getattr(result, "notes", None) or []:
        table.add_row("note", f"[yellow]{escape(note)}[/]")
    if result.merged is not None:
        m = result.merged
        how = "reused (same adapter)" if m.reused else f"{m.seconds:.1f} s"
        table.add_row("merged", f"{m.out} ({m.dtype}, {_mb(m.bytes)}, {how}; merge check "
                      f"{m.check.get('rel_logit_diff', float('nan')):.1e} rel)")
    table.add_row("gguf", f"{result.arch}, {result.quant}, {_mb(result.bytes)}, pre-tokenizer {result.pre_tokenizer}")
    table.add_row("sha256", result.sha256)
    table.add_row("times", ", ".join(f"{k} {v:.2f} s" for k, v in result.seconds.items()))
    v = result.verification
    if not v:
        table.add_row("verification", "[yellow]skipped (--no-verify)[/]")
    else:
        tf = v["transformers"]
        ok = "[green]ok[/]" if tf["passed"] else "[bold red]FAILED[/]"
        table.add_row("transformers", f"{ok} {tf['metric']} {tf[tf['metric']]:.1e} ≤ {tf['tolerance']:.0e}; max "
                      f"|Δlogit| {tf['max_abs_logit_diff']:.2e} (rel {tf['rel_logit_diff']:.1e}), mean KL "
                      f"{tf['mean_kl']:.1e}, top-1 agreement {tf['top1_agreement']:.1%} over {tf['positions']} "
                      "positions")
        lc = v["llama_cpp"]
        if isinstance(lc, str):
            table.add_row("llama.cpp", f"[yellow]{escape(lc)}[/]")
        else:
            tok_ok = "[green]ok[/]" if lc["tokenization_match"] else "[bold red]FAILED[/]"
            tie = " (a tie)" if lc["greedy_divergence_is_tie"] else ""
            at = lc["greedy_diverged_at"]
            greedy = "equal" if at is None else f"diverged at token {at}{tie}"
            table.add_row("llama.cpp tokens", f"{tok_ok} {lc['tokenization_checked']} texts incl. budget tags")
            table.add_row("llama.cpp greedy", f"{greedy} over {lc['greedy_tokens']} tokens "
                          f"({'must match' if lc['exact_required'] else 'reported'}); first-step max |Δlogit| "
                          f"{lc['first_step_max_abs_logit_diff']:.2e}")
    if result.modelfile:
        table.add_row("ollama", f"{result.modelfile} (ollama create NAME -f {result.modelfile.name})")
    table.add_row("provenance", str(result.provenance))
    console.print(table)
