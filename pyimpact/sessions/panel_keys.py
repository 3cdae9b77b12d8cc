"""The keys of the live kill-preview panel (`trace -p PID --kill-preview` on a terminal).

[W]ait for the safe point then stop, [G]raceful stop now, [S]uspend,
[R]esume, [K]ill, [Q]uit.  Every action key asks first ("... ? [y/N]": the
next key must be y) and then runs the same act code as the commands
(`pyimpact stop --when safe|now`, `suspend`, `resume`, SIGKILL of the tree):
pidfds taken for the job the panel identified (pid + start time), the signal
log, the same order and grace.  While [W] waits, any key (or Ctrl-C)
cancels with nothing sent.

``PanelKeys.press`` is the whole state machine (testable without a
terminal); ``KeyReader`` puts the terminal in cbreak mode and reads keys
without blocking, and gives the terminal back on every exit path.
"""
from __future__ import annotations

import os
import select
import sys
import time
from typing import Callable, Optional

from ..errors import PyimpactError
from ..formats import seconds

KEYS_LINE = "keys: [W]ait-safe-stop [G]raceful [S]uspend [R]esume [K]ill [Q]uit"
PROMPTS = {
    "w": "wait for the safe point, then stop pid {pid} (graceful signal, 30 s grace)",
    "g": "stop pid {pid} now with its graceful signal (30 s grace, no SIGKILL)",
    "s": "suspend pid {pid} and its tree (SIGSTOP; RAM/VRAM stay held)",
    "r": "resume pid {pid} and its tree (SIGCONT)",
    "k": "SIGKILL pid {pid} and its whole tree now",
}
GRACE_S = 30.0


class PanelKeys:
    """One job's action keys.  ``watch``: the panel's JobWatch (its observer and
    latest snapshot are what the stop waits on).  ``log_factory`` opens the
    signal log; ``refresh(text)`` redraws the panel with a status line;
    ``key_waiting()`` says whether a key was pressed (cancels a wait)."""

    def __init__(self, watch, log_factory: Optional[Callable] = None,
                 refresh: Optional[Callable[[str], None]] = None,
                 key_waiting: Optional[Callable[[], bool]] = None,
                 interrupted: Optional[Callable[[], bool]] = None):
        from ..act.signal_log import SignalLog

        self.watch = watch
        self.log_factory = log_factory or (lambda: SignalLog(command="trace --kill-preview"))
        self.refresh = refresh or (lambda _t: None)
        self.key_waiting = key_waiting or (lambda: False)
        self.interrupted = interrupted or (lambda: False)
        self.pending: Optional[str] = None
        self.status = KEYS_LINE
        self.quit = False
        self.last_result = None

    def press(self, key: str) -> str:
        """Handle one key; returns the new status line."""
        key = (key or "").lower()[:1]
        if self.pending is not None:
            action, self.pending = self.pending, None
            if key == "y":
                self.status = self._run(action)
            else:
                self.status = f"cancelled: nothing sent ({KEYS_LINE})"
            return self.status
        if key == "q":
            self.quit = True
            self.status = "quit"
        elif key in PROMPTS:
            self.pending = key
            self.status = PROMPTS[key].format(pid=self.watch.root) + "? [y/N]"
        return self.status

    # -- the actions: the act layer's code ----------------------------------
    def _tree(self):
        from ..act.tree import ProcessTree

        return ProcessTree.identify(self.watch.root, self.watch.observer.start_ticks)

    def _run(self, action: str) -> str:
        from ..act.stop import choose_signal, run_stop
        from ..act.tree import resume_tree, suspend_tree

        try:
            with self._tree() as tree, self.log_factory() as log:
                reason = f"trace --kill-preview: [{action.upper()}] confirmed"
                if action == "s":
                    res = suspend_tree(tree, log, reason)
                    return (f"suspended {len(res['stopped'])} process(es)"
                            + (f"; not stopped yet: {res['not_stopped']}" if res["not_stopped"] else "")
                            + " - RAM/VRAM stay held; [R] resumes")
                if action == "r":
                    res = resume_tree(tree, log, reason)
                    return f"resumed {len(res['resumed'])} process(es)" + (
                        f"; still stopped: {res['still_stopped']}" if res["still_stopped"] else "")
                if action == "k":
                    tree.kill(log, reason)
                    left = tree.wait_gone(5.0)
                    return "killed" + (f"; still alive: {[h.pid for h in left]}" if left else ": the tree is gone")
                p = self.watch.latest.processes.get(self.watch.root)
                sig, why = choose_signal(p.sig_caught if p else 0, p.sig_ignored if p else 0)
                root_start_ns = int((p.create_time if p else 0) * 1e9)

                def on_status(st, waited: float) -> None:
                    self.refresh(f"waiting {seconds(waited)} for {st.waiting_for}"
                                 + (f", ETA {seconds(st.eta_s)}" if st.eta_s is not None else "")
                                 + " - any key cancels (nothing sent)" if not st.ready else "sending")

                def on_tick(alive, left: float) -> None:
                    self.refresh(f"waiting for {len(alive)} process(es) to exit: {seconds(left, 0)} of grace left")

                res = run_stop(tree, self.watch.observer, root_start_ns, log, "safe" if action == "w" else "now",
                               sig, why, GRACE_S, False, on_status=on_status, on_tick=on_tick,
                               cancelled=lambda: self.key_waiting() or self.interrupted(),
                               sig_caught=p.sig_caught if p else None)
                self.last_result = res
                if res.survivors:
                    return f"{res.signal} sent; still running after {seconds(GRACE_S, 0)}: {res.survivors} ([K] kills)"
                o = res.outcome
                d = o.get("newest_durable_checkpoint")
                return (f"stopped with {res.signal}: lost {seconds(o['lost_s'])}"
                        + (f" since {os.path.basename(d['path'])}" if d else " (no checkpoint)")
                        + f" (predicted {seconds(res.predicted['lost_s'])})")
        except PyimpactError as exc:
            return f"not done: {exc.one_line()}"


class KeyReader:
    """Non-blocking single keys from a terminal on stdin (cbreak mode, restored on close)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdin
        self.fd = self.stream.fileno()
        self._saved = None

    @staticmethod
    def usable(stream=None) -> bool:
        stream = stream or sys.stdin
        try:
            return stream.isatty()
        except (AttributeError, ValueError):
            return False

    def __enter__(self) -> "KeyReader":
        import termios
        import tty

        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc) -> None:
        import termios

        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            self._saved = None

    def waiting(self) -> bool:
        r, _, _ = select.select([self.fd], [], [], 0)
        return bool(r)

    def read(self) -> Optional[str]:
        if not self.waiting():
            return None
        data = os.read(self.fd, 32)
        return data[:1].decode("ascii", "replace") if data else None

    def drain(self) -> None:
        while self.waiting():
            if not os.read(self.fd, 32):
                break
            time.sleep(0)
