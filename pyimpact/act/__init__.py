"""The act layer: the only code in pyimpact that sends signals (DESIGN.md "History and action").

Everything here goes through a pidfd taken when the target was identified
(``pidfd.ProcessHandle``), so a pid that is reused after the target exits is
never signalled; every signal is written to the signal log
(``signal_log.SignalLog``) with time, target and reason; ``tree`` stops,
suspends and resumes a whole process tree in a documented order; ``stop``
runs the `pyimpact stop` plan (wait for a safe point, graceful signal, grace
period, escalation only when forced).

Layering: act sits above collect and analyse (it reads /proc through collect
and decides when through analyse) and below commands/ (click glue) and the
live panel, which call into it.
"""
