"""Child-process entry point: run llama.cpp's HTTP server (xllamacpp) until told to stop.

Started by `agent.llm.server.EmbeddedLLMServer` as
``python -m agent.llm.serve_child --model M --port P --parent-pid PID ...``.
It never outlives its parent: with ``--pdeathsig`` the kernel sends SIGTERM when the
parent dies (Linux), and a watcher thread also exits once the parent pid is gone.
SIGTERM keeps its default action (immediate exit): the server holds no state worth
flushing, and a Python handler could not run while llama.cpp loads the model.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

PR_SET_PDEATHSIG = 1
PARENT_POLL_S = 0.5


def _set_pdeathsig() -> None:
    """Ask the kernel to SIGTERM this process when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _parent_alive(parent_pid: int) -> bool:
    if os.getppid() != parent_pid:  # reparented: the parent is gone
        return False
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch_parent(parent_pid: int) -> None:
    while _parent_alive(parent_pid):
        time.sleep(PARENT_POLL_S)
    os._exit(0)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agent.llm.serve_child")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ctx", type=int, default=8192)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--alias", default="")
    p.add_argument("--chat-template-file", type=Path, default=None)
    p.add_argument("--parent-pid", type=int, default=None)
    p.add_argument("--pdeathsig", action="store_true")
    p.add_argument("--verbosity", type=int, default=1)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.pdeathsig:
        _set_pdeathsig()
    if args.parent_pid is not None:
        if not _parent_alive(args.parent_pid):  # died between fork and here
            return 0
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), daemon=True).start()

    # [llm] extra: xllamacpp
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(args.model)
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.use_jinja = True
    params.cache_prompt = True
    params.verbosity = args.verbosity
    params.ui = False  # no web UI: this is an API for the agent
    if args.alias:
        params.model_alias = {args.alias}
    if args.chat_template_file is not None:
        params.chat_template = args.chat_template_file.read_text(encoding="utf-8")

    # Loads the model and starts the HTTP thread; the parent polls /health.
    server = xllamacpp.Server(params)
    sys.stdout.write(f"ready {server.listening_address}\n")
    sys.stdout.flush()
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    raise SystemExit(main())
