"""The workloads' handler code, the same logic in Python and Node, as every target runs it.

Each handler answers with the milliseconds it spent itself (`ms`), so that platform overhead
is measured as latency minus handler time rather than assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

# Work, not wall time: 50 MB of SHA-256 is ~40 ms on one core here in both languages (native
# code in both, so neither interpreter's speed decides it). At 128 MB, where an environment
# gets 7% of a vCPU as on AWS, the same work takes ~14 times longer.
CPU_WORK_MB = 50
# Module-level initialisation: 200 ms of CPU, standing for import-heavy code. CPU time rather
# than a sleep, because importing is work that a throttled or busy machine slows down.
INIT_CPU_SECONDS = 0.2

PYTHON = {
    "noop": """
import time

def handler(event, context):
    started = time.perf_counter()
    return {"ms": (time.perf_counter() - started) * 1000}
""",
    "init200": f"""
import time

_started = time.process_time()
while time.process_time() - _started < {INIT_CPU_SECONDS}:
    pass

def handler(event, context):
    return {{"ms": 0.0}}
""",
    "cpu": f"""
import hashlib
import time

_BLOCK = bytes(1 << 20)

def handler(event, context):
    started = time.perf_counter()
    for _ in range({CPU_WORK_MB}):
        hashlib.sha256(_BLOCK).digest()
    return {{"ms": (time.perf_counter() - started) * 1000}}
""",
    "echo": """
def handler(event, context):
    return event
""",
    "sleep": """
import time

def handler(event, context):
    time.sleep(event.get("seconds", 0.3))
    return {"ms": 0.0}
""",
    # Which environment ran the call (an id drawn once per process, as a PID namespace can
    # give every environment the same pid) and when its handler began, on the wall clock
    # the load generator also reads; then it keeps the environment busy for a while.
    "spawn": """
import os
import time

_ENVIRONMENT = os.urandom(8).hex()

def handler(event, context):
    started = time.time()
    time.sleep(event.get("seconds", 0.3))
    return {"ms": 0.0, "environment": _ENVIRONMENT, "started": started}
""",
}

NODE = {
    "noop": """
exports.handler = async () => {
  const started = process.hrtime.bigint();
  return { ms: Number(process.hrtime.bigint() - started) / 1e6 };
};
""",
    "init200": f"""
const cpuMicros = () => {{ const u = process.cpuUsage(); return u.user + u.system; }};
const started = cpuMicros();
while (cpuMicros() - started < {INIT_CPU_SECONDS * 1e6}) {{}}
exports.handler = async () => ({{ ms: 0 }});
""",
    "cpu": f"""
const crypto = require("crypto");
const block = Buffer.alloc(1 << 20);
exports.handler = async () => {{
  const started = process.hrtime.bigint();
  for (let i = 0; i < {CPU_WORK_MB}; i++) crypto.createHash("sha256").update(block).digest();
  return {{ ms: Number(process.hrtime.bigint() - started) / 1e6 }};
}};
""",
    "echo": """
exports.handler = async (event) => event;
""",
    "sleep": """
exports.handler = async (event) => {
  await new Promise((resolve) => setTimeout(resolve, (event.seconds ?? 0.3) * 1000));
  return { ms: 0 };
};
""",
    "spawn": """
const ENVIRONMENT = require("crypto").randomBytes(8).toString("hex");
exports.handler = async (event) => {
  const started = (performance.timeOrigin + performance.now()) / 1000;
  await new Promise((resolve) => setTimeout(resolve, (event.seconds ?? 0.3) * 1000));
  return { ms: 0, environment: ENVIRONMENT, started };
};
""",
}

SOURCES = {"python": PYTHON, "node": NODE}
EXTENSIONS = {"python": ".py", "node": ".js"}
AWS_RUNTIMES = {"python": "python3.12", "node": "nodejs20.x"}


@dataclass(frozen=True)
class FunctionSpec:
    """One function a target must serve: a workload's code in one runtime, at a memory size."""

    name: str
    runtime: str  # "python" or "node"
    workload: str
    memory_mb: int = 1769
    # Also reachable over HTTP as a function URL (or the target's nearest equivalent).
    url: bool = False

    @property
    def filename(self) -> str:
        return self.workload + EXTENSIONS[self.runtime]

    @property
    def source(self) -> str:
        return SOURCES[self.runtime][self.workload]

    @property
    def handler(self) -> str:
        return f"{self.workload}.handler"

    @property
    def aws_runtime(self) -> str:
        return AWS_RUNTIMES[self.runtime]
