"""``loopprof`` command line: parse → config → work → render. Each verb lives in its own module.

Exit status (CONTRACT.md §1): 0 a report was produced; 2 bad usage; 1 the target cannot be profiled, with a
one-line reason on stderr that says what to do.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version


def _version() -> str:
    try:
        return version("loopprof")
    except PackageNotFoundError:
        return "unknown (not installed)"


DESCRIPTION = """\
Is your Python LLM API server's frontend (event loop, GIL, GC, tokenization) or its GPU engine the bottleneck?
loopprof measures both sides while the server runs and gives a verdict with the numbers behind it."""

EPILOG = """\
examples:
  loopprof attach 4242                      profile PID 4242 and its engine children for 30 s
  loopprof attach 4242 --duration 60 --json report.json --metrics-url http://127.0.0.1:8000/metrics
  loopprof run --json report.json -- uvicorn app:app --port 8000
  loopprof run -- python -m vllm.entrypoints.openai.api_server --model ./tiny
  loopprof report report.json               render a saved report

OTLP export: --otlp http://collector:4318 or the standard OTEL_EXPORTER_OTLP_ENDPOINT (and _PROTOCOL, _HEADERS,
OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) variables. Embedded use: see loopprof.LoopProfMiddleware."""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _rate(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected samples per second, got {text!r}") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 1 and 1000 samples per second")
    return value


def _pid(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a process id (a number), got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a process id")
    return value


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON (schema loopprof.report/1)")
    p.add_argument(
        "--otlp",
        metavar="URL",
        help="export metrics over OTLP while profiling (default: $OTEL_EXPORTER_OTLP_ENDPOINT if set)",
    )
    p.add_argument(
        "--no-live",
        action="store_true",
        help="print plain progress lines instead of the live dashboard (automatic when stdout is not a terminal)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopprof",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"loopprof {_version()}")
    verbs = parser.add_subparsers(dest="verb", metavar="{attach,run,report}")

    attach = verbs.add_parser(
        "attach",
        help="profile a running server by PID, no restart",
        description="Attach to a running Python API server and its Python child processes (engine workers, extra "
        "API servers) with py-spy, without pausing or changing it. Ctrl-C ends the window early and still reports.",
        epilog="Needs permission to read the target's memory: run as the same user with "
        "kernel.yama.ptrace_scope=0, or as root / with CAP_SYS_PTRACE (docker: --cap-add SYS_PTRACE).",
    )
    attach.add_argument("pid", type=_pid, metavar="PID", help="process id of the API server")
    attach.add_argument(
        "--duration", type=_positive_float, default=30.0, metavar="S", help="seconds to sample (default 30)"
    )
    attach.add_argument(
        "--rate",
        type=_rate,
        default=100,
        metavar="HZ",
        help="py-spy samples per second (default 100: attach as a whole then costs ~9%% of a core per profiled "
        "process, see docs/benchmarks-attach.md)",
    )
    attach.add_argument(
        "--engine", type=_pid, action="append", default=[], metavar="PID", help="treat PID as an engine process"
    )
    attach.add_argument(
        "--frontend", type=_pid, action="append", default=[], metavar="PID", help="treat PID as a frontend process"
    )
    attach.add_argument(
        "--metrics-url",
        metavar="URL",
        help="the engine's Prometheus endpoint, e.g. http://127.0.0.1:8000/metrics (vLLM's vllm:* gauges)",
    )
    _add_output_options(attach)

    run = verbs.add_parser(
        "run",
        help="launch a command with the agent in every Python process it starts",
        description="Launch COMMAND with loopprof's in-process agent installed in it and in every Python process it "
        "starts (like opentelemetry-instrument). Reports when COMMAND exits or on Ctrl-C; COMMAND's exit "
        "status, stdout and stderr pass through unchanged.",
        epilog="The report covers COMMAND's whole run. The engine's queue gauges are read from "
        "LOOPPROF_METRICS_URL (vLLM's /metrics is found from its command line).",
    )
    _add_output_options(run)
    run.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")

    report = verbs.add_parser(
        "report", help="render a saved JSON report", description="Render a saved report as attach would."
    )
    report.add_argument("path", metavar="PATH", help="a report written with --json")
    return parser


def _fail(message: str, status: int = 1) -> int:
    print(f"loopprof: {message}", file=sys.stderr)
    return status


def _cmd_report(args: argparse.Namespace) -> int:
    from loopprof.renderers.console import print_report
    from loopprof.report import ReportError, load_report

    try:
        report = load_report(args.path)
    except ReportError as exc:
        return _fail(str(exc))
    print_report(report)
    return 0


def _live(args: argparse.Namespace) -> bool:
    return not args.no_live and sys.stdout.isatty()


def _cmd_attach(args: argparse.Namespace) -> int:
    from loopprof.attach.session import run_attach

    return run_attach(
        args.pid,
        duration_s=args.duration,
        rate_hz=args.rate,
        json_path=args.json,
        otlp_url=args.otlp,
        live=_live(args),
        engine_pids=args.engine,
        frontend_pids=args.frontend,
        metrics_url=args.metrics_url,
    )


def _cmd_run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        return _fail("run needs a command after --, e.g. `loopprof run -- uvicorn app:app`", 2)
    from loopprof.launch.wrapper import run_command

    return run_command(command, json_path=args.json, otlp_url=args.otlp, live=_live(args))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {"attach": _cmd_attach, "run": _cmd_run, "report": _cmd_report}
    if args.verb is None:
        parser.print_help()
        return 2
    try:
        return handlers[args.verb](args)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        return 0
