"""BPF C sources, shipped as package data and loaded by pyimpact.collect.probes."""
