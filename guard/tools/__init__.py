"""Tools that sit beside the product, never on its request path: the simulated WAS, the demo
and the process launcher that the benchmark, the soak and the tests share. Nothing in
guard/core, guard/proxy or the runtime imports from here; only the CLI does, lazily."""
