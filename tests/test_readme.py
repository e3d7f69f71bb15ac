"""The README's Python examples run as written (against the emulator, not the real site)."""

from __future__ import annotations

import asyncio
import gc
import re
from pathlib import Path
from typing import Any

import pytest

from chatgptt import ChatGptt

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def block(marker: str) -> str:
    """The README's Python block containing ``marker``."""
    matching = [code for code in BLOCKS if marker in code]
    assert len(matching) == 1, f"expected one README block with {marker!r}"
    return matching[0]


def test_the_readme_has_the_examples_this_file_runs() -> None:
    assert len(BLOCKS) == 7


def test_library_usage(emulator, monkeypatch, capsys) -> None:
    monkeypatch.setattr(ChatGptt, "url", emulator.url)
    monkeypatch.setattr(ChatGptt, "token_cache", type(ChatGptt.token_cache)())
    exec(block("asyncio.run(main())"), {})
    assert capsys.readouterr().out == "Hello from upstream: Hello, how are you?\n"
    assert emulator.stats.received[-1][1] == {"role": "user", "content": "System: Be brief."}


def test_the_provider_inside_gpt4free(emulator, monkeypatch, capsys, tmp_path) -> None:
    from tests.chatgptt.gpt4free_support import import_gpt4free, isolate_gpt4free_files

    import_gpt4free()
    isolate_gpt4free_files(tmp_path, monkeypatch)
    monkeypatch.setattr(ChatGptt, "url", emulator.url)
    monkeypatch.setattr(ChatGptt, "token_cache", type(ChatGptt.token_cache)())
    exec(block("Client(provider=ChatGptt)"), {})
    answer = "Hello from upstream: Hello, how are you?"
    assert capsys.readouterr().out == f"{answer}\n{answer}\n"
    assert emulator.stats.ajax_requests == 2
    assert emulator.stats.received[-1][1] == {"role": "user", "content": "System: Be brief."}


def test_another_site_and_custom_stage(emulator) -> None:
    namespace: dict[str, Any] = {}
    exec(block("class Mirror(ChatGptt)"), namespace)
    assert namespace["Mirror"].url == "https://chatgpt.example"
    assert namespace["Mirror"].history == "flatten"
    exec(block('@stage("sign")'), namespace)
    for dialect in ("classic", "aipkit"):
        assert namespace["Signed"].pipeline_of(dialect).names[3] == "sign"
    assert namespace["SignedClassic"].pipeline_of("classic").names[3] == "sign"
    assert "sign" not in namespace["SignedClassic"].pipeline_of("aipkit")
    exec(block("async def test_my_stage"), namespace)
    from chatgptt.testing import EmulatorFactory

    factory = EmulatorFactory()
    try:
        asyncio.run(namespace["test_my_stage"](factory))
    finally:
        factory.stop_all()


@pytest.mark.parametrize("command", ["make demo", "make test"])
def test_the_two_commands_come_first(command: str) -> None:
    text = README.read_text(encoding="utf-8")
    assert text.index(command) < text.index("## Use it as a library")


# --- chatgptt serve and the openai SDK pointed at it ----------------------------------------------


def test_the_openai_sdk_against_chatgptt_serve(capsys) -> None:
    from tests.chatgptt.openai_api.support import ServeProcess

    code = block('OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")')
    assert "chatgptt serve --emulator --port 8000" in README.read_text(encoding="utf-8")
    with ServeProcess("--emulator") as server:
        exec(code.replace("http://127.0.0.1:8000/v1", server.base), {})
        gc.collect()  # a client the snippet left open would warn here, not in a later test
    first, second = capsys.readouterr().out.splitlines()
    answer = "Hello from upstream: Hello"
    assert first.startswith(answer + " ")
    assert int(first.split()[-1]) > 0  # the usage's total
    assert second.startswith(answer + " (")
    assert second.endswith(" tokens)")


def test_the_openai_sdk_with_an_api_key(capsys) -> None:
    from tests.chatgptt.openai_api.support import ServeProcess

    code = block('api_key="sk-my-secret"')
    readme = README.read_text(encoding="utf-8")
    assert "CHATGPTT_API_KEY=sk-my-secret chatgptt serve --emulator --port 8000" in readme
    with ServeProcess("--emulator", env={"CHATGPTT_API_KEY": "sk-my-secret"}) as server:
        exec(code.replace("http://127.0.0.1:8000/v1", server.base), {})
        gc.collect()
    assert capsys.readouterr().out == (
        "['gpt-4', 'gpt-4o', 'gpt-4o-mini']\nrefused: invalid_api_key\n"
    )
