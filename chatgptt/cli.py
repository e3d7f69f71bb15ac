"""The ``chatgptt`` command: ``chat``, ``models``, ``probe``, ``serve``, ``emulator``.

``chatgptt chat "Hello"`` streams the answer to stdout as it arrives; with
``--emulator`` it talks to a local emulator of the site started for the occasion.
Failures print one line on stderr and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Literal, TextIO
from urllib.parse import urlsplit

import attrs
import structlog

from stages.dialects import AUTO
from stages.errors import ChatGpttError

from ._argtypes import non_negative_count, port_number, positive_seconds
from .chatgptt import ChatGptt

__all__ = ["build_parser", "main"]

#: Exit status for an interrupted run, as shells report SIGINT.
EXIT_INTERRUPTED = 130
#: Exit status when stdout's reader went away, as shells report SIGPIPE.
EXIT_BROKEN_PIPE = 141
#: Seconds between the tokens of the emulator that ``--emulator`` starts.
_EMULATOR_TOKEN_DELAY = 0.04


def configure_tracing(stream: TextIO) -> None:
    """Log the library's events on ``stream`` (the CLI is an application: it may configure)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S.%f"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``chat``, ``models`` and ``emulator`` subcommands."""
    parser = argparse.ArgumentParser(
        prog="chatgptt",
        description=(
            "Streamed answers from chatgptt.me and other sites running the AI Power chat plugin."
        ),
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    chat = commands.add_parser("chat", help="ask a question and stream the answer to stdout")
    chat.add_argument(
        "prompt", nargs="?", default=None, help="the question; '-' or absent: read stdin"
    )
    where = chat.add_mutually_exclusive_group()
    where.add_argument(
        "--emulator", action="store_true", help="talk to a local emulator of the site"
    )
    where.add_argument("--url", help=f"the site's base URL (default {ChatGptt.url})")
    chat.add_argument(
        "--model",
        type=_model,
        default=ChatGptt.default_model,
        help=f"one of: {', '.join(ChatGptt.get_models())} (or an alias; default %(default)s)",
    )
    chat.add_argument("--system", help="a system message to send first")
    chat.add_argument("--proxy", help="an http(s) proxy URL for every request")
    _add_browser_options(chat)
    chat.add_argument("--timeout", type=positive_seconds, help="seconds for the whole call")
    chat.add_argument(
        "--retries",
        type=non_negative_count,
        metavar="N",
        help="retries of a failed request (default 2)",
    )
    chat.add_argument(
        "--history",
        choices=("messages", "flatten"),
        default="messages",
        help="how the conversation is sent",
    )
    chat.add_argument(
        "--dialect",
        choices=(AUTO, *ChatGptt.dialects.names),
        default=AUTO,
        help="the plugin's protocol: auto (the page decides, default), "
        + ", ".join(f"{d.name} ({d.description})" for d in ChatGptt.dialects),
    )
    chat.add_argument("--trace", action="store_true", help="log each stage on stderr")

    commands.add_parser("models", help="list the models")

    probe = commands.add_parser(
        "probe", help="show what a site's chat page carries, without sending a message"
    )
    probe.add_argument("url", help="the site's base URL, or the page that shows the chat")
    probe.add_argument("--dialect", choices=(AUTO, *ChatGptt.dialects.names), default=AUTO)
    probe.add_argument("--proxy", help="an http(s) proxy URL")
    _add_browser_options(probe)
    probe.add_argument(
        "--timeout", type=positive_seconds, default=30.0, help="seconds (default 30)"
    )
    probe.add_argument("--json", action="store_true", help="print one JSON object")

    serve = commands.add_parser(
        "serve",
        help="serve the provider as an OpenAI-compatible API",
        description=(
            "An OpenAI-compatible API in front of the site: /v1/chat/completions, /v1/models, "
            "/health. Stops on SIGINT or SIGTERM, letting the answers in flight finish."
        ),
    )
    site = serve.add_mutually_exclusive_group()
    site.add_argument("--emulator", action="store_true", help="in front of a local emulator")
    site.add_argument("--url", help=f"the site's base URL (default {ChatGptt.url})")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; elsewhere, set an API key)",
    )
    serve.add_argument("--port", type=port_number, default=8000, help="port (0: any free)")
    serve.add_argument(
        "--dialect",
        choices=(AUTO, *ChatGptt.dialects.names),
        default=AUTO,
        help="the plugin's protocol: auto (the page decides, default), aipkit or classic; "
        "with --emulator, the dialect the emulated site speaks",
    )
    serve.add_argument(
        "--api-key",
        default=os.environ.get("CHATGPTT_API_KEY"),
        help="require 'Authorization: Bearer KEY' on /v1 (default: $CHATGPTT_API_KEY)",
    )
    serve.add_argument(
        "--max-concurrency",
        type=int,
        default=1024,
        metavar="N",
        help="requests answered at once, per process; more get 429 (default 1024)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="worker processes on the port, through gunicorn (default 1: no gunicorn)",
    )
    serve.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGINT/SIGTERM, how long answers in flight may finish (default 30)",
    )
    serve.add_argument(
        "--usage-tokenizer",
        choices=("auto", "tiktoken", "estimate"),
        default=os.environ.get("CHATGPTT_USAGE_TOKENIZER") or "auto",
        help=(
            "how usage tokens are counted: auto (tiktoken when its encodings load, else an "
            "estimate), tiktoken, or estimate (default: $CHATGPTT_USAGE_TOKENIZER or auto)"
        ),
    )

    from .emulator import add_arguments

    emulator = commands.add_parser("emulator", help="run the local emulator of the site")
    add_arguments(emulator)
    return parser


def _model(text: str) -> str:
    """A model ``chat`` can ask for: a listed one, an alias, in any case."""
    try:
        return ChatGptt.get_model(text)
    except ChatGpttError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    if not colon or not name.strip():
        # Never echoed: a header given here may well be a secret (a token, a cookie).
        raise argparse.ArgumentTypeError("a header is written 'Name: value'")
    return name.strip(), value.strip()


def _add_browser_options(parser: argparse.ArgumentParser) -> None:
    """``--header`` and ``--cookie``: what a browser that passed the site's bot check sends
    (its User-Agent, its cf_clearance), for this run's requests only; never printed."""
    parser.add_argument(
        "--header",
        type=_header,
        action="append",
        metavar="'NAME: VALUE'",
        help="a header for every request, e.g. the User-Agent of a browser that passed the "
        "site's challenge (repeat for more)",
    )
    parser.add_argument(
        "--cookie",
        action="append",
        metavar="NAME=VALUE",
        help="a cookie for every request, e.g. that browser's cf_clearance (repeat for more, "
        "or give a whole Cookie header: 'a=1; b=2')",
    )


def _browser(args: argparse.Namespace) -> dict[str, object]:
    """The call options ``--header`` and ``--cookie`` give."""
    options: dict[str, object] = {}
    if args.header:
        options["headers"] = dict(args.header)
    if args.cookie:
        options["cookies"] = "; ".join(args.cookie)
    return options


def _read_prompt(prompt: str | None, stdin: TextIO) -> str:
    if prompt is not None and prompt != "-":
        return prompt
    if prompt is None and stdin.isatty():
        raise ChatGpttError("no prompt: give one as an argument, or '-' to read stdin")
    return stdin.read()


@contextlib.asynccontextmanager
async def _provider(args: argparse.Namespace) -> AsyncIterator[type[ChatGptt]]:
    dialect = getattr(args, "dialect", AUTO)
    if args.emulator:
        from .emulator import EmulatorConfig, EmulatorServer

        # The emulated site speaks the dialect asked for (classic when the page decides).
        config = EmulatorConfig(
            token_delay=_EMULATOR_TOKEN_DELAY,
            dialect="aipkit" if dialect == "aipkit" else "classic",
        )
        async with EmulatorServer(config) as emulator:
            yield ChatGptt.derive("Emulated", url=emulator.url, dialect=dialect)
    elif args.url:
        yield ChatGptt.derive("Site", url=args.url, dialect=dialect)
    else:
        yield ChatGptt.derive("Default", dialect=dialect) if dialect != AUTO else ChatGptt


async def _chat(args: argparse.Namespace, prompt: str, out: TextIO) -> None:
    messages = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": prompt})
    options: dict[str, object] = {"history": args.history, **_browser(args)}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.retries is not None:
        options["retry"] = attrs.evolve(ChatGptt.retry_policy, attempts=args.retries + 1)
    wrote = False
    try:
        async with _provider(args) as provider:
            stream = provider.create_async_generator(
                args.model, messages, proxy=args.proxy, **options
            )
            async with contextlib.aclosing(stream):
                async for chunk in stream:
                    out.write(chunk)
                    out.flush()
                    wrote = True
    except ChatGpttError:
        if wrote:  # end the partial answer's line, so the error gets a line of its own
            out.write("\n")
            out.flush()
        raise
    out.write("\n")
    out.flush()


def _site(url: str) -> type[ChatGptt]:
    """A provider for ``url``: a site's base URL, or the page that shows its chat."""
    parts = urlsplit(url)
    if not (parts.scheme and parts.netloc) or (parts.path in ("", "/") and not parts.query):
        return ChatGptt.derive("Site", url=url)  # a URL it cannot take is named as given
    base = f"{parts.scheme}://{parts.netloc}"
    return ChatGptt.derive("Site", url=base, page_url=url)


async def _probe(args: argparse.Namespace, out: TextIO) -> None:
    provider = _site(args.url)
    found = await provider.probe(
        proxy=args.proxy, timeout=args.timeout, dialect=args.dialect, **_browser(args)
    )
    if args.json:
        out.write(json.dumps(attrs.asdict(found)) + "\n")
        return
    streaming = {True: "on", False: "off", None: "not said by the page"}[found.streaming]
    rows = [
        ("page", f"{found.page_url} (HTTP {found.status})"),
        ("dialect", f"{found.dialect}: {found.description}"),
        ("bot id", found.bot_id or "-"),
        ("ajax url", found.ajax_url or "-"),
        ("post id", found.post_id or "-"),
        ("nonce", "found" if found.nonce_found else "not found"),
        ("streaming", streaming),
    ]
    if found.missing:
        rows.append(("missing", ", ".join(found.missing)))
    for name, value in rows:
        out.write(f"{name + ':':<11}{value}\n")
    await provider.aclose()


def _serve_provider(url: str | None, dialect: str = AUTO) -> type[ChatGptt]:
    """The provider ``serve`` puts behind the API (the place for options that shape it)."""
    if url is None and dialect == AUTO:
        return ChatGptt
    return ChatGptt.derive("Site", url=url or ChatGptt.url, dialect=dialect)


def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .openai_api import ServeOptions, load_counter, serve

    try:  # an empty CHATGPTT_API_KEY (a secret that expanded to nothing) is refused here
        options = ServeOptions(
            api_key=args.api_key,
            max_concurrency=args.max_concurrency,
            grace=args.grace,
        )
    except ValueError as exc:
        parser.error(str(exc))
    if args.workers < 1:
        parser.error("--workers must be 1 or more")
    provider = _serve_provider(args.url, args.dialect)
    counter = load_counter(provider.get_models(), args.usage_tokenizer)

    def run(provider: type[ChatGptt]) -> int:
        return serve(
            provider,
            options,
            host=args.host,
            port=args.port,
            workers=args.workers,
            counter=counter,
        )

    if not args.emulator:
        return run(provider)
    emulated: Literal["classic", "aipkit"] = "aipkit" if args.dialect == "aipkit" else "classic"
    if args.workers > 1:
        # gunicorn forks its workers: the emulator runs in a process of its own, not in a
        # thread of the process that forks.
        with _emulator_process(_EMULATOR_TOKEN_DELAY, emulated) as url:
            return run(ChatGptt.derive("Emulated", url=url, dialect=args.dialect))
    from .emulator import EmulatorConfig, start_in_thread

    config = EmulatorConfig(token_delay=_EMULATOR_TOKEN_DELAY, dialect=emulated)
    with start_in_thread(config) as emulator:
        return run(ChatGptt.derive("Emulated", url=emulator.url, dialect=args.dialect))


@contextlib.contextmanager
def _emulator_process(token_delay: float, dialect: str = "classic") -> Iterator[str]:
    """``chatgptt emulator`` in a child process; its URL."""
    import re
    import subprocess

    command = [
        sys.executable,
        "-m",
        "chatgptt.emulator",
        "--port",
        "0",
        "--token-delay",
        repr(token_delay),
        "--dialect",
        dialect,
    ]
    # A session of its own: a Ctrl-C in the terminal stops the server (which then drains its
    # answers, from this emulator), not the emulator under it.
    child = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert child.stderr is not None
        line = child.stderr.readline()
        found = re.search(r"emulator listening on (\S+)", line)
        if found is None:
            raise ChatGpttError(f"the emulator did not start: {line.strip()}")
        yield found.group(1)
    finally:
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stderr is not None:
            child.stderr.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "models":
        for model in ChatGptt.get_models():
            print(model)
        return 0
    if args.command == "emulator":
        from .emulator import main_from_args

        return main_from_args(args)
    if args.command == "serve":
        try:
            return _serve(args, parser)
        except ChatGpttError as exc:
            print(f"chatgptt: error: {exc}", file=sys.stderr)
            return 1
    if args.command == "probe":
        try:
            asyncio.run(_probe(args, sys.stdout))
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except ChatGpttError as exc:
            print(f"chatgptt: error: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.trace:
        configure_tracing(sys.stderr)
    try:
        prompt = _read_prompt(args.prompt, sys.stdin)
        asyncio.run(_chat(args, prompt, sys.stdout))
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's final flush of
        # stdout from complaining about the same closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except ChatGpttError as exc:
        sys.stdout.flush()
        print(f"chatgptt: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
