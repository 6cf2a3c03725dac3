"""``sblite generate``: one answer streamed by ``sblite.generate.stream`` in a live view.

Parse, resolve, call one library function, print: no pipeline logic lives here."""

from __future__ import annotations

from typing import Annotated

import typer

from sblite.cli.app import app, console, fail


@app.command("generate")
def generate_cmd(
    question: Annotated[str, typer.Argument(help="the question to answer")],
    model: Annotated[str, typer.Option(help="RUN_DIR, adapter dir, model dir, builtin: name or hub id")] = (
        "builtin:smollm2-135m"
    ),
    budget: Annotated[int | None, typer.Option(help="pre-fill this budget: <budget>N</budget><solution>")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="hard cap on generated tokens")] = 512,
    temperature: Annotated[float, typer.Option(help="0 = greedy")] = 0.0,
    stage: Annotated[str | None, typer.Option(help="sft or grpo inside a RUN_DIR (default: newest)")] = None,
    gguf: Annotated[str | None, typer.Option(help="answer from this GGUF (llama.cpp; transformers if absent)")] = None,
    budget_guard: Annotated[str, typer.Option(help="off (the model alone), cap (land the answer by its budget) "
                                              "or band (also not before 0.6x); transformers only")] = "off",
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object, no live view")] = False,
) -> None:
    """Answer one question, showing the model's budget as soon as it is stated and progress against it."""
    import json
    import threading

    from sblite import protocol
    from sblite.generate.loading import load_model, resolve_model_spec
    from sblite.generate.stream import render_live, stream_answer, stream_gguf_answer, summary_line
    from sblite.logs import quiet_libraries

    quiet_libraries()
    if budget is not None and not 1 <= budget <= protocol.MAX_BUDGET:
        raise fail(f"--budget {budget}: choose a whole number in 1..{protocol.MAX_BUDGET}")
    from sblite.generate.guard import GUARD_MODES

    if budget_guard not in GUARD_MODES:
        raise fail(f"--budget-guard {budget_guard!r}: choose {', '.join(GUARD_MODES)}")
    stop = threading.Event()
    kwargs = dict(budget=budget, max_new_tokens=max_new_tokens, temperature=temperature, stop_event=stop,
                  budget_guard=budget_guard)  # fmt: skip
    try:
        if gguf:
            stream, label = stream_gguf_answer(gguf, question, status=console.status, **kwargs)
        else:
            spec = resolve_model_spec(model, stage=stage)
            label = spec.label or spec.base
            with console.status(f"loading {label}…"):
                lm, tok = load_model(spec)
            stream = stream_answer(lm, tok, question, instruction_in_user=spec.instruction_in_user, **kwargs)
    except (FileNotFoundError, OSError, ValueError) as err:
        raise fail(f"{'--gguf ' + gguf if gguf else '--model ' + model}: {err}") from None
    state = None
    if json_out:
        try:
            for snapshot in stream:
                state = snapshot
        except KeyboardInterrupt:
            stop.set()
            for snapshot in stream:
                state = snapshot
        print(json.dumps({"question": question, "model": label, **state.to_json()}))
        return
    from rich.live import Live

    with Live(console=console, refresh_per_second=12, transient=False) as live:
        try:
            for state in stream:
                live.update(render_live(state, question))
        except KeyboardInterrupt:
            stop.set()
            for state in stream:
                live.update(render_live(state, question))
    console.print(summary_line(state), highlight=False)
