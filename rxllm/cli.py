"""The ``rxllm`` command line: stream, compare, models, emulate.

Providers without an API key (or all of them with ``--emulate``) are served by
rxllm's local emulator, started in-process; the command says so on screen.
Ctrl-C stops the streams cleanly (connections closed) and prints the usage so
far. Errors are one readable line unless ``--debug``; the exit code is
non-zero when a stream failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from . import catalog, registry
from .compare import Comparison, LaneEvent, LaneMetrics, compare
from .errors import ConfigurationError, RxllmError
from .events import DoneEvent, ReasoningEvent, StreamEvent, TokenEvent, Usage

__all__ = ["main"]

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
        p.add_argument("--debug", action="store_true", help="show tracebacks")

    stream = sub.add_parser("stream", help="stream one model's reply")
    stream.add_argument("-m", "--model", default="anthropic:claude-sonnet-4-6")
    request_options(stream)

    cmp = sub.add_parser("compare", help="stream several models side by side")
    cmp.add_argument(
        "-m", "--model", action="append", dest="models", help="provider:model (repeatable)"
    )
    request_options(cmp)

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
    args = _parser().parse_args(argv)
    console = Console(highlight=False)
    errors = Console(stderr=True, highlight=False)
    try:
        if args.command == "models":
            return _models(console, args.provider)
        if args.command == "emulate":
            return asyncio.run(_emulate(console, args))
        if args.command == "stream":
            return asyncio.run(_stream(console, errors, args))
        return asyncio.run(_compare(console, errors, args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except _Failed:
        return EXIT_ERROR
    except (RxllmError, ValueError) as error:
        if args.debug:
            raise
        errors.print(f"[red]error:[/] {_one_line(error)}")
        return EXIT_ERROR if isinstance(error, RxllmError) else EXIT_USAGE


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# -- providers, real or emulated ----------------------------------------------------------


@contextlib.asynccontextmanager
async def _bound_models(
    specs: Sequence[str], *, emulate: bool, notice: Console
) -> AsyncIterator[list[registry.BoundModel]]:
    """Bind ``provider:model`` specs; providers without a key (or all) use the emulator.

    Everything is checked (model strings, catalog) before the emulator starts.
    """
    wanted: list[tuple[str, str]] = []
    for spec in specs:
        name, model = registry.parse_model_spec(spec)
        wanted.append((registry.canonical_name(name), model))
    async with contextlib.AsyncExitStack() as stack:
        emu: Any = None
        bound: list[registry.BoundModel] = []
        told: set[str] = set()
        for name, model in wanted:
            spec = f"{name}:{model}"
            try:
                if emulate:
                    raise ConfigurationError("--emulate")
                chosen = registry.model(spec)
            except ConfigurationError as missing:
                if "API key" not in str(missing) and not emulate:
                    raise
                if emu is None:
                    from .emulator import Emulator

                    emu = await stack.enter_async_context(Emulator())
                if name not in told:
                    told.add(name)
                    variables = " or ".join(registry.provider_class(name).api_key_env)
                    why = "--emulate" if emulate else f"no {variables} set"
                    notice.print(f"[yellow]{name}: {why}, using the local emulator[/]")
                chosen = registry.model(spec, api_key="emulator-key", base_url=emu.base_url(name))
            stack.push_async_callback(chosen.provider.aclose)
            bound.append(chosen)
        yield bound


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


# -- rxllm stream -------------------------------------------------------------------------


async def _stream(console: Console, errors: Console, args: argparse.Namespace) -> int:
    fields = _request_fields(args)
    async with _bound_models([args.model], emulate=args.emulate, notice=errors) as (bound,):
        stream = bound.stream(args.prompt, **fields)
        seen: list[StreamEvent] = []
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        in_reasoning = False

        def on_next(event: StreamEvent) -> None:
            nonlocal in_reasoning
            seen.append(event)
            if isinstance(event, ReasoningEvent):
                if not in_reasoning:
                    console.print("[dim italic]thinking: [/]", end="")
                    in_reasoning = True
                console.print(Text(event.text, style="dim italic"), end="")
            elif isinstance(event, TokenEvent):
                if in_reasoning:
                    console.print()
                    in_reasoning = False
                console.print(Text(event.text), end="")

        def on_error(error: Exception) -> None:
            if not finished.done():
                finished.set_exception(error)

        def on_completed() -> None:
            if not finished.done():
                finished.set_result(None)

        subscription = stream.subscribe(on_next, on_error, on_completed)
        try:
            await finished
        except asyncio.CancelledError:
            subscription.dispose()
            console.print()
            errors.print(f"[yellow]stopped[/] · {_partial_usage(seen)}")
            raise KeyboardInterrupt from None
        except RxllmError as error:
            console.print()
            if args.debug:
                raise
            errors.print(f"[red]error:[/] {_one_line(error)}")
            raise _Failed from error
        finally:
            subscription.dispose()
        console.print()
        done = next((e for e in reversed(seen) if isinstance(e, DoneEvent)), None)
        if done is not None:
            console.print(
                f"[dim]{done.provider}:{done.model} · "
                f"{_usage_line(done.usage, str(done.finish_reason))}[/]"
            )
    return EXIT_OK


def _partial_usage(events: list[StreamEvent]) -> str:
    tokens = sum(1 for e in events if isinstance(e, TokenEvent))
    reasoning = sum(1 for e in events if isinstance(e, ReasoningEvent))
    extra = f" + {reasoning} reasoning events" if reasoning else ""
    return f"partial usage: ~{tokens} completion tokens received{extra}"


# -- rxllm compare ------------------------------------------------------------------------


def _default_models() -> list[str]:
    return [
        f"{name}:{catalog.default_model(name)}"
        for name in ("anthropic", "openai", "gemini", "grok")
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
        subtitle = _metrics_text(m) if m is not None else ""
        cells.append(Panel(body, title=lane, subtitle=subtitle, subtitle_align="left"))
    panels.add_row(*cells)
    return panels


def _metrics_text(m: LaneMetrics) -> str:
    from .notebook import metrics_line

    return metrics_line(m)


def _summary_table(comparison: Comparison) -> Table:
    table = Table(title="rxllm compare")
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
        table.add_column(column)
    for row in comparison.summary():
        table.add_row(*("" if row[c] is None else str(row[c]) for c in columns))
    return table


async def _compare(console: Console, errors: Console, args: argparse.Namespace) -> int:
    specs = args.models or _default_models()
    fields = _request_fields(args)
    async with _bound_models(specs, emulate=args.emulate, notice=errors) as bound:
        comparison = compare(args.prompt, bound, **fields)
        texts: dict[str, list[str]] = {lane: [] for lane in comparison.lanes}
        finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        with Live(
            _lanes_view(comparison, texts), console=console, refresh_per_second=8, transient=False
        ) as live:

            def on_next(item: LaneEvent) -> None:
                if isinstance(item.event, TokenEvent):
                    texts[item.lane].append(item.event.text)

            def on_completed() -> None:
                if not finished.done():
                    finished.set_result(None)

            def on_error(error: Exception) -> None:
                if not finished.done():
                    finished.set_exception(error)

            subscription = comparison.subscribe(on_next, on_error, on_completed)
            refresher = asyncio.create_task(_refresh(live, comparison, texts))
            try:
                await finished
            except asyncio.CancelledError:
                subscription.dispose()
                refresher.cancel()
                live.update(_lanes_view(comparison, texts))
                live.stop()
                console.print(_summary_table(comparison))
                errors.print("[yellow]stopped[/] · usage above is what each lane had reported")
                raise KeyboardInterrupt from None
            finally:
                subscription.dispose()
                refresher.cancel()
            live.update(_lanes_view(comparison, texts))
        console.print(_summary_table(comparison))
        failed = [m for m in comparison.latest.values() if m.error]
        for m in failed:
            errors.print(f"[red]{m.lane}:[/] {m.error}")
    return EXIT_ERROR if failed else EXIT_OK


async def _refresh(live: Live, comparison: Comparison, texts: dict[str, list[str]]) -> None:
    while True:
        await asyncio.sleep(0.125)
        live.update(_lanes_view(comparison, texts))


# -- rxllm models / emulate ---------------------------------------------------------------


def _models(console: Console, provider: str | None) -> int:
    names = [registry.canonical_name(provider)] if provider else registry.providers()
    table = Table(title=f"rxllm model catalog (figures as of {catalog.as_of()})")
    for column in ("provider:model", "context", "max output", "$/M in", "$/M out", "reasoning"):
        table.add_column(column)
    for name in names:
        default = catalog.default_model(name)
        for model in catalog.models(name):
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
        for dialect in ("anthropic", "openai", "gemini", "xai"):
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
