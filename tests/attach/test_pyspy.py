from loopprof.attach import pyspy
from loopprof.attach.loop_sampler import lag_from_stretches


def ev(ph: str, ts: int, name: str, line: int = 0, tid: int = 7) -> dict:
    return {"ph": ph, "ts": ts, "name": name, "tid": tid, "pid": 1, "args": {"filename": "/a.py", "line": line}}


def test_chrometrace_rebuilds_segments() -> None:
    events = [
        ev("B", 0, "thread (123): MainThread"), ev("B", 0, "main", 1), ev("B", 0, "idle", 2),
        ev("E", 10_000, "idle", 2), ev("B", 10_000, "work", 3), ev("E", 40_000, "work", 3),
        ev("E", 40_000, "main", 1), ev("E", 40_000, "thread (123): MainThread"),
    ]  # fmt: skip
    tl = pyspy.parse_chrometrace(events)[123]
    assert tl.name == "MainThread"
    assert [(s[-1].function, d) for s, d in tl.segments] == [("idle", 10.0), ("work", 30.0)]


def test_raw_counts_by_thread() -> None:
    text = "thread (5): w0;run (a.py:1);spin (a.py:2) 7\nthread (5): w0;run (a.py:1) 3\nthread (9): Main;x (b.py:1) 2\n"
    assert pyspy.parse_raw(text) == {(5, "w0"): 10, (9, "Main"): 2}


def test_lag_estimate_from_stretches() -> None:
    lag = lag_from_stretches([40.0, 40.0, 1.0], observed_ms=1000.0, probe_ms=2.0)
    assert lag is not None and lag["max"] == 39.0 and lag["p50"] == 0.0
    assert lag_from_stretches([], observed_ms=0.0, probe_ms=2.0) is None
