"""LOOPPROF_* variables configure agents that cannot take arguments; a bad value never stops the app."""

from loopprof.config import AgentConfig


def test_documented_variable_names() -> None:
    cfg = AgentConfig.from_env(
        {
            "LOOPPROF_JSON": "/tmp/r.json",
            "LOOPPROF_LAG_INTERVAL_MS": "5",
            "LOOPPROF_GC": "off",
            "LOOPPROF_ENGINE_PIDS": "12, 13",
            "LOOPPROF_METRICS_URL": "http://127.0.0.1:8000/metrics",
        }
    )
    assert cfg.json_path == "/tmp/r.json"
    assert cfg.lag_interval_ms == 5.0 and cfg.gc is False and cfg.engine_pids == (12, 13)
    assert cfg.metrics_url == "http://127.0.0.1:8000/metrics"


def test_bad_values_keep_defaults() -> None:
    cfg = AgentConfig.from_env({"LOOPPROF_LAG_INTERVAL_MS": "fast", "LOOPPROF_ENGINE_PIDS": "x"})
    assert cfg.lag_interval_ms == AgentConfig().lag_interval_ms and cfg.engine_pids == ()
