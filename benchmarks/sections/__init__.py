"""The benchmark sections, one comparison per file; :mod:`benchmarks.suite` lists them in the
order they run."""
