"""The analysis: pure functions from a Recording to answers (no I/O, no clock; imports base and model only).

- ``hang/``: why is it stuck (the wait graph, its rules, one verdict per process, the machine table);
- ``impact/``: what a kill would cost (the tree, checkpoints and progress at risk, the verdict, the actions);
- ``history/``: over time (the recorder's history, orphans, GPU usage, a recording's resource series);
- ``timeline_summary``: what happened during a recording (one typed summary: report's story, trace's summary);
- ``job``: one diagnosis for a distributed job from its nodes'; ``pidns``: namespace pids to host pids.
"""
