"""The benchmark harness of chatgptt: ``python -m benchmarks.run`` (``make bench``).

It measures three clients over the same workload against the site emulator running in its
own process: a minimal hand-written aiohttp client (the floor), chatgptt with its default
stages and layers, and the original provider ``g4f.Provider.ChatGptt`` (the peer, from its
own virtual environment). Every client runs in its own worker process so that its CPU time
and memory are its own. See ``benchmarks/README.md``.
"""
