"""Notes §1-4: the layers every later model is built from, each beside a slow, readable reference."""
