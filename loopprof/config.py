"""One frozen configuration object for the in-process agent, read from ``LOOPPROF_*`` variables.

Environment variables are how the ``run`` wrapper and container deployments configure an agent they cannot
pass arguments to, so every knob has one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

# Variables whose documented name is not LOOPPROF_<FIELD>.
ENV_NAMES = {"json_path": "LOOPPROF_JSON"}


@dataclass(frozen=True)
class AgentConfig:
    """Knobs of the in-process agent. Defaults are what we measured to be cheap enough for production."""

    lag_interval_ms: float = 2.0  # timer-probe period; a stall is seen within this resolution
    slow_callback_ms: float = 20.0  # a loop stall longer than this is captured with its frame
    watchdog_interval_ms: float = 5.0  # how often the watchdog thread looks at the loop heartbeat
    gil_knock_interval_ms: float = 5.0  # gilknocker-style probe period
    gc: bool = True
    gil: bool = True
    tokenization: bool = True
    json_path: str | None = None  # LOOPPROF_JSON: write the report here at shutdown
    metrics_url: str | None = None  # LOOPPROF_METRICS_URL: Prometheus endpoint of the engine (vLLM /metrics)
    engine_pids: tuple[int, ...] = ()  # LOOPPROF_ENGINE_PIDS=1,2: engine processes to watch
    engine_children: bool = True  # without engine_pids: watch this process's Python children as the engine
    otlp: bool = True  # export over OTLP when OTEL_EXPORTER_OTLP_(METRICS_)ENDPOINT is set; LOOPPROF_OTLP=0: never
    export_interval_s: float = 5.0  # how often the agent hands the exporter a fresh report (off the loop)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AgentConfig:
        env = os.environ if environ is None else environ
        cfg = cls()
        updates: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(ENV_NAMES.get(f.name, f"LOOPPROF_{f.name.upper()}"))
            if raw is None or raw == "":
                continue
            default = getattr(cfg, f.name)
            try:
                if isinstance(default, bool):
                    updates[f.name] = raw.strip().lower() not in ("0", "false", "no", "off")
                elif isinstance(default, float):
                    updates[f.name] = float(raw)
                elif isinstance(default, tuple):
                    updates[f.name] = tuple(int(p) for p in raw.replace(" ", "").split(",") if p)
                else:
                    updates[f.name] = raw
            except ValueError:
                # A bad variable must never stop the application; keep the default.
                continue
        return replace(cfg, **updates)  # type: ignore[arg-type]
