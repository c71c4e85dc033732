"""A fork server for the `openstack` CLI: one Python process imports openstackclient once, then runs
each CLI invocation in a child forked from it, so a test's CLI call costs the command's own work and
not the ~1 s of imports every fresh `openstack` process pays (the e2e suite makes hundreds of calls).

The child runs the same entry point as the `openstack` console script (`openstackclient.shell.main`)
with the caller's argv, environment and working directory, stdin from /dev/null and stdout/stderr into
the files the caller names: the CLI itself is what is tested, only the interpreter start is shared.

    python osc_zygote.py SOCKET     prints "ready" once it listens

Protocol, one request per connection: the client sends one JSON line
{"argv": [...], "env": {...}, "cwd": "...", "stdout": path, "stderr": path}; the child answers
"pid N\\n" at once and "rc N\\n" when the command has ended. cloudlib.run() is the client.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import traceback


def preload():
    """The imports every CLI call needs, done once here instead of in each call."""
    import openstackclient.shell  # noqa: F401
    import openstack.connection  # noqa: F401
    import keystoneauth1.loading  # noqa: F401
    from openstackclient.shell import OpenStackShell

    # builds the command manager: scans the entry points of every plugin once
    OpenStackShell()


def serve_child(conn: socket.socket) -> int:
    """In the forked child: run one CLI invocation as the request says; returns its exit status."""
    line = conn.makefile("rb").readline()
    req = json.loads(line)
    conn.sendall(f"pid {os.getpid()}\n".encode())
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    for fd in (null, out, err):
        os.close(fd)
    argv = req["argv"]
    sys.argv = [argv[0]] + argv[1:]
    from openstackclient import shell

    try:
        rc = shell.main(argv[1:])
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - the CLI crashed: say so as a failing command would
        traceback.print_exc()
        rc = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001
            pass
    return int(rc or 0)


def main():
    path = sys.argv[1]
    preload()
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(64)
    # children are not waited for here: the client learns the exit status from the child itself
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    print("ready", flush=True)
    while True:
        conn, _ = srv.accept()
        pid = os.fork()
        if pid == 0:
            srv.close()
            rc = 1
            try:
                rc = serve_child(conn)
            finally:
                try:
                    conn.sendall(f"rc {rc}\n".encode())
                finally:
                    os._exit(0)
        conn.close()


if __name__ == "__main__":
    main()
