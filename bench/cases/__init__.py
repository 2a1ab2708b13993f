"""One module per benchmark case; each exposes `run(bench) -> markdown section`."""
