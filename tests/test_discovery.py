import subprocess
import sys
import time

from loopprof import discovery


def test_children_get_roles_from_titles_and_overrides() -> None:
    titles = "('Engine' + 'Core', 'x')"  # built at run time so the root's own cmdline has no title in it
    child = (
        "import subprocess, sys, time; ps = [subprocess.Popen([sys.executable, '-c', "
        f"'import time; time.sleep(20)', t]) for t in {titles}]; time.sleep(20)"
    )
    root = subprocess.Popen([sys.executable, "-c", child])
    try:
        for _ in range(50):
            kids = discovery.discover(root.pid)
            if len(kids) == 3:
                break
            time.sleep(0.1)
        roles = {p.cmdline.split()[-1]: p.role for p in kids}
        assert kids[0].pid == root.pid and kids[0].role == "frontend"
        assert roles["EngineCore"] == "engine" and roles["x"] == "other"
        other = next(p for p in kids if p.cmdline.endswith(" x"))
        again = discovery.discover(root.pid, engine_pids=[other.pid])
        assert next(p for p in again if p.pid == other.pid).role == "engine"
        discovery.refine_role(other, "loop")
        assert other.role == "frontend"
    finally:
        for p in discovery.discover(root.pid)[1:]:
            subprocess.run(["kill", str(p.pid)], check=False)
        root.kill()
        root.wait()


def _info(cmdline: str) -> discovery.ProcessInfo:
    return discovery.ProcessInfo(pid=4321, role="other", cmdline=cmdline)


def test_a_child_caught_mid_step_is_still_the_engine() -> None:
    # An engine at capacity is almost never seen waiting; one look that finds it working must still say engine.
    for kind in ("waiting", "working"):
        info = _info("python -m examples.stack.engine --port 5555")
        discovery.refine_role(info, kind)
        assert info.role == "engine", kind


def test_stdlib_helpers_and_overrides_keep_their_role() -> None:
    helper = _info("python -c from multiprocessing.resource_tracker import main;main(7)")
    discovery.refine_role(helper, "working")
    assert helper.role == "other"
    overridden = _info("python worker.py")
    discovery.refine_role(overridden, "working", overridden=[4321])
    assert overridden.role == "other"
    unknown = _info("python worker.py")
    discovery.refine_role(unknown, None)
    assert unknown.role == "other"
