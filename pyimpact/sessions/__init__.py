"""Collection sessions: what a command runs between parsing its options and
printing its answer.

A session composes the layers below it — collect (Tracer, /proc samplers,
NVML) -> Recording -> analyse -> a callback or a live view — and closes every
stage it opened on every path.  It holds no click: commands/ parses the
options and calls a session; act/ is used only by the live panel's keys.

  observe       diagnose: one window on a process (or the machine), diagnosed
  diagnose      what diagnose does with the verdict: redact, save, print (one, --all, --job)
  job           the distributed job's node sessions (diagnose-node, trace-node merge, --job options)
  trace         StopFlag, the status line, the trace loop
  kill_preview  the sampling look of kill-preview and stop; samples into the Recording
  panel         the live "if killed now" panel (trace --kill-preview)
  panel_keys    the panel's action keys and the terminal key reader
  report        a saved recording read back and analysed (pyimpact report)
  record        the always-on recorder: probes, NVML, the announcement, a clean stop; its systemd unit
  act_look      the look at a tree before an action (suspend, resume, orphans --cleanup)
  history       the recorder history of a job (--history): looked up once, added to the JSON
  demo          `pyimpact demo`: the bundled stuck pipeline, traced, diagnosed, previewed, reported
"""
