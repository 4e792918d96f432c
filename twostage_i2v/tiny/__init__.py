"""Small random-weight models built with ComfyUI's own classes, for the tests, the demo and the benchmarks."""
