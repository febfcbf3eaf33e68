"""Every command README.md, docs/*.md and the Makefile show still exists: each `python -m MODULE`
and each script run by python / deepspeed / torchrun answers `--help` with exit 0.

Running them for real takes minutes to hours (training, generation); `--help` is enough to catch a
module that moved or a script path that went stale. Import time dominates (torch, diffusers: ~3 s of
CPU each time), so one interpreter imports those once and runs each command in a fork of itself, as
`python -m` / `python script.py` would (runpy, the script's folder first on sys.path): ~15 s of CPU
for all of them instead of ~65 s with one fresh interpreter each.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "Makefile"]
# The interpreter as the docs and the Makefile spell it, and the launchers that take a script.
PYTHON = r"(?:\bpython3?|\.venv/bin/python|\$\(PY\))"
MODULE = re.compile(PYTHON + r"\s+-m\s+([A-Za-z_][\w.]*)")
SCRIPT = re.compile(r"(?:" + PYTHON + r"|\bdeepspeed|\btorchrun)(?:\s+--?[\w-]+(?:[= ](?!\S+\.py\b)\S+)?)*"
                    r"\s+((?:[\w-]+/)+[\w-]+\.py)\b")
# Old names kept working for a release because ../shared/DESIGN.md lists them among the commands
# whose names stay (it lives outside this repository, so it is not scanned).
KEPT_FOR_DESIGN = [("-m", "model.evaluate")]


def documented_commands() -> list[tuple[str, str]]:
    """("-m", module) and ("script", path) for every command in the sources, each once."""
    found: dict[tuple[str, str], None] = {}
    for source in SOURCES:
        text = source.read_text()
        for m in MODULE.finditer(text):
            module = m.group(1).rstrip(".")
            if (REPO / module.split(".")[0]).is_dir():  # ours, not pip or pytest
                found[("-m", module)] = None
        for m in SCRIPT.finditer(text):
            found[("script", m.group(1))] = None
    for cmd in KEPT_FOR_DESIGN:
        found[cmd] = None
    return list(found)


COMMANDS = documented_commands()


# Runs in a subprocess: argv[1] = the commands (JSON), argv[2] = a folder for their output; prints
# their exit codes (JSON). Each command runs in a fork, so nothing one does can reach the next.
RUNNER = r"""
import importlib.util, json, os, runpy, sys, traceback
import cv2, diffusers, numpy, torch  # the imports most commands share, paid once
codes = []
for i, (kind, target) in enumerate(json.loads(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        fd = os.open(os.path.join(sys.argv[2], f"{i}.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = 1
        try:
            sys.argv = [target, "--help"]
            if kind == "-m":
                # from this checkout: an editable install of another one would answer for a module
                # that moved here (its finder is consulted when this package's folders miss)
                origin = getattr(importlib.util.find_spec(target), "origin", None) or ""
                if not origin.startswith(os.getcwd() + os.sep):
                    raise SystemExit(f"{target}: not in this checkout (found {origin or 'nothing'})")
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                sys.path[0] = os.path.dirname(os.path.abspath(target))
                runpy.run_path(target, run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
print(json.dumps(codes))
"""


@pytest.fixture(scope="module")
def helped(tmp_path_factory) -> dict[tuple[str, str], tuple[int, str]]:
    """(exit code, stdout + stderr) of `--help` for every command."""
    out = tmp_path_factory.mktemp("help")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(COMMANDS), str(out)], capture_output=True,
                       text=True, timeout=600, cwd=REPO, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    codes = json.loads(r.stdout.splitlines()[-1])
    return {cmd: (code, (out / f"{i}.txt").read_text()) for i, (cmd, code) in enumerate(zip(COMMANDS, codes))}


def test_the_scan_finds_the_documented_commands():
    """The patterns still see the commands the docs are known to show (so an empty scan cannot pass)."""
    for cmd in [("-m", "model.generate"), ("-m", "model.eval.protocol"), ("-m", "model.eval.evaluate"),
                ("-m", "model.data"), ("script", "model/train.py"), ("script", "pipeline/curate.py"),
                ("script", "bench/evaluate.py")]:
        assert cmd in COMMANDS, (cmd, COMMANDS)


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"{k} {t}" if k == "-m" else t for k, t in COMMANDS])
def test_documented_command_answers_help(cmd, helped):
    code, output = helped[cmd]
    assert code == 0, f"{cmd}: exit {code}\n{output[-2000:]}"
    assert "usage:" in output, f"{cmd}: --help printed no usage:\n{output[-1000:]}"
