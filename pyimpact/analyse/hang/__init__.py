"""Why is it stuck: the wait graph of a recording (waitmodel, waitgraph, waitresolve), its chains and the rules
that turn them into one verdict per process (rules, verdict, diagnose), and the machine-wide table (machine).

Pure: a Recording in, a Diagnosis out; no I/O, no clock.
"""
