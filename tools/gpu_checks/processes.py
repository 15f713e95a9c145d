"""Running commands under a time limit, so that neither they nor what they start
outlive it, and the files that tell what happened: logs and each check's result."""
import json
import os
import signal
import subprocess
import time

GRACE_S = 5  # between asking a timed-out process group to stop and killing it


def result_path(out, name):
    """Where check ``name`` writes its result (status, figures, message) in ``out``."""
    return os.path.join(out, f'{name}.result.json')


def read_result(out, name):
    """The result check ``name`` wrote in ``out``, or None."""
    try:
        with open(result_path(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def tail(path, lines=20):
    """The last ``lines`` lines of a text file ('' when it cannot be read)."""
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:]).rstrip()
    except OSError:
        return ''


def stop(proc):
    """End ``proc``'s process group: SIGTERM (torchrun passes it on to its workers, which
    run in sessions of their own), then SIGKILL after :data:`GRACE_S` seconds."""
    for sig, wait in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_logged(command, log_path, timeout, env=None, cwd=None):
    """Run ``command`` with its output in ``log_path``, in a process group of its own that
    is stopped after ``timeout`` seconds.

    Returns:
        (int | None, float): exit status (None: timed out) and seconds taken.
    """
    start = time.monotonic()
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=cwd, start_new_session=True)
        try:
            status = proc.wait(timeout=max(timeout, 1))
        except subprocess.TimeoutExpired:
            status = None
        finally:
            if proc.poll() is None:
                stop(proc)
    return status, time.monotonic() - start
