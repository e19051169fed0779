"""The review page's server: a person walks a folder of screenshots in a browser and corrects their boxes, every
change written at once to the labelImg file beside the screenshot, in the format it already has.

Nothing a person did is ever lost:

- every write replaces the file atomically (old or new bytes whatever moment the server dies);
- the page sends the SHA-256 of the annotation it loaded, and a save is refused (409, with both versions) when
  the file on disk is no longer those bytes: labelImg, another tab or ``annotate --refresh`` wrote it since;
- only the screenshots listed at start (inside the folder, their annotation too) can be read or written, so a
  path climbing out of the folder (``..``, absolute, a symbolic link pointing out) is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import mimetypes
import re
import socket
import threading
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from toonvision.data.annotations import (
    Annotation,
    AnnotationError,
    AnnotationFile,
    Box,
    createml_entry,
    find_annotation,
    labelimg_truncated,
    read_annotation,
    voc_bytes,
    yolo_text,
)
from toonvision.data.extraction import find_screenshots
from toonvision.data.files import create_exclusive, write_bytes_atomic
from toonvision.data.game_rules import box_flags
from toonvision.data.images import ImageError, open_image
from toonvision.data.review import (
    REVIEWED,
    ReviewState,
    rank_uncertain,
    read_sidecar,
    review_state,
    sidecar_path,
)
from toonvision.data.taxonomy import ANIMALS, SUITS
from toonvision.serving.annotate import yolo_classes

if TYPE_CHECKING:
    from starlette.applications import Starlette

RANKS = ("name", "uncertain")
PAGE = ("index.html", "review.js", "review.css")
# A label becomes a line of classes.txt and a token of a YOLO line: no whitespace, nothing unprintable.
_LABEL_RE = re.compile(r"^[^\s\x00-\x1f]{1,100}$")


class Refused(Exception):
    """A request the server will not serve; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Conflict(Exception):
    """The annotation on disk is no longer the version the page loaded; ``current`` is what is there now."""

    def __init__(self, current: dict[str, Any]) -> None:
        super().__init__("the annotation changed on disk since the page loaded it")
        self.current = current


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder)


def review_order(states: list[ReviewState], rank: str) -> list[ReviewState]:
    """The order the page walks: by name, or (``uncertain``) the unreviewed pre-annotations least sure first
    and then the rest by name."""
    if rank not in RANKS:
        raise ValueError(f"unknown ranking {rank!r} (choose from {', '.join(RANKS)})")
    by_name = sorted(states, key=lambda s: str(s.image))
    if rank == "name":
        return by_name
    first = [state for state, _ in rank_uncertain(states)]
    chosen = {state.image for state in first}
    return first + [s for s in by_name if s.image not in chosen]


@dataclass
class ReviewSession:
    """One folder under review: the screenshots the page may touch, in order, and the labels it accepts."""

    folder: Path
    labels: list[str]  # predefined_classes.txt: a label outside it is flagged
    rank: str = "name"
    order: list[str] = field(default_factory=list)  # paths relative to the folder, POSIX style
    refused: list[str] = field(default_factory=list)  # screenshots left out: they or their annotation lie outside
    seconds: dict[str, float] = field(default_factory=dict)  # time a person spent on each screenshot
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, folder: Path, labels: list[str], rank: str = "name") -> ReviewSession:
        """The session of ``folder``; ValueError when it holds no screenshot."""
        folder = Path(folder).resolve()
        session = cls(folder, list(labels), rank)
        states = [review_state(image, annotation) for image, annotation in find_screenshots(folder)[0]]
        kept = []
        for state in states:
            if _inside(state.image, folder) and (state.annotation is None or _inside(state.annotation.path, folder)):
                kept.append(state)
            else:
                session.refused.append(state.image.relative_to(folder).as_posix())
        if not kept:
            raise ValueError(f"{folder} holds no screenshots (.png, .jpg, .jpeg, .bmp) to review")
        session.order = [s.image.relative_to(folder).as_posix() for s in review_order(kept, rank)]
        return session

    # --- paths ---

    def image_path(self, rel: str) -> Path:
        """The screenshot ``rel`` names; Refused when it climbs out of the folder or is not one listed."""
        pure = PurePosixPath(rel)
        if not rel or pure.is_absolute() or "\\" in rel or ".." in pure.parts or re.match(r"^[A-Za-z]:", rel):
            raise Refused(403, f"refused {rel!r}: only screenshots inside {self.folder} are served")
        path = self.folder / pure
        if not _inside(path, self.folder):
            raise Refused(403, f"refused {rel!r}: it leads outside {self.folder}")
        if rel not in self.order:
            raise Refused(404, f"{rel!r} is not a screenshot of {self.folder}")
        return path

    def annotation_of(self, image: Path) -> AnnotationFile | None:
        found = find_annotation(image)
        if found is not None and not _inside(found.path, self.folder):
            raise Refused(403, f"refused {found.path.name}: it links outside {self.folder}")
        if found is not None and found.format == "yolo" and not _inside(image.parent / "classes.txt", self.folder):
            raise Refused(403, f"refused {image.parent / 'classes.txt'}: it links outside {self.folder}")
        return found

    # --- reading ---

    def listing(self) -> dict[str, Any]:
        """Every screenshot in order with its review state, the counter, and the taxonomy for the pickers."""
        items = []
        for rel in self.order:
            image = self.folder / rel
            try:
                state = review_state(image, self.annotation_of(image))
                status = state.status
            except Refused:
                status = "refused"
            items.append({"path": rel, "status": status, "seconds": round(self.seconds.get(rel, 0.0), 3)})
        reviewed = sum(item["status"] == REVIEWED for item in items)
        return {
            "folder": str(self.folder),
            "rank": self.rank,
            "screenshots": items,
            "reviewed": reviewed,
            "left": len(items) - reviewed,
            "refused": self.refused,
            "labels": self.labels,
            "taxonomy": {
                "suits": [
                    {"short": s.short, "long": s.long, "cogs": list(s.cogs), "names": list(s.display_names)}
                    for s in SUITS
                ],
                "animals": list(ANIMALS),
            },
        }

    def load(self, rel: str) -> dict[str, Any]:
        """What the page shows of one screenshot: its size (or why it cannot be read), its annotation's boxes
        with confidence and flags (or why it cannot be read), and the version a save must name."""
        image = self.image_path(rel)
        out: dict[str, Any] = {"path": rel, "image_error": None, "annotation_error": None, "boxes": []}
        try:
            with open_image(image) as img:
                out["width"], out["height"] = img.size
        except (ImageError, OSError) as exc:
            out["image_error"] = str(exc).replace(str(self.folder) + "/", "")
            out["width"] = out["height"] = 0
        found = self.annotation_of(image)
        data = _read(found)
        if data is None:
            found = None
        state = review_state(image, found)
        out.update(status=state.status, format=found.format if found else "voc", verified=False)
        out["annotation"] = found.path.name if found else None
        out["version"] = None
        if found is None or data is None:
            return out
        ann, error = None, None
        for _ in range(5):
            if out["image_error"]:
                break
            try:
                ann, error = read_annotation(found, image.name, (out["width"], out["height"])), None
            except AnnotationError as exc:
                ann, error = None, f"labelImg cannot read {found.path.name}: {str(exc).split(': ', 1)[-1]}"
            # The boxes must be those of the version the page is given, or a save could overwrite a newer file.
            again = _read(found)
            if again == data:
                break
            data = again if again is not None else b""
        out["version"] = sha256(data)
        out["text"] = data.decode("utf-8", "replace")
        out["annotation_error"] = error
        if ann is not None:
            out["verified"] = ann.verified
            out["boxes"] = self._shown_boxes(ann, image, out["width"], out["height"])
        return out

    def _shown_boxes(self, ann: Annotation, image: Path, width: int, height: int) -> list[dict[str, Any]]:
        sidecar = read_sidecar(image) or {}
        said = {(tuple(d.get("box") or ()), d.get("label")): d for d in sidecar.get("boxes") or []}
        details = [said.get((box.pixel_box(), box.name)) for box in ann.boxes]
        # The game rules judged on the boxes as they are now (a person's box too), by the function annotate used;
        # the models' disagreement only where the box is still the one they saw.
        flags = box_flags(
            [(b.xmin, b.ymin, b.xmax, b.ymax) for b in ann.boxes],
            width,
            height,
            [d.get("conflict") if d else None for d in details],
        )
        shown = []
        for box, detail, flagged in zip(ann.boxes, details, flags, strict=True):
            shown.append(
                {
                    "name": box.name,
                    "xmin": box.xmin,
                    "ymin": box.ymin,
                    "xmax": box.xmax,
                    "ymax": box.ymax,
                    "difficult": box.difficult,
                    "confidence": detail.get("confidence") if detail else None,
                    "flags": flagged,
                    "unknown_label": box.name not in self.labels,
                    "outside": box.xmin < 0 or box.ymin < 0 or box.xmax > width or box.ymax > height,
                }
            )
        return shown

    # --- writing ---

    def spent(self, rel: str, seconds: Any) -> None:
        """Add the time a person spent on ``rel`` since the page last said (kept while the server runs)."""
        self.image_path(rel)
        if isinstance(seconds, int | float) and math.isfinite(seconds) and 0 <= seconds < 86400:
            self.seconds[rel] = self.seconds.get(rel, 0.0) + float(seconds)

    def save(self, rel: str, version: str | None, boxes: Any, verified: bool, seconds: float = 0.0) -> dict[str, Any]:
        """Write the page's boxes to ``rel``'s annotation in its own format (a new screenshot gets Pascal VOC);
        Conflict when the file on disk is not ``version`` (None: no file) any more."""
        image = self.image_path(rel)
        parsed = _parse_boxes(boxes)
        self.spent(rel, seconds)
        with self.lock:  # two tabs of this server never interleave their read-compare-write
            found = self.annotation_of(image)
            data = _read(found)
            if data is None:
                found = None
            if (sha256(data) if data is not None else None) != version:
                raise Conflict(self.load(rel))
            try:
                with open_image(image) as img:
                    width, height = img.size
            except (ImageError, OSError) as exc:
                raise Refused(422, f"{rel} cannot be read as an image: boxes cannot be saved for it") from exc
            if found is None:
                target, fmt = image.with_suffix(".xml"), "voc"
                ann = Annotation(
                    filename=image.name, width=width, height=height, folder=image.parent.name, path=str(image)
                )
            else:
                target, fmt = found.path, found.format
                try:
                    ann = read_annotation(found, image.name, (width, height))
                except AnnotationError as exc:
                    raise Refused(422, f"labelImg cannot read {found.path.name}: left as it is") from exc
            ann = replace(ann, width=ann.width or width, height=ann.height or height, verified=bool(verified))
            # A box the person left as it was keeps its flags, so saving an untouched file leaves its bytes (and
            # a pre-annotation stays one); a new or changed box gets truncated by labelImg's rule, as its save does.
            kept = {(b.name, b.xmin, b.ymin, b.xmax, b.ymax): b for b in ann.boxes}
            ann.boxes = [
                kept.get((b.name, b.xmin, b.ymin, b.xmax, b.ymax))
                or replace(b, truncated=labelimg_truncated(b, ann.width, ann.height))
                for b in parsed
            ]
            new = self._file_bytes(ann, fmt, target, image)
            if found is None:
                if not create_exclusive(target, new):
                    raise Conflict(self.load(rel))
            elif new != data:
                write_bytes_atomic(target, new)
            if verified and fmt == "yolo":
                self._accept(image, target.name, sha256(new))
            status = review_state(image, AnnotationFile(target, fmt)).status
        # The version of the bytes written here, not of the file read back: another writer may have replaced it
        # already, and the page's next save must then meet a conflict.
        return {"version": sha256(new), "status": status}

    def _file_bytes(self, ann: Annotation, fmt: str, target: Path, image: Path) -> bytes:
        if fmt == "voc":
            return voc_bytes(ann)
        if fmt == "yolo":
            classes = yolo_classes(image.parent, [b.name for b in ann.boxes])
            return yolo_text(ann, classes).encode()
        # CreateML: one file may list several images; only this one's entry changes.
        entries = json.loads(target.read_text(encoding="utf-8"))
        index = next((i for i, e in enumerate(entries) if e.get("image") == image.name), None)
        if index is None:
            index = next(i for i, e in enumerate(entries) if Path(str(e.get("image"))).stem == image.stem)
        entries[index] = createml_entry(replace(ann, filename=str(entries[index]["image"])))
        return json.dumps(entries).encode()

    def _accept(self, image: Path, annotation: str, digest: str) -> None:
        """Record that a person accepted these YOLO bytes as they are (YOLO has no verified flag)."""
        sidecar = read_sidecar(image)
        if sidecar is None or sidecar.get("annotation") != annotation or digest not in sidecar["written"]:
            return  # not annotate's bytes: the file is a person's already
        accepted = sidecar.get("accepted") or []
        if digest not in accepted:
            sidecar["accepted"] = [*accepted, digest]
            write_bytes_atomic(sidecar_path(image), json.dumps(sidecar, indent=1).encode())


def _read(found: AnnotationFile | None) -> bytes | None:
    """The annotation's bytes; None when there is none (also when it was deleted a moment ago)."""
    if found is None:
        return None
    try:
        return found.path.read_bytes()
    except FileNotFoundError:
        return None


def _parse_boxes(boxes: Any) -> list[Box]:
    if not isinstance(boxes, list):
        raise Refused(400, "boxes must be a list")
    parsed = []
    for i, b in enumerate(boxes):
        try:
            name = b["name"]
            coords = [float(b[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
        except (KeyError, TypeError, ValueError):
            raise Refused(400, f"box {i} needs a name and numbers xmin, ymin, xmax, ymax") from None
        if not isinstance(name, str) or not _LABEL_RE.match(name):
            raise Refused(400, f"box {i}: a label is one word without spaces, got {name!r}")
        if not all(math.isfinite(c) for c in coords) or coords[2] <= coords[0] or coords[3] <= coords[1]:
            raise Refused(400, f"box {i}: its right must exceed its left and its bottom its top")
        parsed.append(Box(name, *coords, difficult=bool(b.get("difficult", False))))
    return parsed


# --- the web application ---


def create_app(session: ReviewSession) -> Starlette:
    """The Starlette application serving ``session``: the page and its JSON API.

    Only requests addressed to 127.0.0.1 or localhost are answered (a web site that rebinds its own name to
    127.0.0.1 gets nothing), and a save must be sent as application/json, which a page of another origin can
    only do after a CORS preflight this server never grants.
    """
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    page = {name: resources.files("toonvision.serving").joinpath("review_page", name).read_bytes() for name in PAGE}

    def static(name: str, media: str):
        async def endpoint(request: Request) -> Response:
            return Response(page[name], media_type=media, headers={"Cache-Control": "no-store"})

        return endpoint

    def guarded(handler):
        def endpoint(request: Request) -> Response:
            try:
                return handler(request)
            except Refused as exc:
                return JSONResponse({"error": str(exc)}, status_code=exc.status)

        return endpoint

    def listing(request: Request) -> Response:
        return JSONResponse(session.listing())

    def screenshot(request: Request) -> Response:
        return JSONResponse(session.load(request.query_params.get("path", "")))

    def image(request: Request) -> Response:
        path = session.image_path(request.query_params.get("path", ""))
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media, headers={"Cache-Control": "no-store"})

    async def posted(request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise Refused(415, "send application/json")
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise Refused(400, "the request is not JSON") from None
        if not isinstance(body, dict):
            raise Refused(400, "the request is not a JSON object")
        return body

    async def spent(request: Request) -> Response:
        try:
            body = await posted(request)
            session.spent(str(body.get("path", "")), body.get("seconds"))
        except Refused as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return JSONResponse({"seconds": round(session.seconds.get(str(body["path"]), 0.0), 3)})

    async def save(request: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        try:
            body = await posted(request)
            done = await run_in_threadpool(
                session.save,
                str(body.get("path", "")),
                body.get("version"),
                body.get("boxes"),
                bool(body.get("verified")),
                body.get("seconds") or 0.0,
            )
        except Refused as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        except Conflict as exc:
            return JSONResponse({"error": str(exc), "current": exc.current}, status_code=409)
        return JSONResponse(done)

    routes = [
        Route("/", static("index.html", "text/html; charset=utf-8")),
        Route("/review.js", static("review.js", "text/javascript; charset=utf-8")),
        Route("/review.css", static("review.css", "text/css; charset=utf-8")),
        Route("/api/screenshots", guarded(listing)),
        Route("/api/screenshot", guarded(screenshot)),
        Route("/api/image", guarded(image)),
        Route("/api/save", save, methods=["POST"]),
        Route("/api/seconds", spent, methods=["POST"]),
    ]
    hosts = Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"])
    return Starlette(routes=routes, middleware=[hosts])


def bind(port: int) -> socket.socket:
    """A socket listening on 127.0.0.1 only (``port`` 0: a free one); OSError when the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
        sock.listen(64)
    except OSError:
        sock.close()
        raise
    return sock


def serve(session: ReviewSession, sock: socket.socket) -> None:
    """Serve the review page on ``sock`` until interrupted (Ctrl-C: uvicorn finishes the requests in flight)."""
    import uvicorn

    config = uvicorn.Config(create_app(session), log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
