"""Task execution: the WebAssembly sandbox (default) and the opt-in host-command driver.

See the Execution section of docs/ARCHITECTURE.md. Both drivers end a run in one
:class:`TaskState` and report a :class:`RunResult`.
"""

from icn_node.runner.exec import ExecJob, ExecRefusedError, ExecRun
from icn_node.runner.result import CappedBuffer, RunResult, TaskState
from icn_node.runner.wasm import (
    RunControl,
    WasmJob,
    WasmRun,
    list_outputs,
    run_wasm,
    run_wasm_blocking,
)

__all__ = [
    "CappedBuffer",
    "ExecJob",
    "ExecRefusedError",
    "ExecRun",
    "RunControl",
    "RunResult",
    "TaskState",
    "WasmJob",
    "WasmRun",
    "list_outputs",
    "run_wasm",
    "run_wasm_blocking",
]
