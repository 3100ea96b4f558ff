"""A stand-in for the AWS Amplify REST API: scripted fleets, fault injection, a loopback server.

Used by tests (in-process, with a manual clock) and by `amplify-monitor demo` / `python -m
monitor.simulator` (real time). Nothing in the product imports it except the CLI.
"""

from monitor.simulator.faults import Faults, Verdict
from monitor.simulator.fleet import (
    STEPS,
    ApiError,
    BadRequest,
    Clock,
    Durations,
    Fleet,
    Job,
    ManualClock,
    NotFound,
    Script,
    StepState,
    Upload,
    Workload,
    lasting,
    wall_clock,
)
from monitor.simulator.server import Simulator, load_model

__all__ = [
    "STEPS",
    "ApiError",
    "BadRequest",
    "Clock",
    "Durations",
    "Faults",
    "Fleet",
    "Job",
    "ManualClock",
    "NotFound",
    "Script",
    "Simulator",
    "StepState",
    "Upload",
    "Verdict",
    "Workload",
    "lasting",
    "load_model",
    "wall_clock",
]
