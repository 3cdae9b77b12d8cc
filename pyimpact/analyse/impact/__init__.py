"""What a kill would cost: the tree and its shared resources (tree, resources, signals), the work at risk
(checkpoints, ckpt_layouts, ckpt_history, progress, recovery), the jobs of a machine (jobs), the verdict and the
whole report (verdict, report), and the same facts for the actions (stop_points, act_notes, what_if).

Pure: a Recording in, an ImpactReport out; no I/O, no clock.
"""
