"""gpt4free's own API server (``g4f api``) with the original provider pointed at the emulator.

Run with the peer's virtual environment (``g4f==0.4.5.4`` with fastapi, uvicorn, pydantic and
python-multipart at the releases of its time), never with the project's: it imports nothing of
this project. ``g4f.Provider.ChatGptt`` is pointed at the site the gpt4free way (its ``url`` and
``api_endpoint`` class attributes), then g4f's FastAPI app runs under uvicorn as ``g4f api``
runs it, minus the access log (one line per request) and the update check (a network call).
Clients name the provider per request: ``"provider": "ChatGptt"``.

``python -m benchmarks.server_g4f SITE_URL`` prints ``g4f api listening on URL/v1``.
"""

from __future__ import annotations

import socket
import sys


def main(site: str) -> None:
    import g4f.debug
    import uvicorn
    from g4f.api import create_app
    from g4f.Provider import ChatGptt

    base = site.rstrip("/")
    ChatGptt.url = base
    ChatGptt.api_endpoint = base + "/wp-admin/admin-ajax.php"
    g4f.debug.version_check = False
    app = create_app()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(2048)
    port = listener.getsockname()[1]
    print(f"g4f api listening on http://127.0.0.1:{port}/v1", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, fd=listener.fileno(), log_level="warning", access_log=False)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main(sys.argv[1])
