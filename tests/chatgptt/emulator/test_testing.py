"""The pytest plugin's fixtures, as a test suite uses them."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

from chatgptt.emulator import EmulatorConfig, Fault, ManualClock, ThreadedEmulator
from chatgptt.testing import EmulatorFactory


def test_emulator_fixture(emulator: ThreadedEmulator) -> None:
    assert emulator.config.token_delay == 0
    assert emulator.config.mode == "sse"
    with urllib.request.urlopen(emulator.url, timeout=10) as response:
        assert f'data-nonce="{emulator.nonce}"' in response.read().decode()


def test_emulator_factory(emulator_factory: EmulatorFactory) -> None:
    first = emulator_factory(mode="json")
    second = emulator_factory(
        EmulatorConfig(page_style="widget"),
        faults=[Fault(kind="status", status=503, target="page")],
        post_id="9",
    )
    assert first.port != second.port
    assert first.config.mode == "json"
    assert (second.config.page_style, second.config.post_id) == ("widget", "9")
    assert second.faults.pending[0].status == 503


def test_factory_stops_what_it_started() -> None:
    factory = EmulatorFactory()
    site = factory()
    factory.stop_all()
    assert site._thread is None


def test_plugin_imports_without_pytest_asyncio() -> None:
    code = "import sys; sys.modules['pytest_asyncio'] = None; import chatgptt.testing"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_aipkit_emulator_fixture(aipkit_emulator: ThreadedEmulator) -> None:
    assert aipkit_emulator.config.dialect == "aipkit"
    with urllib.request.urlopen(aipkit_emulator.url, timeout=10) as response:
        page = response.read().decode()
    assert "data-config='" in page
    clock = aipkit_emulator.config.clock
    assert isinstance(clock, ManualClock)
    before = clock()
    clock.advance(61)
    assert clock() == before + 61


def test_factory_makes_aipkit_sites(emulator_factory: EmulatorFactory) -> None:
    site = emulator_factory(dialect="aipkit", aipkit_page="popup", aipkit_api_mode="responses")
    with urllib.request.urlopen(site.url, timeout=10) as response:
        assert 'class="aipkit_popup_wrapper' in response.read().decode()
    assert site.state.page_fetches == 1
