"""Helpers of scripts/bench.py, the pyimpact benchmark suite (issue 4).

One module per benchmark (overhead, training, verdict, capacity, memory), the
tracers under comparison (tracers), process and machine plumbing (common), and
the renderer of BENCHMARKS.md (report). C workloads live in c/ and are compiled
by the script into a temporary directory.
"""
