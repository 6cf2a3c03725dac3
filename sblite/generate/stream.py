"""``sblite generate``'s live view: the user sees the budget first, then a progress bar against it.

    sblite generate "A train travels 60 km in 1.5 hours. What is its speed?" --model runs/demo
    sblite generate "…" --model runs/demo --budget 40          # pre-fill: force a short answer
    sblite generate "…" --gguf gguf/demo/demo-q8_0.gguf        # llama.cpp (transformers if not installed)

``stream_answer`` runs ``model.generate`` in a worker thread with a token streamer and yields ``Progress``
snapshots; ``stream_answer_llamacpp`` does the same from a GGUF through llama.cpp, and
``stream_gguf_answer`` picks between them for ``--gguf``. ``track`` turns any engine's tokens into
snapshots: the moment ``</budget>`` has been generated the budget is known, and the live view
(``render_live``) shows "budget N tokens (≈ T s at the measured rate)" and a bar of solution tokens against
N, with an ETA; past N the bar turns to an over-budget style. Ctrl-C stops generation at the next token, and
the partial answer and its statistics are still printed (``summary_line``); ``--json`` prints
``Progress.to_json()`` instead of the live view.

One question at a time only: batches are ``batch``/``hf``/``vllm``/``llamacpp``'s, and what ``--model`` or
``--gguf`` names is ``loading``'s.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sblite import protocol

if TYPE_CHECKING:
    from sblite.generate.batch import StatusFn


@dataclass
class Progress:
    """One snapshot of a generation in flight."""

    text: str = ""
    generated: int = 0  # tokens generated so far (after the prompt)
    solution_tokens: int | None = None  # tokens after </budget> (all of them when the budget was pre-filled)
    budget: int | None = None
    prefilled: bool = False
    elapsed: float = 0.0
    done: bool = False
    stopped: bool = False
    ids: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        """Tokens per second measured so far."""
        return self.generated / self.elapsed if self.elapsed > 0 and self.generated else None

    @property
    def eta(self) -> float | None:
        """Seconds until the budget is spent at the measured rate (0 when it already is)."""
        if self.budget is None or self.solution_tokens is None or not self.rate:
            return None
        return max(self.budget - self.solution_tokens, 0) / self.rate

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and (self.solution_tokens or 0) > self.budget

    def full_text(self) -> str:
        return (protocol.prefill(self.budget) if self.prefilled and self.budget else "") + self.text

    def to_json(self) -> dict[str, Any]:
        parsed = protocol.parse_completion(self.full_text())
        return {
            "text": self.full_text(),
            "budget": self.budget,
            "prefilled": self.prefilled,
            "solution_tokens": self.solution_tokens,
            "generated_tokens": self.generated,
            "seconds": round(self.elapsed, 3),
            "tokens_per_s": round(self.rate, 2) if self.rate else None,
            "over_budget": self.over_budget,
            "stopped": self.stopped,
            "format_ok": parsed.ok,
            "format_reason": parsed.reason,
            "answer": parsed.answer,
        }


class _IdStreamer:
    """A transformers streamer that forwards generated token ids (the prompt is skipped) to a queue."""

    def __init__(self, q: queue.Queue):
        self.q, self.prompt_seen = q, False

    def put(self, value) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.q.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.q.put(None)


def stream_answer(
    model: Any,
    tokenizer: Any,
    question: str,
    *,
    budget: int | None = None,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    instruction_in_user: bool = False,
    stop_event: threading.Event | None = None,
    budget_guard: str = "off",
) -> Iterator[Progress]:
    """Yield a ``Progress`` after every generated token; the last one has ``done=True``.

    Setting ``stop_event`` ends generation at the next token (the caller's Ctrl-C). ``budget_guard``
    ``cap``/``band`` enforces the budget (pre-filled, or the one the model states) while decoding (``guard``).
    """
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    from sblite.generate.hf import encode_batch

    stop_event = stop_event or threading.Event()
    prompt = protocol.render_prompt(
        tokenizer, question, budget=budget, instruction_in_user=instruction_in_user
    )
    enc = encode_batch(tokenizer, [prompt]).to(model.device)
    from sblite.generate.guard import guards_for, logits_processor
    from sblite.generate.hf import eos_token_ids

    guards = guards_for(tokenizer, [prompt], budget_guard, eos_token_ids(model, tokenizer), 1)  # type: ignore[arg-type]

    class _Stop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full(
                (input_ids.shape[0],), stop_event.is_set(), dtype=torch.bool, device=input_ids.device
            )

    q: queue.Queue = queue.Queue()
    kwargs: dict[str, Any] = dict(
        **enc,
        max_new_tokens=max_new_tokens,
        streamer=_IdStreamer(q),
        stopping_criteria=StoppingCriteriaList([_Stop()]),
        stop_strings=[protocol.SOLUTION_CLOSE],
        tokenizer=tokenizer,
        pad_token_id=tokenizer.pad_token_id,
    )
    if guards:
        kwargs["logits_processor"] = [logits_processor(guards, enc["input_ids"].shape[1])]
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_k=0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    errors: list[BaseException] = []

    def work():
        try:
            with torch.inference_mode():
                model.generate(**kwargs)
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(err)
        finally:
            q.put(None)

    thread = threading.Thread(target=work, daemon=True)
    special = set(getattr(tokenizer, "all_special_ids", []) or [])

    def chunks() -> Iterator[tuple[list[int], str]]:
        ids: list[int] = []
        thread.start()
        while (item := q.get()) is not None:
            ids.extend(item)
            yield item, tokenizer.decode([i for i in ids if i not in special], skip_special_tokens=False)
        thread.join()
        if errors:
            raise errors[0]

    try:
        yield from track(chunks(), budget=budget, stop_event=stop_event, tokenizer=tokenizer)
    finally:  # never leave generate() running in C++ when the interpreter exits (it aborts the process)
        stop_event.set()
        if thread.is_alive():
            thread.join(timeout=60)


def track(
    chunks: Iterator[tuple[list[int], str]],
    *,
    budget: int | None,
    stop_event: threading.Event,
    tokenizer: Any = None,
):
    """Turn ``(new token ids, whole text so far)`` pairs from any engine into ``Progress`` snapshots.

    Solution tokens are the tokens generated after the one that completed ``</budget>`` (the boundary
    ``protocol.count_solution_tokens`` finds); after a pre-filled budget they also count the pre-fill's own
    tokens after ``</budget>`` (``<solution>``), as ``count_solution_tokens(..., forced_budget=)`` does, so
    the bar and ``sblite eval`` agree. The stream ends at ``</solution>``, at the engine's end, or when
    ``stop_event`` is set (the last snapshot then has ``stopped=True``).
    """
    start = time.perf_counter()
    state = Progress(budget=budget, prefilled=budget is not None)
    boundary: int | None = None
    if state.prefilled:
        if tokenizer is None:
            raise ValueError("track: a pre-filled budget needs the tokenizer to count <solution>'s tokens")
        boundary = -(protocol.count_solution_tokens([], tokenizer, forced_budget=budget) or 0)
    try:
        for new_ids, text in chunks:
            state.ids.extend(new_ids)
            state.generated = len(state.ids)
            state.elapsed = time.perf_counter() - start
            state.text = protocol.cut_after_solution(text)
            if boundary is None and protocol.BUDGET_CLOSE in state.text:
                boundary = state.generated
                if state.budget is None:
                    head = state.text.split(protocol.BUDGET_CLOSE)[0] + protocol.BUDGET_CLOSE
                    state.budget = protocol.parse_completion(head + "<solution></solution>").budget
            if boundary is not None:
                state.solution_tokens = state.generated - boundary
            yield state
            if stop_event.is_set():
                break
    except KeyboardInterrupt:  # Ctrl-C while the engine was producing: stop it, keep the partial answer
        stop_event.set()
    state.elapsed = time.perf_counter() - start
    state.stopped = stop_event.is_set()
    state.done = True
    yield state


def stream_answer_llamacpp(
    path: str,
    tokenizer: Any,
    question: str,
    *,
    budget: int | None = None,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    instruction_in_user: bool = False,
    stop_event: threading.Event | None = None,
) -> Iterator[Progress]:
    """``stream_answer`` for a GGUF file through llama.cpp; ``tokenizer`` renders the chat prompt."""
    from sblite.generate.llamacpp import stream_gguf

    prompt = protocol.render_prompt(
        tokenizer, question, budget=budget, instruction_in_user=instruction_in_user
    )
    events = stream_gguf(path, prompt, max_new_tokens=max_new_tokens, temperature=temperature)

    def chunks() -> Iterator[tuple[list[int], str]]:
        text = ""
        for tok, delta in events:
            text += delta
            yield [tok], text
            if protocol.SOLUTION_CLOSE in text:
                return

    yield from track(chunks(), budget=budget, stop_event=stop_event or threading.Event(), tokenizer=tokenizer)


def stream_gguf_answer(
    path: str, question: str, *, status: StatusFn | None = None, **kwargs: Any
) -> tuple[Iterator[Progress], str]:
    """``(stream, label)`` for ``sblite generate --gguf``: llama.cpp when llama-cpp-python is installed, else
    transformers reading the GGUF. ``label`` is the file name and the engine, e.g. ``"m.gguf (llama.cpp)"``.

    ``kwargs`` go to ``stream_answer``/``stream_answer_llamacpp`` (``budget``, ``max_new_tokens``,
    ``temperature``, ``stop_event``; ``budget_guard`` on transformers only: ValueError on llama.cpp); the prompt settings come from the GGUF's provenance. ``status(message)``
    wraps the slow transformers load (``console.status``). Raises FileNotFoundError for a missing file.
    """
    import contextlib

    from sblite.generate import llamacpp
    from sblite.generate.loading import load_gguf_tokenizer, load_gguf_with_transformers, resolve_gguf

    spec = resolve_gguf(path)
    tok = load_gguf_tokenizer(spec)
    if llamacpp.available():
        if kwargs.pop("budget_guard", "off") != "off":
            raise ValueError("the budget guard runs in sblite's transformers decoder, not llama.cpp: answer "
                             "with --model RUN_DIR, or leave --budget-guard off")  # fmt: skip
        stream = stream_answer_llamacpp(
            spec.path, tok, question, instruction_in_user=spec.instruction_in_user, **kwargs
        )
        return stream, f"{spec.label} (llama.cpp)"
    with (status or (lambda _m: contextlib.nullcontext()))(
        f"loading {spec.label} with transformers (llama-cpp-python is not installed)…"
    ):
        model = load_gguf_with_transformers(spec)
    stream = stream_answer(model, tok, question, instruction_in_user=spec.instruction_in_user, **kwargs)
    return stream, f"{spec.label} (transformers)"


def render_live(state: Progress, question: str):
    """The rich renderable for one snapshot: the text so far, then the budget line and bar."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    parts: list[Any] = [Panel(Text(state.full_text() or "…"), title=question[:80], title_align="left")]
    if state.budget is not None:
        rate = state.rate
        head = Text(f"budget {state.budget} tokens", style="bold cyan")
        if rate:
            head.append(f"  (≈ {state.budget / rate:.1f} s at {rate:.1f} tok/s)", style="cyan")
        if state.prefilled:
            head.append("  pre-filled", style="magenta")
        used = state.solution_tokens or 0
        bar = ProgressBar(
            total=state.budget,
            completed=min(used, state.budget),
            width=40,
            complete_style="red" if state.over_budget else "green",
            finished_style="red" if state.over_budget else "green",
        )
        row = Table.grid(padding=(0, 1))
        label = (
            Text(f"{used}/{state.budget} OVER BUDGET +{used - state.budget}", style="bold red")
            if state.over_budget
            else Text(f"{used}/{state.budget} solution tokens", style="green")
        )
        eta = state.eta
        row.add_row(bar, label, Text(f"ETA {eta:.1f} s" if eta is not None and not state.done else ""))
        parts += [head, row]
    else:
        parts.append(Text(f"waiting for the budget… {state.generated} tokens", style="dim"))
    return Group(*parts)


def summary_line(state: Progress) -> str:
    """One line after the answer: why it ended, tokens and rate, solution vs budget, the answer, format."""
    info = state.to_json()
    bits = [
        "stopped by user" if state.stopped else "done",
        f"{state.generated} tokens in {state.elapsed:.1f} s"
        + (f" ({state.rate:.1f} tok/s)" if state.rate else ""),
    ]
    if state.budget is not None:
        bits.append(f"solution {state.solution_tokens or 0}/{state.budget} budget tokens")
    bits.append(f"answer {info['answer']}" if info["answer"] else "no \\boxed{} answer")
    if not info["format_ok"]:
        bits.append(f"format: {info['format_reason']}")
    return "; ".join(bits)
