"""The crash tests' way of starting a process (tests/forked_python.py) behaves like ``python -c``."""

import os
import signal

import pytest

from forked_python import run_python


def test_a_forked_script_is_its_own_process_with_its_output_exit_code_and_environment(dataset_factory):
    ds = dataset_factory([])
    out = run_python("import os, sys, fiftyone as fo\nprint(os.getpid(), sys.argv[1:], os.environ['X_T'],"
                     " fo.load_dataset(sys.argv[1]).name)\nprint('err', file=sys.stderr)", ds.name, 7,
                     env={"X_T": "set"})
    pid, rest = out.stdout.split(" ", 1)
    assert out.returncode == 0 and int(pid) != os.getpid() and rest == f"['{ds.name}', '7'] set {ds.name}\n"
    assert out.stderr == "err\n"
    killed = run_python("import os, signal\nprint('before', flush=True)\nos.kill(os.getpid(), signal.SIGKILL)\n"
                        "print('after')")
    assert killed.returncode == -signal.SIGKILL and killed.stdout == "before\n"
    failed = run_python("raise KeyError('boom')")
    assert failed.returncode == 1 and "KeyError: 'boom'" in failed.stderr
    assert run_python("import sys; sys.exit(3)").returncode == 3
    with pytest.raises(ValueError, match="FIFTYONE_DATABASE_URI"):
        run_python("pass", env={"FIFTYONE_DATABASE_URI": "mongodb://elsewhere"})
