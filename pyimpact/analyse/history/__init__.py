"""What happened over time, beyond one window: the recorder's history (context: saves, the job that started a
worker; orphans: workers whose job is gone; gpu_usage: GPU-seconds and VRAM-hours per user), and the resource
series of one recording (usage: CPU, RSS, GPU over time).

Pure: records read by pyimpact.collect in, plain data out; no I/O, no clock.
"""
