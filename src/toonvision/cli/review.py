"""The review verb: correct and accept screenshots' boxes in a local web page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toonvision.cli.common import Root, console, fail, header, workspace


def review(
    folder: Annotated[
        Path | None,
        typer.Argument(help="Folder of screenshots (searched recursively); default: <root>/raw/screenshots."),
    ] = None,
    root: Root = Path("img"),
    rank: Annotated[
        str,
        typer.Option(
            help="Order of the screenshots: 'name', or 'uncertain' (the pre-annotations nobody has reviewed, least "
            "sure first, then the rest by name)."
        ),
    ] = "name",
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port on 127.0.0.1 to serve the page on; default: a free one.")
    ] = 0,
    open_browser: Annotated[
        bool, typer.Option("--open/--no-open", help="Open the page in the default browser.")
    ] = True,
) -> None:
    """Review screenshots' boxes in a browser: accept, move, resize, delete, draw and relabel them.

    Serves a page on 127.0.0.1 only. Every change is written at once to the annotation beside the screenshot,
    in the format it already has (Pascal VOC as labelImg writes it, YOLO with classes.txt, CreateML); a
    screenshot without one gets Pascal VOC. Keys as in labelImg: d next, a previous, w draw a box, Delete
    remove the selected box, Space verify (labelImg's Verify Image: the pre-annotation counts as reviewed).
    A file changed on disk since the page loaded it (labelImg, another tab, annotate --refresh) is never
    overwritten: the page shows both versions and the person chooses. Ctrl-C stops the server.
    """
    from toonvision.data.files import remove_stale_tmp
    from toonvision.data.taxonomy import LabelError
    from toonvision.serving.review_server import RANKS, ReviewSession, bind, serve

    ws = workspace(root)
    folder = folder or ws.screenshots
    if rank not in RANKS:
        raise fail(f"--rank {rank!r}: choose from {', '.join(RANKS)}")
    if not folder.is_dir():
        raise fail(f"{folder} is not a folder of screenshots")
    try:
        labels = [str(label) for label in ws.labels()]
    except LabelError as exc:
        raise fail(str(exc)) from None
    try:
        session = ReviewSession.open(folder, labels, rank)
    except ValueError as exc:
        raise fail(str(exc)) from None
    # A server killed mid-save leaves its temporary file (never the only copy of anything) beside the annotation.
    remove_stale_tmp({(session.folder / rel).parent for rel in session.order})
    try:
        sock = bind(port)
    except OSError as exc:
        raise fail(f"port {port} on 127.0.0.1 cannot be used ({exc.strerror or exc}): give another --port") from None
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    header("review", root=ws.root, folder=session.folder, rank=rank, screenshots=len(session.order))
    console.print(f"review page: {url}  (Ctrl-C stops it)", highlight=False, soft_wrap=True)
    try:
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        serve(session, sock)
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it handled, once the saves in flight are finished
    console.print("review server stopped: every change was saved as it was made")
