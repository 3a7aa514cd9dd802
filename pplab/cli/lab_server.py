"""The lab's server process: Streamlit's own command line, warmed up while it starts.

``pplab lab`` starts this instead of ``python -m streamlit``. Before handing its arguments to
Streamlit it starts a thread that runs ``warm()`` of the app's ``warm_up.py`` (beside the
entry script): the Playground's first view is simulated and drawn into the server's shared
answers, and the modules the pages import are loaded, while the server binds its port. The
first browser to open the lab then reads answers already made (it took 4-7 s on a 2-core
machine without this). A warm-up that fails costs nothing but the time it saved; the server
runs either way, and says so on its terminal.

    python -m pplab.cli.lab_server run app/lab.py --server.port 8502
"""

from __future__ import annotations

import gc
import runpy
import sys
import threading
from pathlib import Path

WARM_UP = "warm_up.py"


def warm_up(entry: Path) -> None:
    """Run ``warm()`` of the warm-up module beside ``entry``, if there is one; then set
    aside what the server holds for good (``gc.freeze``)."""
    script = entry.parent / WARM_UP
    try:
        if script.is_file():
            _warm(script)
    finally:
        # The modules, the server and the first view are about 120,000 objects that live as
        # long as the process; frozen, the collector stops walking them on each full
        # collection (78 ms each, under the GIL that every session's script waits for).
        gc.freeze()


def _warm(script: Path) -> None:
    try:
        made = runpy.run_path(str(script), run_name="pplab_lab_warm_up")["warm"]()
    except Exception as error:  # the lab works without it: say so, never stop the server
        print(f"pplab lab: warming up failed ({type(error).__name__}: {error}); the first "
              f"visit computes its view instead", file=sys.stderr, flush=True)
        return
    print(f"pplab lab: ready before the first visit: {made}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[0] != "run":
        print("usage: python -m pplab.cli.lab_server run ENTRY [streamlit options]",
              file=sys.stderr)
        return 2
    # Streamlit, plotly and pandas are imported here first: plotly looks pandas up in
    # sys.modules, and found it half-imported while the warm-up thread was importing it
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    from streamlit.web import cli

    threading.Thread(target=warm_up, args=(Path(argv[1]),), name="pplab-warm-up",
                     daemon=True).start()

    sys.argv = ["streamlit", *argv]
    return cli.main(prog_name="streamlit")


if __name__ == "__main__":
    sys.exit(main())
