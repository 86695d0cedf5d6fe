"""The ``rxllm`` command line: stream, compare, sweep, models, emulate.

Providers without an API key (or all of them with ``--emulate``) are served by
rxllm's local emulator, started in-process (see :mod:`rxllm.connect`); the
command says on stderr where each provider's requests go. ``rxllm stream``
writes exactly the reply on stdout and everything else (notices, reasoning,
usage) on stderr, so its output can be piped. Ctrl-C stops the streams
cleanly (the server sees each connection close), prints the usage so far and
exits with 130. Errors are one readable line unless ``--debug``; the exit
code is 1 when a stream failed, 2 for a bad command line or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from . import catalog, registry
from .compare import Comparison, LaneEvent, compare, one_line
from .connect import connect
from .errors import ConfigurationError, RxllmError
from .events import DoneEvent, ReasoningEvent, StreamEvent, TokenEvent, Usage
from .metering import UsageMeter
from .notebook import metrics_line
from .usage import UsageTracker

__all__ = ["main"]

_EMULATOR_PACE = {"ttft": 0.25, "tps": 80.0}
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Failed(Exception):
    """A stream failed; the message was already shown."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rxllm", description="Stream and compare LLMs (Claude, OpenAI, Gemini, Grok)."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    def request_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("prompt")
        p.add_argument("--max-tokens", type=int, default=None)
        p.add_argument("--system", default=None)
        p.add_argument("--temperature", type=float, default=None)
        p.add_argument("--reasoning", action="store_true", help="ask for reasoning/thinking")
        p.add_argument("--emulate", action="store_true", help="use the local emulator for all")
        p.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
        )

    stream = sub.add_parser("stream", help="stream one model's reply")
    stream.add_argument(
        "-m", "--model", default=None, help="provider:model (default: Anthropic's default)"
    )
    request_options(stream)

    cmp = sub.add_parser("compare", help="stream several models side by side")
    cmp.add_argument(
        "-m", "--model", action="append", dest="models", help="provider:model (repeatable)"
    )
    request_options(cmp)

    sweep = sub.add_parser(
        "sweep",
        help="run every prompt of a file on every model into a SQLite store (resumable)",
        description="Run every prompt on every model, one row each, into --db as rows "
        "finish. Run the same command again to continue: finished rows are skipped.",
    )
    sweep.add_argument("prompts", nargs="?", help="a .jsonl, .csv or .parquet file of prompts")
    sweep.add_argument(
        "-m", "--model", action="append", dest="models", help="provider:model (repeatable)"
    )
    sweep.add_argument("--db", default=None, help="the SQLite store (default rxllm-sweep.sqlite)")
    sweep.add_argument("--summary", metavar="DB", default=None, help="summarize a store and exit")
    sweep.add_argument("--max-cost", type=float, default=None, help="budget in dollars")
    sweep.add_argument("--concurrency", type=int, default=32, help="streams at once per provider")
    sweep.add_argument("--attempts", type=int, default=3, help="attempts per row (1: no retry)")
    sweep.add_argument("--retry-failed", action="store_true", help="run failed rows again")
    sweep.add_argument("--engine", choices=("local", "ray"), default="local")
    sweep.add_argument("--max-tokens", type=int, default=None)
    sweep.add_argument("--system", default=None)
    sweep.add_argument("--temperature", type=float, default=None)
    sweep.add_argument("--reasoning", action="store_true", help="ask for reasoning/thinking")
    sweep.add_argument("--emulate", action="store_true", help="use the local emulator for all")
    sweep.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )

    models = sub.add_parser("models", help="list the model catalog")
    models.add_argument("provider", nargs="?")

    emulate = sub.add_parser("emulate", help="run the local emulator until Ctrl-C")
    emulate.add_argument("--api-key", default=None, help="the key clients must present")
    emulate.add_argument("--port", type=int, default=0)
    emulate.add_argument("--grpc-port", type=int, default=0)
    emulate.add_argument("--ttft", type=float, default=0.0, help="seconds to first token")
    emulate.add_argument("--tps", type=float, default=0.0, help="tokens per second (0: max)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rxllm`` command."""
    # gRPC's C core logs connection housekeeping (a GOAWAY as the emulator shuts down)
    # to the terminal; the command reports errors itself. Set before grpc is imported.
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    args = _parser().parse_args(argv)
    console = _console(sys.stdout)
    errors = _console(sys.stderr)
    try:
        if args.command == "models":
            return _models(console, args.provider)
        if args.command == "emulate":
            return asyncio.run(_emulate(console, args))
        if args.command == "stream":
            return asyncio.run(_stream(console, errors, args))
        if args.command == "sweep":
            if args.summary is not None:
                return _sweep_summary(console, args.summary)
            return asyncio.run(_sweep(console, errors, args))
        return asyncio.run(_compare(console, errors, args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except _Failed:
        return EXIT_ERROR
    except (RxllmError, ValueError) as error:
        if args.debug:
            raise
        errors.print(f"[red]error:[/] {escape(one_line(error))}")
        usage = isinstance(error, ConfigurationError) or not isinstance(error, RxllmError)
        return EXIT_USAGE if usage else EXIT_ERROR


def _console(stream: TextIO) -> Console:
    """A rich console; when not a terminal (a pipe, a file), wide enough for the tables."""
    console = Console(file=stream, highlight=False, soft_wrap=True)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(file=stream, highlight=False, soft_wrap=True, width=160)
    return console


# -- providers, real or emulated ----------------------------------------------------------


def _connect(specs: Sequence[str], args: argparse.Namespace, notice: Console) -> Any:
    """The models, from the real services where keys are set, else the emulator (and say so)."""

    def tell(line: str) -> None:
        notice.print(f"[yellow]{escape(line)}[/]")

    # The emulator answers at a model's pace here, so the panes visibly stream.
    return connect(*specs, emulate=args.emulate, notice=tell, emulator_options=_EMULATOR_PACE)


def _request_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if args.max_tokens is not None:
        fields["max_tokens"] = args.max_tokens
    if args.system:
        fields["system"] = args.system
    if args.temperature is not None:
        fields["temperature"] = args.temperature
    if args.reasoning:
        fields["reasoning"] = True
    return fields


def _usage_line(usage: Usage | None, finish: str | None) -> str:
    if usage is None:
        return "usage: unknown"
    cost = f" · ${usage.cost:.6f}" if usage.cost is not None else ""
    reasoning = f" (reasoning {usage.reasoning_tokens})" if usage.reasoning_tokens else ""
    end = f" · {finish}" if finish else ""
    return (
        f"usage: {usage.prompt_tokens} prompt + {usage.completion_tokens} completion"
        f"{reasoning} = {usage.total_tokens} tokens{cost}{end}"
    )


def _totals_line(tracker: UsageTracker) -> str:
    """``"total usage: 4 requests · 40 prompt + 60 completion = 100 tokens · $0.000123"``."""
    total = tracker.total()
    cost = f" · ${total.cost:.6f}" if total.requests > total.unpriced_requests else ""
    estimated = " (estimated in part)" if total.estimated else ""
    return (
        f"total usage: {total.requests} requests · {total.prompt_tokens} prompt + "
        f"{total.completion_tokens} completion = {total.total_tokens} tokens{cost}{estimated}"
    )


def _partial_usage(meter: UsageMeter) -> str:
    """What a stream stopped by Ctrl-C used: exact if its done arrived, else estimated."""
    usage = meter.usage()
    if meter.estimated:
        usage = usage.with_cost(catalog.cost(meter.provider, meter.model, usage))
        return "partial " + _usage_line(usage, None) + " (estimated)"
    return _usage_line(usage, None)


async def _settle(before: set[asyncio.Task[Any]], within: float = 2.0) -> None:
    """After a dispose, let the cancelled streams' tasks finish before the loop closes.

    Disposing cancels each stream's task; its cleanup (closing the HTTP response,
    cancelling the gRPC call) runs on the next turns of the loop. Waiting for
    the tasks started since ``before`` makes sure the server sees the
    disconnect before the process exits.
    """
    current = asyncio.current_task()
    pending = {t for t in asyncio.all_tasks() if t not in before and t is not current}
    if pending:
        await asyncio.wait(pending, timeout=within)


# -- rxllm stream -------------------------------------------------------------------------


async def _stream(console: Console, errors: Console, args: argparse.Namespace) -> int:
    """The reply on stdout (exactly its text); reasoning, notices and usage on stderr."""
    fields = _request_fields(args)
    out = console.file
    spec = args.model or _default_models()[0]
    async with _connect([spec], args, errors) as (bound,):
        stream = bound.stream(args.prompt, **fields)
        meter = UsageMeter(stream)
        done: list[DoneEvent] = []
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        in_reasoning = False

        def on_next(event: StreamEvent) -> None:
            nonlocal in_reasoning
            meter.observe(event)
            if isinstance(event, ReasoningEvent):
                if not in_reasoning:
                    errors.print("[dim italic]thinking: [/]", end="")
                    in_reasoning = True
                errors.print(Text(event.text, style="dim italic"), end="")
                errors.file.flush()
            elif isinstance(event, TokenEvent):
                if in_reasoning:
                    errors.print()
                    errors.file.flush()
                    in_reasoning = False
                out.write(event.text)
                out.flush()
            elif isinstance(event, DoneEvent):
                done.append(event)

        def on_error(error: Exception) -> None:
            if not finished.done():
                finished.set_exception(error)

        def on_completed() -> None:
            if not finished.done():
                finished.set_result(None)

        before = asyncio.all_tasks()
        subscription = stream.subscribe(on_next, on_error, on_completed)
        try:
            await finished
        except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels this task
            subscription.dispose()
            await _settle(before)
            out.write("\n")
            out.flush()
            errors.print(f"[yellow]stopped[/] · {escape(_partial_usage(meter))}")
            return EXIT_INTERRUPTED
        except RxllmError as error:
            if meter.produced:
                out.write("\n")
                out.flush()
            if args.debug:
                raise
            errors.print(f"[red]error:[/] {escape(one_line(error))}")
            raise _Failed from error
        finally:
            subscription.dispose()
        out.write("\n")
        out.flush()
        if done:
            last = done[-1]
            errors.print(
                f"[dim]{escape(last.provider)}:{escape(last.model)} · "
                f"{escape(_usage_line(last.usage, str(last.finish_reason)))}[/]"
            )
    return EXIT_OK


# -- rxllm compare ------------------------------------------------------------------------


def _default_models() -> list[str]:
    """Each vendor's default model, for the vendors compared when no ``-m`` is given."""
    return [
        f"{spec.name}:{spec.default_model}"
        for spec in registry.specs()
        if spec.compared_by_default and spec.default_model
    ]


def _lanes_view(comparison: Comparison, texts: dict[str, list[str]]) -> Any:
    panels = Table.grid(expand=True, padding=(0, 1))
    for _ in comparison.lanes:
        panels.add_column(ratio=1)
    cells = []
    for lane in comparison.lanes:
        m = comparison.latest.get(lane)
        body = Text("".join(texts.get(lane, [])))
        if m is not None and m.error:
            body.append(f"\n{m.error}", style="red")
        subtitle = Text(metrics_line(m)) if m is not None else ""
        cells.append(Panel(body, title=Text(lane), subtitle=subtitle, subtitle_align="left"))
    panels.add_row(*cells)
    return panels


def _lane_texts(console: Console, comparison: Comparison, texts: dict[str, list[str]]) -> None:
    """Each lane's whole text under its name (when stdout is not a terminal)."""
    for lane in comparison.lanes:
        console.rule(Text(lane), align="left")
        console.print(Text("".join(texts[lane])), soft_wrap=True)
        m = comparison.latest.get(lane)
        if m is not None and m.error:
            console.print(Text(m.error, style="red"), soft_wrap=True)
    console.rule()


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column == "cost_usd" and isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def _summary_table(comparison: Comparison, title: str = "rxllm compare") -> Table:
    table = Table(title=title)
    columns = (
        "lane",
        "ttft_s",
        "tokens_per_s",
        "tokens",
        "total_tokens",
        "cost_usd",
        "finish_reason",
        "error",
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in comparison.summary():
        cells = [_cell(c, row[c]) for c in columns]
        table.add_row(*(Text(cell) for cell in cells))
    return table


async def _compare(console: Console, errors: Console, args: argparse.Namespace) -> int:
    specs = args.models or _default_models()
    fields = _request_fields(args)
    async with _connect(specs, args, errors) as bound:
        tracker = UsageTracker()
        comparison = compare(args.prompt, list(bound), usage_tracker=tracker, **fields)
        texts: dict[str, list[str]] = {lane: [] for lane in comparison.lanes}
        meters = {lane: UsageMeter(comparison.streams[lane]) for lane in comparison.lanes}
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_next(item: LaneEvent) -> None:
            meters[item.lane].observe(item.event)
            if isinstance(item.event, TokenEvent):
                texts[item.lane].append(item.event.text)

        def on_completed() -> None:
            if not finished.done():
                finished.set_result(None)

        def on_error(error: Exception) -> None:
            if not finished.done():
                finished.set_exception(error)

        live: Live | None = None
        if console.is_terminal:
            live = Live(
                _lanes_view(comparison, texts),
                console=console,
                refresh_per_second=8,
                transient=False,
            )
            live.start()
        before = asyncio.all_tasks()
        subscription = comparison.subscribe(on_next, on_error, on_completed)
        refresher = asyncio.create_task(_refresh(live, comparison, texts)) if live else None
        interrupted = False
        try:
            await finished
        except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels this task
            interrupted = True
            subscription.dispose()
            if refresher is not None:
                refresher.cancel()
            await _settle(before)
        finally:
            subscription.dispose()
            if refresher is not None:
                refresher.cancel()
            if live is not None:
                live.update(_lanes_view(comparison, texts))
                live.stop()
        if live is None:
            _lane_texts(console, comparison, texts)
        console.print(_summary_table(comparison))
        errors.print(escape(_totals_line(tracker)))
        if interrupted:
            for lane, meter in meters.items():
                m = comparison.latest.get(lane)
                if m is None or not m.finished:
                    errors.print(f"[yellow]{escape(lane)} stopped[/] · {_partial_usage(meter)}")
            return EXIT_INTERRUPTED
        failed = [m for m in comparison.latest.values() if m.error]
        for m in failed:
            errors.print(f"[red]{escape(m.lane)}:[/] {escape(m.error or '')}")
    return EXIT_ERROR if failed else EXIT_OK


async def _refresh(live: Live, comparison: Comparison, texts: dict[str, list[str]]) -> None:
    while True:
        await asyncio.sleep(0.125)
        live.update(_lanes_view(comparison, texts))


# -- rxllm sweep --------------------------------------------------------------------------


def _sweep_table(rows: list[dict[str, Any]], title: str) -> Table:
    from .sweeps.summary import summarize

    table = Table(title=title)
    columns = ("model", "rows", "ok", "errors", "success", "ttft p50", "ttft p95", "tok/s p50")
    for column in (*columns, "cost $", "$/row", "errors by class"):
        table.add_column(column, overflow="fold")

    def number(value: float | None, digits: int) -> str:
        return "" if value is None else f"{value:.{digits}f}"

    for entry in summarize(rows):
        by_class = ", ".join(f"{k} {v}" for k, v in entry["errors_by_class"].items())
        table.add_row(
            Text(entry["model"]),
            str(entry["rows"]),
            str(entry["ok"]),
            str(entry["errors"]),
            f"{entry['success_rate']:.0%}",
            number(entry["ttft_p50_s"], 3),
            number(entry["ttft_p95_s"], 3),
            number(entry["tokens_per_s_p50"], 1),
            f"{entry['cost_usd']:.6f}",
            f"{entry['cost_per_row_usd']:.6f}",
            Text(by_class),
        )
    return table


def _sweep_summary(console: Console, path: str) -> int:
    """``rxllm sweep --summary results.sqlite``: the per-model table of a store."""
    from .sweeps import SweepStore

    if not os.path.isfile(path):
        raise ValueError(f"no sweep store {path!r}")
    with SweepStore(path) as store:
        rows = store.rows()
    console.print(_sweep_table(rows, f"rxllm sweep · {path} · {len(rows)} rows"))
    return EXIT_OK


async def _sweep(console: Console, errors: Console, args: argparse.Namespace) -> int:
    """``rxllm sweep prompts.jsonl -m … --db results.sqlite``: run it, or continue it."""
    from .sweeps import DEFAULT_DB, sweep

    if not args.prompts or not args.models:
        raise ValueError("rxllm sweep needs a prompts file and at least one -m provider:model")
    db = args.db or DEFAULT_DB
    fields = _request_fields(args)
    async with _connect(args.models, args, errors) as bound:
        result = await sweep(
            args.prompts,
            list(bound),
            db=db,
            max_cost=args.max_cost,
            concurrency=args.concurrency,
            attempts=args.attempts,
            retry_failed=args.retry_failed,
            engine=args.engine,
            **fields,
        )
    console.print(_sweep_table(result.rows, f"rxllm sweep · {db} · {len(result.rows)} rows"))
    failed = len(result.failed)
    errors.print(
        f"ran {result.ran} rows, {result.skipped} already in the store, {failed} failed "
        f"(recorded as rows) · spent ${result.spent:.6f}"
    )
    if result.stopped:
        errors.print(
            f"[yellow]stopped: {escape(result.stopped)}[/] · {result.not_started} rows not "
            "started: raise --max-cost and run the same command again to continue"
        )
        return EXIT_ERROR
    return EXIT_OK


# -- rxllm models / emulate ---------------------------------------------------------------


def _models(console: Console, provider: str | None) -> int:
    specs = [registry.spec(provider)] if provider else registry.specs()
    table = Table(title=f"rxllm model catalog (figures as of {catalog.as_of()})")
    for column in ("provider:model", "context", "max output", "$/M in", "$/M out", "reasoning"):
        table.add_column(column)
    for spec in specs:
        name, default = spec.name, spec.default_model
        known = catalog.models(name)
        if not known:  # a local or compatible server: any model it serves
            where = spec.base_url or "base_url="
            table.add_row(f"{name}:<any model> ({where})", "", "", "", "", "")
        for model in known:
            info = catalog.info(name, model)
            if info is None:
                continue
            mark = " (default)" if model == default else ""
            table.add_row(
                f"{name}:{model}{mark}",
                f"{info.context_window:,}",
                f"{info.max_output_tokens:,}",
                _price(info.input_price),
                _price(info.output_price),
                "yes" if info.reasoning else "",
            )
    console.print(table)
    return EXIT_OK


def _price(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


async def _emulate(console: Console, args: argparse.Namespace) -> int:
    from .emulator import Emulator

    emu = Emulator(
        api_key=args.api_key,
        ttft=args.ttft,
        tps=args.tps,
        port=args.port,
        grpc_port=args.grpc_port,
    )
    async with emu:
        console.print("[bold]rxllm emulator[/] on 127.0.0.1 — Ctrl-C to stop")
        for dialect in sorted({s.emulator for s in registry.specs() if s.emulator}):
            console.print(f"  {dialect:<10} {emu.base_url(dialect)}")
        console.print("\nPoint rxllm and the official SDKs at it:")
        shell_env = emu.env()
        if args.api_key is None:
            console.print("[dim]  (any non-empty API key is accepted)[/]")
        for key, value in shell_env.items():
            shown = (
                value
                if not key.endswith("_API_KEY") or args.api_key is None
                else "<your --api-key>"
            )
            console.print(f"  export {key}={shown}")
        sys.stdout.flush()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
