"""`pplab lab`: start the Streamlit lab on this machine and say where to open it.

The lab is the Streamlit app of ``app/``, installed with the package as ``pplab._app`` and found
through ``pplab.runs.resources`` (a checkout and a plain ``pip install .`` alike). It listens on
127.0.0.1, and refuses any other ``--host`` without ``--classroom``: its Run page launches real
training processes and its coding lab runs uploaded Python, so a lab open to other machines
must ask for a passcode first.

With ``--classroom`` the lab is shared with a class: it binds the address given with
``--host`` (an address of this machine the students can reach, or 0.0.0.0 for all), prints the
address and a fresh passcode, and lets only a session that typed the passcode start training
or anything else that runs processes or writes files (see ``pplab.classroom.passcode``).

Streamlit is started hardened (docs/security.md): websockets only for the host names the lab
serves (``server.allowedHosts``, against DNS rebinding; ``--allowed-host`` adds a name), no
error details shown to a class, no agent API, CORS and XSRF checks on. The command stays as
the server's parent (``pplab.cli.lab_supervisor``): SIGTERM, SIGINT or SIGHUP to it stops the
server and every run it started.

    pplab lab --port 8502
    pplab lab --classroom --host 0.0.0.0
    python -m pplab.cli.lab --port 8502
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import os
import socket
import sys
from pathlib import Path

from pplab.classroom import passcode as classroom
from pplab.cli.lab_supervisor import serve
from pplab.limits import MAX_UPLOAD_MB
from pplab.runs import resources

DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"


def app_entry() -> Path | None:
    """The app's entry script as installed with the package, or None where it is missing."""
    try:
        entry = resources.app_entry()
    except FileNotFoundError:
        return None
    return entry if entry.is_file() else None


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "lab", help="open the interactive lab in a browser",
        description="Start the pplab lab (Streamlit) and print its address. "
                    "Works on the bundled runs and the simulator: no GPU, no training needed.",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port to listen on (default {DEFAULT_PORT})")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to bind (default {DEFAULT_HOST}: this machine only); "
                             f"any other address needs --classroom")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a host name students type to reach the lab (say lab.school.edu), "
                             "beside this machine's own names and addresses; repeat for more")
    parser.add_argument("--classroom", action="store_true",
                        help="share the lab with a class: print a passcode that only the "
                             "instructor types; without it nobody starts processes or writes "
                             "files from the browser")
    parser.set_defaults(func=run)
    return parser


def _port_problem(host: str, port: int) -> str | None:
    """Why the lab could not listen on host:port, or None when it can."""
    if not 1 <= port <= 65535:
        return f"--port must be between 1 and 65535, got {port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        return f"--host {host!r} is not an address this machine can bind: {error.strerror}"
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use; try --port {port + 1}"
            return f"cannot listen on {host}:{port}: {error.strerror}"
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an address (or the name) of this machine only."""
    if host.strip().lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str, extra: list[str]) -> list[str]:
    """The Host names a browser may use to reach a server bound to ``host``: any other is
    refused at the websocket (a page of another site resolving its own name to this
    machine, DNS rebinding, gets nothing)."""
    names = ["localhost", "127.0.0.1", "::1"] if is_loopback(host) else [host]
    if host in ("0.0.0.0", "::", ""):
        names = ["localhost", *addresses_to_open(host)]
    if not is_loopback(host):
        names += [name for name in (socket.gethostname(), socket.getfqdn()) if name]
    return list(dict.fromkeys(name.strip().lower() for name in names + extra if name.strip()))


def streamlit_command(entry: Path, host: str, port: int, classroom_mode: bool = False,
                      hosts: list[str] | None = None) -> list[str]:
    hardened = []
    for name in hosts if hosts is not None else allowed_hosts(host, []):
        hardened += ["--server.allowedHosts", name]
    return [
        # Streamlit's own command line, with the Playground's first view made while the
        # server starts (pplab.cli.lab_server)
        sys.executable, "-m", "pplab.cli.lab_server", "run", str(entry),
        "--server.address", host, "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none", "--client.toolbarMode", "minimal",
        *hardened, "--server.enableCORS", "true", "--server.enableXsrfProtection", "true",
        "--server.enableAgentApi", "false", "--server.enableExpensiveMemoryStats", "false",
        # A traceback names the server's files and folders: a class sees that something
        # failed, the instructor's terminal has the details.
        "--client.showErrorDetails", "none" if classroom_mode else "full",
        # the only upload is a schedule CSV the playground caps at 1 M characters
        "--server.maxUploadSize", str(MAX_UPLOAD_MB),
        # Streamlit runs a full garbage collection after every rerun of every session; with
        # torch, pandas and plotly loaded that took a third of the server's time under a
        # class's load (benchmarks/classroom_load.py). Python's own collector still runs.
        "--runner.postScriptGC", "false",
    ]


def addresses_to_open(host: str) -> list[str]:
    """Where a browser reaches a server bound to ``host``: the host itself, or for a wildcard
    address this machine's own addresses (its name's, and loopback)."""
    if host not in ("0.0.0.0", "::", ""):
        return [host]
    found = []
    try:
        found = sorted({info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)
                        if info[0] == socket.AF_INET and not info[4][0].startswith("127.")})
    except OSError:
        pass
    return found + ["127.0.0.1"]


def run(args: argparse.Namespace) -> int:
    entry = app_entry()
    if entry is None:
        print("pplab lab: the app (app/lab.py) is missing from this install of pplab; "
              "reinstall it (bash install.sh, or pip install .)", file=sys.stderr)
        return 2
    if not args.classroom and not is_loopback(args.host):
        print(f"pplab lab: --host {args.host} would let anyone who reaches this machine start "
              f"training and run uploaded Python as you; add --classroom (a passcode for you, "
              f"a read-and-simulate lab for everyone else) or leave --host out (this machine "
              f"only)", file=sys.stderr)
        return 2
    problem = _port_problem(args.host, args.port)
    if problem:
        print(f"pplab lab: {problem}", file=sys.stderr)
        return 2
    env = {k: v for k, v in os.environ.items() if k != classroom.DIGEST_ENV}
    for address in addresses_to_open(args.host):
        shown = f"[{address}]" if ":" in address else address
        print(f"pplab lab: open http://{shown}:{args.port}  (Ctrl-C to stop)", flush=True)
    if args.classroom:
        passcode = classroom.new_passcode()
        env[classroom.DIGEST_ENV] = classroom.digest(passcode)  # the server never sees it
        print(f"pplab lab: classroom mode; instructor passcode: {passcode}  (students need "
              f"none: they read, simulate and do their exercises)", flush=True)
        if is_loopback(args.host):
            print("pplab lab: still on this machine only; give --host (an address of this "
                  "machine, or 0.0.0.0) for the class to reach it", flush=True)
    hosts = allowed_hosts(args.host, args.allowed_host)
    if not is_loopback(args.host):
        print(f"pplab lab: browsers may reach it as {', '.join(hosts)} (--allowed-host adds a "
              f"name)", flush=True)
    return serve(streamlit_command(entry, args.host, args.port, args.classroom, hosts), env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pplab")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["lab", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
