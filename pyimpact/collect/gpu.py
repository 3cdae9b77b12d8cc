"""GPU snapshot through NVML (nvidia-ml-py, imported as ``pynvml``).

Per device: name, utilisation, memory used/total, temperature, power; per
process: GPU memory held and NVML's utilisation samples (SM/memory %, one
sample per driver tick, kept by the driver for a few seconds).

Why a sample is a plain record: it goes into ``Recording.gpu`` as a dict and
the impact analysis reads it back from a saved recording exactly as from a
live run.  Why never an exception: a machine without an NVIDIA driver or GPU
is the common case, and DESIGN.md asks for one line saying what is missing
while the rest of the answer still comes, so every NVML failure becomes
``available=False`` plus a reason (whole reader) or a note (one field).

The NVML module is looked up through ``load_nvml`` so tests can hand in a
fake one; the real path calls nvidia-ml-py exactly as nvidia-smi's own
library does.  pids are host pids (NVML reports them in the host PID
namespace; a target in a container shows its host pid here too).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional


@dataclass
class GpuProcess:
    """One process holding a context on one device."""

    pid: int
    device: int
    used_memory_bytes: Optional[int] = None     # None: the driver does not say (e.g. MIG, WDDM)
    kind: str = "compute"                        # compute | graphics
    sm_util_pct: Optional[float] = None          # mean of the NVML samples since the last read
    mem_util_pct: Optional[float] = None
    util_samples: int = 0                        # how many NVML samples the means come from


@dataclass
class GpuDevice:
    index: int
    name: str = ""
    uuid: str = ""
    util_gpu_pct: Optional[float] = None
    util_mem_pct: Optional[float] = None
    mem_used_bytes: Optional[int] = None
    mem_total_bytes: Optional[int] = None
    temperature_c: Optional[float] = None
    power_w: Optional[float] = None
    notes: List[str] = field(default_factory=list)   # fields that could not be read, why


@dataclass
class GpuSample:
    """Everything NVML said at one moment (``t_ns``: wall clock)."""

    t_ns: int = 0
    available: bool = False
    reason: str = ""                 # why not available (one line), "" when available
    driver: str = ""
    devices: List[GpuDevice] = field(default_factory=list)
    processes: List[GpuProcess] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "GpuSample":
        s = cls(**{k: d[k] for k in ("t_ns", "available", "reason", "driver") if k in d})
        s.devices = [GpuDevice(**{k: v for k, v in dev.items() if k in GpuDevice.__dataclass_fields__})
                     for dev in d.get("devices", [])]
        s.processes = [GpuProcess(**{k: v for k, v in p.items() if k in GpuProcess.__dataclass_fields__})
                       for p in d.get("processes", [])]
        return s


def load_nvml():
    """The nvidia-ml-py module (a seam for tests: they monkeypatch this)."""
    import pynvml  # nvidia-ml-py

    return pynvml


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _why(exc: BaseException) -> str:
    """A short reason for an NVML failure, with the fix where there is one."""
    name = type(exc).__name__
    text = str(exc) or name
    if "LibraryNotFound" in name or "Library Not Found" in text:
        return "NVML library not found (no NVIDIA driver installed)"
    if "DriverNotLoaded" in name or "Driver Not Loaded" in text:
        return "NVIDIA driver not loaded (no GPU, or the kernel module is missing)"
    if "NoPermission" in name or "Insufficient Permissions" in text:
        return "no permission to query NVML (run as root)"
    if isinstance(exc, ImportError):
        return "nvidia-ml-py is not installed (pip install nvidia-ml-py)"
    return f"NVML error: {text}"


class GpuReader:
    """Holds NVML open across samples (nvmlInit costs tens of ms) and keeps,
    per device, the timestamp of the last utilisation sample taken, so each
    read returns only the samples that are new.  Use as a context manager."""

    def __init__(self, nvml=None):
        self._nvml = nvml
        self._ok = False
        self.reason = ""
        self.driver = ""
        self._last_seen_us: Dict[int, int] = {}

    def open(self) -> "GpuReader":
        try:
            if self._nvml is None:
                self._nvml = load_nvml()
            self._nvml.nvmlInit()
            self._ok = True
        except BaseException as exc:  # noqa: BLE001 - any NVML/ctypes failure means "unavailable"
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            self.reason = _why(exc)
            return self
        try:
            self.driver = _text(self._nvml.nvmlSystemGetDriverVersion())
        except Exception:  # noqa: BLE001 - optional field
            self.driver = ""
        return self

    def close(self) -> None:
        if self._ok:
            self._ok = False
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self) -> "GpuReader":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def sample(self, t_ns: Optional[int] = None) -> GpuSample:
        """One reading of every device and every process on it."""
        t_ns = time.time_ns() if t_ns is None else t_ns
        if not self._ok:
            return GpuSample(t_ns=t_ns, available=False, reason=self.reason or "NVML not initialised")
        nv = self._nvml
        try:
            count = int(nv.nvmlDeviceGetCount())
        except Exception as exc:  # noqa: BLE001
            return GpuSample(t_ns=t_ns, available=False, reason=_why(exc), driver=self.driver)
        if count == 0:
            return GpuSample(t_ns=t_ns, available=False, reason="NVML reports no GPU", driver=self.driver)
        out = GpuSample(t_ns=t_ns, available=True, driver=self.driver)
        for i in range(count):
            try:
                handle = nv.nvmlDeviceGetHandleByIndex(i)
            except Exception as exc:  # noqa: BLE001
                out.devices.append(GpuDevice(index=i, notes=[f"device unreadable: {_why(exc)}"]))
                continue
            out.devices.append(self._device(i, handle))
            out.processes.extend(self._processes(i, handle))
        return out

    # -- per device ------------------------------------------------------
    def _field(self, dev: GpuDevice, what: str, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - one field missing is a note, not a failure
            dev.notes.append(f"{what}: {_why(exc)}")
            return None

    def _device(self, i: int, h) -> GpuDevice:
        nv = self._nvml
        dev = GpuDevice(index=i)
        name = self._field(dev, "name", nv.nvmlDeviceGetName, h)
        dev.name = _text(name) if name is not None else ""
        uuid = self._field(dev, "uuid", nv.nvmlDeviceGetUUID, h)
        dev.uuid = _text(uuid) if uuid is not None else ""
        util = self._field(dev, "utilisation", nv.nvmlDeviceGetUtilizationRates, h)
        if util is not None:
            dev.util_gpu_pct, dev.util_mem_pct = float(util.gpu), float(util.memory)
        mem = self._field(dev, "memory", nv.nvmlDeviceGetMemoryInfo, h)
        if mem is not None:
            dev.mem_used_bytes, dev.mem_total_bytes = int(mem.used), int(mem.total)
        temp = self._field(dev, "temperature", nv.nvmlDeviceGetTemperature, h,
                           getattr(nv, "NVML_TEMPERATURE_GPU", 0))
        dev.temperature_c = float(temp) if temp is not None else None
        power = self._field(dev, "power", nv.nvmlDeviceGetPowerUsage, h)
        dev.power_w = float(power) / 1000.0 if power is not None else None   # NVML gives mW
        return dev

    def _processes(self, i: int, h) -> List[GpuProcess]:
        nv = self._nvml
        procs: Dict[int, GpuProcess] = {}
        for kind, fn_name in (("compute", "nvmlDeviceGetComputeRunningProcesses"),
                              ("graphics", "nvmlDeviceGetGraphicsRunningProcesses")):
            fn = getattr(nv, fn_name, None)
            if fn is None:
                continue
            try:
                rows = fn(h) or []
            except Exception:  # noqa: BLE001 - not supported on this device: no rows of this kind
                continue
            for r in rows:
                pid = int(r.pid)
                used = getattr(r, "usedGpuMemory", None)
                if pid in procs:   # a process with both kinds of context: count its memory once
                    continue
                procs[pid] = GpuProcess(pid=pid, device=i, kind=kind,
                                        used_memory_bytes=int(used) if used is not None else None)
        # Utilisation samples newer than the last read of this device.
        fn = getattr(nv, "nvmlDeviceGetProcessUtilization", None)
        if fn is not None:
            try:
                samples = fn(h, self._last_seen_us.get(i, 0)) or []
            except Exception:  # noqa: BLE001 - NVML_ERROR_NOT_FOUND: no new samples
                samples = []
            acc: Dict[int, List[Any]] = {}
            for s in samples:
                acc.setdefault(int(s.pid), []).append(s)
                self._last_seen_us[i] = max(self._last_seen_us.get(i, 0), int(s.timeStamp))
            for pid, rows in acc.items():
                p = procs.setdefault(pid, GpuProcess(pid=pid, device=i))
                p.util_samples = len(rows)
                p.sm_util_pct = sum(float(r.smUtil) for r in rows) / len(rows)
                p.mem_util_pct = sum(float(r.memUtil) for r in rows) / len(rows)
        return list(procs.values())


def read_gpus(nvml=None) -> GpuSample:
    """One-shot reading (opens and closes NVML)."""
    with GpuReader(nvml) as reader:
        return reader.sample()
