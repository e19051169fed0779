"""Offscreen Panda3D rendering: the picture, an instance-ID pass for tight boxes, and nametags.

One Panda3D engine per process (ShowBase is a singleton), with one offscreen buffer per image size. Software
rendering (TinyPanda) by default: no GPU and no display needed. ``TOONVISION_SYNTH_GL=1`` asks for pandagl
where it works, falling back to software when it does not.

Per screenshot:
1. ID pass: every entity flat in its own colour, the street flat black (it still hides what is behind it),
   no light, fog, texture or nametag. Each entity's visible pixels give its box.
2. Solo passes: entities whose projected extents do not overlap are drawn together without the street, to
   count how many pixels each would cover unoccluded; visible/solo is the visible fraction.
3. Main pass with lighting, fog and textures, plus nametags drawn as a 2D overlay above each head, pushed
   up until they clear the entity's box.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from toonvision.data.annotations import Box, labelimg_truncated
from toonvision.data.taxonomy import STREET_SHORTS, Label
from toonvision.synth.scene import (
    Conditions,
    Realism,
    ScenePlan,
    child,
    facing,
    label_sampler,
    plan_scene,
    screenshot_rng,
)

ID_STEP = 8  # each ID channel moves in steps of 8 so that TinyPanda's +-1 colour rounding cannot confuse IDs

PRC = """
load-display p3tinydisplay
window-type offscreen
audio-library-name null
notify-level error
default-directnotify-level error
notify-level-display error
notify-level-device fatal
notify-level-x11display fatal
sync-video false
win-size 16 16
model-cache-dir
"""


@dataclass(frozen=True)
class LabelRules:
    """When a rendered entity gets a box, and when that box is marked difficult."""

    min_visible: float = 0.5  # fraction of its unoccluded pixels; below this the entity is left unlabelled
    min_height: int = 30  # px; smaller boxes are left unlabelled (a person would not draw them)
    min_width: int = 8
    min_in_frame: float = 0.5  # share of the entity's projected extent inside the picture (a head alone is no sample)
    difficult_visible: float = 0.55
    difficult_height: int = 40


@dataclass
class Instance:
    """One Toon or Cog in a rendered screenshot."""

    id: int  # its value in the ID pass (1-based)
    label: Label
    pixels: int  # visible pixels
    solo_pixels: int  # pixels it would cover with nothing in front of it
    box: Box | None  # None when it is too hidden or too small to label
    nametag: tuple[int, int, int, int] | None = None  # (left, top, right, bottom) in pixels, bottom exclusive
    confuser: str = ""
    occluder: bool = False
    facing: float | None = None  # degrees from looking at the camera (0) to turning its back on it (180)

    @property
    def visible(self) -> float:
        return self.pixels / self.solo_pixels if self.solo_pixels else 0.0


@dataclass
class RenderResult:
    street: str
    mode: str
    image: np.ndarray  # (H, W, 3) uint8
    ids: np.ndarray  # (H, W) uint16, instance id per pixel (0 = street or sky)
    instances: list[Instance] = field(default_factory=list)

    @property
    def boxes(self) -> list[Box]:
        return [i.box for i in self.instances if i.box is not None]

    def mask(self) -> np.ndarray:
        """Per-instance mask: 0 background, k for the k-th box of the annotation, 255 unlabelled entities."""
        lut = np.zeros(max((i.id for i in self.instances), default=0) + 1, np.uint8)
        k = 0
        for inst in self.instances:
            if inst.box is not None:
                k += 1
                lut[inst.id] = min(k, 254)
            else:
                lut[inst.id] = 255
        return lut[self.ids]


def id_color(i: int) -> tuple[float, float, float, float]:
    return ((i % 32) * ID_STEP + ID_STEP // 2) / 255, ((i // 32) * ID_STEP + ID_STEP // 2) / 255, 0.0, 1.0


def decode_ids(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] // ID_STEP).astype(np.uint16) + (rgb[..., 1] // ID_STEP).astype(np.uint16) * 32


@lru_cache(maxsize=1)
def _engine(hardware: bool) -> Any:
    """The process's one ShowBase. Imported lazily: ``toonvision --help`` must not load Panda3D."""
    from panda3d.core import loadPrcFileData

    loadPrcFileData("toonvision-synth", PRC)
    if hardware:
        loadPrcFileData("toonvision-synth-gl", "load-display pandagl\naux-display p3tinydisplay\n")
    from direct.showbase.ShowBase import ShowBase

    if hardware:
        base = ShowBase(windowType="offscreen")
    else:
        # TinyPanda's offscreen pipe by name: its default pipe is the X11 one, which connects to $DISPLAY or
        # else to :0 wherever an X server listens there, and dies with that server (a test's Xvfb, a desktop
        # logging out) although it only renders offscreen. The pixels are the same.
        from panda3d.core import GraphicsPipeSelection

        base = ShowBase(windowType="none")
        base.pipe = GraphicsPipeSelection.get_global_ptr().make_pipe("TinyOffscreenGraphicsPipe", "p3tinydisplay")
        if base.pipe is None:
            raise RuntimeError("Panda3D has no TinyOffscreenGraphicsPipe (p3tinydisplay): reinstall panda3d")
        base.openDefaultWindow(type="offscreen")
    base.win.setActive(False)
    return base


@lru_cache(maxsize=4)
def get_renderer(width: int, height: int) -> Renderer:
    """This process's renderer for one image size (workers keep theirs for their whole life)."""
    return Renderer(width, height)


def use_hardware() -> bool:
    return os.environ.get("TOONVISION_SYNTH_GL", "").strip().lower() in ("1", "true", "yes", "gl")


class Renderer:
    """Renders ScenePlans into pictures, ID maps and boxes at one image size."""

    def __init__(self, width: int, height: int, *, hardware: bool | None = None) -> None:
        from panda3d.core import (
            Camera,
            FrameBufferProperties,
            GraphicsOutput,
            GraphicsPipe,
            NodePath,
            OrthographicLens,
            PerspectiveLens,
            TransparencyAttrib,
            WindowProperties,
        )

        self.width, self.height = width, height
        self.base = _engine(use_hardware() if hardware is None else hardware)
        fb = FrameBufferProperties()
        fb.setRgbColor(True)
        fb.setDepthBits(16)
        self.buffer = self.base.graphicsEngine.makeOutput(
            self.base.pipe,
            f"synth-{width}x{height}",
            -10,
            fb,
            WindowProperties.size(width, height),
            GraphicsPipe.BFRefuseWindow,
            self.base.win.getGsg(),
            self.base.win,
        )
        if self.buffer is None:
            raise RuntimeError(f"Panda3D could not open a {width}x{height} offscreen buffer")
        self.buffer.setClearColorActive(True)
        self.buffer.setClearDepthActive(True)
        self.lens = PerspectiveLens()
        self.lens.setNearFar(0.3, 400.0)
        self.camera = NodePath(Camera("synth-cam", self.lens))
        self.region = self.buffer.makeDisplayRegion()
        self.region.setCamera(self.camera)
        # 2D overlay for nametags, in pixel coordinates: x right, z = -y (down).
        self.overlay = NodePath("nametags")
        self.overlay.setDepthTest(False)
        self.overlay.setDepthWrite(False)
        self.overlay.setTransparency(TransparencyAttrib.MAlpha)
        # Scene-graph order, so each card is drawn before its text (depth sorting would put cards on top).
        self.overlay.setBin("unsorted", 0)
        ortho = OrthographicLens()
        ortho.setFilmSize(width, height)
        ortho.setFilmOffset(width / 2, -height / 2)
        ortho.setNearFar(-100, 100)
        cam2d = self.overlay.attachNewNode(Camera("synth-cam2d", ortho))
        self.region2d = self.buffer.makeDisplayRegion()
        self.region2d.setSort(10)
        self.region2d.setClearDepthActive(True)
        self.region2d.setCamera(cam2d)
        self._graphics_output = GraphicsOutput

    # --- frame plumbing -----------------------------------------------------------------------------------
    def _activate(self) -> None:
        engine = self.base.graphicsEngine
        for i in range(engine.getNumWindows()):
            win = engine.getWindow(i)
            win.setActive(win == self.buffer)

    def _grab(self) -> np.ndarray:
        self.base.graphicsEngine.renderFrame()
        tex = self.buffer.getScreenshot()
        data = np.frombuffer(tex.getRamImageAs("RGB"), np.uint8)
        return data.reshape(self.height, self.width, 3)[::-1]

    # --- one screenshot -----------------------------------------------------------------------------------
    def render_index(
        self,
        seed: int,
        index: int,
        weights: dict[str, float],
        realism: Realism | None = None,
        rules: LabelRules | None = None,
        conditions: Conditions | None = None,
    ) -> RenderResult:
        from panda3d.core import NodePath, RenderState, TransformState

        from toonvision.synth.world import build_world

        realism, conditions = realism or Realism(), conditions or Conditions()
        rules = rules or LabelRules()
        rng = screenshot_rng(seed, index)
        street = STREET_SHORTS[rng.randrange(len(STREET_SHORTS))]
        labels, w = label_sampler(weights)
        scene = NodePath("scene")
        # Draw in scene-graph order: the default opaque bin sorts by render-state pointer, which depends on
        # what the process drew before, and where depths tie (decals, touching faces) order picks the pixel.
        scene.setBin("unsorted", 0)
        # Lights and fog live on ``scene``; the ID pass overrides them on ``content`` and clears that after.
        content = scene.attachNewNode("content")
        try:
            world = build_world(content, street, child(rng), lights_on=scene, time_of_day=conditions.time_of_day)
            plan = plan_scene(world, child(rng), labels, w, realism, self.width / self.height, conditions)
            post_rng = child(rng)
            return self._render_plan(content, world, plan, rules, post_rng)
        finally:
            # The scene's light attribute holds NodePaths of its own children, a reference cycle Panda3D never
            # frees: without this every screenshot's whole scene stayed in memory (5 MB each; a 2-worker run
            # of 6000 screenshots ran out of 24 GB).
            scene.clearLight()
            scene.removeNode()
            # Panda3D's state caches still hold that light attribute (and through it the scene) until they are
            # cleared and collected, which ShowBase's frame loop would do and this renderer never runs.
            RenderState.clearCache()
            while RenderState.garbageCollect() or TransformState.garbageCollect():
                pass  # each call frees a share of what is collectable

    def _render_plan(
        self, scene: Any, world: Any, plan: ScenePlan, rules: LabelRules, post_rng: random.Random
    ) -> RenderResult:
        from toonvision.synth.entities import build_entity
        from toonvision.synth.world import build_prop

        prop_rng = random.Random(post_rng.getrandbits(64))
        for kind, x, y in plan.props:
            build_prop(world.root, kind, (x, y, world.ground_z(y)), world.style, prop_rng)
        entities = []
        for ep in plan.entities:
            ent = build_entity(scene, ep.label, random.Random(ep.seed), ep.look)
            ent.root.setPos(ep.x, ep.y, world.ground_z(ep.y))
            ent.root.setH(ep.heading)
            entities.append(ent)
        cam = plan.camera
        self.camera.reparentTo(scene.getParent())
        self.camera.setPos(*cam.pos)
        self.camera.lookAt(*cam.look_at)
        self.lens.setFov(cam.fov)
        self.lens.setAspectRatio(self.width / self.height)
        result = self.render_entities(scene, world.root, entities, world.sky or world.style.sky, rules)
        result.street, result.mode = plan.street, plan.mode
        for inst, ep in zip(result.instances, plan.entities, strict=True):
            inst.occluder, inst.facing = ep.occluder, facing(ep, cam.pos)
        self.camera.detachNode()
        return result

    def render_entities(
        self,
        scene: Any,
        world_root: Any,
        entities: list[Any],
        sky: tuple[float, float, float],
        rules: LabelRules | None = None,
        *,
        nametags: bool = True,
    ) -> RenderResult:
        """Render ``entities`` (already placed under ``scene``) with the camera as set; label what is seen."""
        rules = rules or LabelRules()
        from panda3d.core import TransparencyAttrib
        from scipy import ndimage

        self._activate()
        W, H = self.width, self.height
        # 1. ID pass.
        self.region2d.setActive(False)
        self.buffer.setClearColor((0, 0, 0, 1))
        scene.setLightOff(100)
        scene.setFogOff(100)
        scene.setTextureOff(100)
        scene.setTransparency(TransparencyAttrib.MNone, 100)
        if world_root is not None:
            world_root.setColor((0, 0, 0, 1), 100)
            world_root.setColorScaleOff(100)
        for i, ent in enumerate(entities, start=1):
            ent.root.setColor(id_color(i), 100)
            ent.root.setColorScaleOff(100)
        ids = decode_ids(self._grab())
        n = len(entities)
        ids[ids > n] = 0
        counts = np.bincount(ids.ravel(), minlength=n + 1)
        slices = ndimage.find_objects(ids, max_label=n) if n else []
        # 2. Solo passes, grouping entities whose projected extents do not overlap.
        solo = np.zeros(n + 1, np.int64)
        extents = [self._projected_extent(ent.root) for ent in entities]
        groups: list[list[int]] = []
        for i, ext in enumerate(extents):
            if counts[i + 1] == 0:
                continue
            for g in groups:
                if all(not _overlap(ext, extents[j]) for j in g):
                    g.append(i)
                    break
            else:
                groups.append([i])
        if world_root is not None:
            world_root.hide()
        for g in groups:
            members = set(g)
            for j, ent in enumerate(entities):
                if j in members:
                    ent.root.show()
                else:
                    ent.root.hide()
            solo_ids = decode_ids(self._grab())
            c = np.bincount(solo_ids.ravel(), minlength=n + 1)[: n + 1]
            for j in g:
                solo[j + 1] = c[j + 1]
        for ent in entities:
            ent.root.show()
        if world_root is not None:
            world_root.show()
            world_root.clearColor()
            world_root.clearColorScale()
        for ent in entities:
            ent.root.clearColor()
            ent.root.clearColorScale()
        scene.clearLight()
        scene.clearFog()
        scene.clearTexture()
        scene.clearTransparency()

        instances: list[Instance] = []
        for i, ent in enumerate(entities, start=1):
            box = None
            sl = slices[i - 1] if i - 1 < len(slices) else None
            pixels = int(counts[i])
            if sl is not None and pixels:
                y0, y1 = sl[0].start, sl[0].stop
                x0, x1 = sl[1].start, sl[1].stop
                vis = pixels / max(1, int(solo[i]))
                if (
                    vis >= rules.min_visible
                    and y1 - y0 >= rules.min_height
                    and x1 - x0 >= rules.min_width
                    and _in_frame(extents[i - 1], W, H) >= rules.min_in_frame
                ):
                    # labelImg never writes a coordinate below 1.
                    b = Box(str(ent.label), max(1, x0), max(1, y0), x1, y1)
                    difficult = vis < rules.difficult_visible or (y1 - y0) < rules.difficult_height
                    box = Box(
                        b.name,
                        b.xmin,
                        b.ymin,
                        b.xmax,
                        b.ymax,
                        truncated=labelimg_truncated(b, W, H),
                        difficult=difficult,
                    )
            instances.append(Instance(i, ent.label, pixels, int(solo[i]), box, confuser=ent.confuser))

        # 3. Main pass with nametags.
        tags = []
        for inst, ent in zip(instances, entities, strict=True):
            if inst.pixels == 0 or not nametags:
                continue
            sl = slices[inst.id - 1]
            tag = self._place_nametag(ent, top_limit=sl[0].start)
            if tag is not None:
                tags.append(tag[0])
                inst.nametag = tag[1]
        self.buffer.setClearColor((*sky, 1))
        self.region2d.setActive(True)
        image = self._grab().copy()
        for t in tags:
            t.removeNode()
        return RenderResult("", "", image, ids, instances)

    def _projected_extent(self, node: Any) -> tuple[float, float, float, float]:
        """Screen rectangle (x0, y0, x1, y1) in pixels that ``node`` cannot draw outside of."""
        from panda3d.core import Point2, Point3

        bounds = node.getTightBounds(self.camera)
        full = (0.0, 0.0, float(self.width), float(self.height))
        if bounds is None:
            return full
        lo, hi = bounds
        xs, ys = [], []
        for cx in (lo.x, hi.x):
            for cy in (lo.y, hi.y):
                for cz in (lo.z, hi.z):
                    if cy <= self.lens.getNear():
                        # A corner behind the camera: assume the entity may cover anything.
                        return full
                    p2 = Point2()
                    # Off-film corners still get their (out-of-range) film coordinates.
                    self.lens.project(Point3(cx, cy, cz), p2)
                    xs.append((p2.x + 1) / 2 * self.width)
                    ys.append((1 - p2.y) / 2 * self.height)
        return (min(xs), min(ys), max(xs), max(ys))

    def project(self, node: Any, point: Any) -> tuple[float, float, float] | None:
        """Pixel (x, y) and camera depth of ``point`` given in ``node``'s space; None when behind the camera."""
        from panda3d.core import Point2

        p = self.camera.getRelativePoint(node, point)
        if p.y <= self.lens.getNear():
            return None
        p2 = Point2()
        self.lens.project(p, p2)
        return ((p2.x + 1) / 2 * self.width, (1 - p2.y) / 2 * self.height, p.y)

    def _place_nametag(self, ent: Any, top_limit: int) -> tuple[Any, tuple[int, int, int, int]] | None:
        """Draw ``ent``'s nametag above its head, and above ``top_limit`` (its box's top) so it never
        falls inside its own box. Returns the node and the tag's pixel rectangle."""
        from panda3d.core import Point3, TextNode

        root = ent.root
        proj = self.project(root, Point3(0, 0, ent.height + 0.35))
        if proj is None:
            return None
        x, y, depth = proj
        focal_px = self.height / (2 * math.tan(math.radians(self.lens.getVfov() / 2)))
        line_px = min(20.0, max(10.0, 0.36 * focal_px / depth))
        tn = TextNode("nametag")
        tn.setText("\n".join(ent.name_lines))
        tn.setAlign(TextNode.ACenter)
        tn.setTextColor(*ent.name_color, 1)
        tn.setCardColor(1, 1, 1, 0.55)
        tn.setCardAsMargin(0.3, 0.3, 0.15, 0.1)
        left, right, bottom, top = tn.getCardActual()
        bottom_px = min(y, top_limit - 2)
        node = self.overlay.attachNewNode(tn)
        node.setScale(line_px)
        node.setPos(round(x), 0, -bottom_px - bottom * line_px)
        rect = (
            math.floor(x + left * line_px),
            math.floor(bottom_px - (top - bottom) * line_px),
            math.ceil(x + right * line_px),
            math.ceil(bottom_px),
        )
        return node, rect


def _in_frame(ext: tuple[float, float, float, float], width: int, height: int) -> float:
    x0, y0, x1, y1 = ext
    area = max(1e-6, (x1 - x0) * (y1 - y0))
    inside = max(0.0, min(x1, width) - max(x0, 0.0)) * max(0.0, min(y1, height) - max(y0, 0.0))
    return inside / area


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] + 2 and b[0] < a[2] + 2 and a[1] < b[3] + 2 and b[1] < a[3] + 2
