"""Procedural meshes: unit boxes, cylinders/frustums, spheres and cones built with GeomVertexData.

Every primitive is built once per process and shared by instancing (``instanceTo``): a part is a transform node
that carries its own colour and optional texture, so a Toon of forty parts costs forty small nodes, not forty
meshes. Vertex colours are white so that ``NodePath.setColor`` (a flat ColorAttrib) colours the part, which is
also what the instance-ID pass relies on to repaint whole entities with one override.
"""

from __future__ import annotations

import math
from functools import cache

from panda3d.core import (
    Geom,
    GeomNode,
    GeomTriangles,
    GeomVertexData,
    GeomVertexFormat,
    GeomVertexWriter,
    NodePath,
    Texture,
)

Color = tuple[float, float, float, float]


def _writer(name: str) -> tuple[GeomVertexData, GeomVertexWriter, GeomVertexWriter, GeomVertexWriter]:
    vdata = GeomVertexData(name, GeomVertexFormat.getV3n3t2(), Geom.UHStatic)
    return (
        vdata,
        GeomVertexWriter(vdata, "vertex"),
        GeomVertexWriter(vdata, "normal"),
        GeomVertexWriter(vdata, "texcoord"),
    )


def _node(name: str, vdata: GeomVertexData, tris: GeomTriangles) -> NodePath:
    geom = Geom(vdata)
    geom.addPrimitive(tris)
    node = GeomNode(name)
    node.addGeom(geom)
    return NodePath(node)


@cache
def unit_box() -> NodePath:
    """A 1x1x1 box centred on the origin; each face maps the whole texture (facades, shirts)."""
    vdata, v, n, t = _writer("box")
    tris = GeomTriangles(Geom.UHStatic)
    faces = (
        ((0, 1, 0), (1, 0, 0), (0, 0, 1)),  # front (+Y): u along +X
        ((0, -1, 0), (-1, 0, 0), (0, 0, 1)),
        ((1, 0, 0), (0, -1, 0), (0, 0, 1)),
        ((-1, 0, 0), (0, 1, 0), (0, 0, 1)),
        ((0, 0, 1), (1, 0, 0), (0, -1, 0)),
        ((0, 0, -1), (1, 0, 0), (0, 1, 0)),
    )
    row = 0
    for normal, right, up in faces:
        for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):
            sx, sy = du - 0.5, dv - 0.5
            v.addData3(*(0.5 * normal[i] + sx * right[i] + sy * up[i] for i in range(3)))
            n.addData3(*normal)
            # The front face faces the viewer, so its texture reads left-to-right from the outside.
            t.addData2(1 - du if normal[1] > 0 else du, dv)
        # Counter-clockwise seen from outside the box.
        if normal[1] > 0:
            tris.addVertices(row, row + 2, row + 1)
            tris.addVertices(row, row + 3, row + 2)
        else:
            tris.addVertices(row, row + 1, row + 2)
            tris.addVertices(row, row + 2, row + 3)
        row += 4
    np_ = _node("box", vdata, tris)
    _fix_winding(np_)
    return np_


def _fix_winding(np_: NodePath) -> None:
    # Faces whose winding came out clockwise would be culled; rather than reason about every axis basis,
    # flip any triangle whose geometric normal disagrees with its vertex normal.
    geom = np_.node().modifyGeom(0)
    vdata = geom.getVertexData()
    from panda3d.core import GeomVertexReader

    rv = GeomVertexReader(vdata, "vertex")
    rn = GeomVertexReader(vdata, "normal")
    verts, norms = [], []
    while not rv.isAtEnd():
        verts.append(rv.getData3())
        norms.append(rn.getData3())
    prim = geom.getPrimitive(0)
    out = GeomTriangles(Geom.UHStatic)
    for i in range(prim.getNumPrimitives()):
        a, b, c = (prim.getVertex(prim.getPrimitiveStart(i) + k) for k in range(3))
        e1, e2 = verts[b] - verts[a], verts[c] - verts[a]
        if e1.cross(e2).dot(norms[a] + norms[b] + norms[c]) < 0:
            b, c = c, b
        out.addVertices(a, b, c)
    geom.setPrimitive(0, out)


@cache
def unit_frustum(top: float = 1.0, segments: int = 14) -> NodePath:
    """A capped frustum along +Z from z=0 (radius 1) to z=1 (radius ``top``); top=1 is a cylinder, 0 a cone."""
    vdata, v, n, t = _writer("frustum")
    tris = GeomTriangles(Geom.UHStatic)
    slope = 1.0 - top
    row = 0
    for i in range(segments + 1):
        a = 2 * math.pi * i / segments
        c, s = math.cos(a), math.sin(a)
        nz = slope / math.hypot(1.0, slope)
        nr = 1.0 / math.hypot(1.0, slope)
        for z, r in ((0.0, 1.0), (1.0, top)):
            v.addData3(c * r, s * r, z)
            n.addData3(c * nr, s * nr, nz)
            t.addData2(i / segments, z)
    for i in range(segments):
        a0, a1 = 2 * i, 2 * i + 2
        tris.addVertices(a0, a1, a1 + 1)
        tris.addVertices(a0, a1 + 1, a0 + 1)
    row = 2 * (segments + 1)
    for z, r, nz in ((0.0, 1.0, -1.0), (1.0, top, 1.0)):
        if r <= 1e-6:
            continue
        centre = row
        v.addData3(0, 0, z)
        n.addData3(0, 0, nz)
        t.addData2(0.5, 0.5)
        row += 1
        for i in range(segments + 1):
            a = 2 * math.pi * i / segments
            v.addData3(math.cos(a) * r, math.sin(a) * r, z)
            n.addData3(0, 0, nz)
            t.addData2(0.5 + 0.5 * math.cos(a), 0.5 + 0.5 * math.sin(a))
        for i in range(segments):
            tris.addVertices(centre, row + i, row + i + 1)
        row += segments + 1
    np_ = _node("frustum", vdata, tris)
    _fix_winding(np_)
    return np_


@cache
def unit_sphere(rings: int = 9, segments: int = 14) -> NodePath:
    """A sphere of radius 1 centred on the origin (scale it for ellipsoids)."""
    vdata, v, n, t = _writer("sphere")
    tris = GeomTriangles(Geom.UHStatic)
    for r in range(rings + 1):
        phi = math.pi * r / rings
        for s in range(segments + 1):
            theta = 2 * math.pi * s / segments
            x, y, z = math.sin(phi) * math.cos(theta), math.sin(phi) * math.sin(theta), math.cos(phi)
            v.addData3(x, y, z)
            n.addData3(x, y, z)
            t.addData2(s / segments, 1 - r / rings)
    width = segments + 1
    for r in range(rings):
        for s in range(segments):
            a, b = r * width + s, (r + 1) * width + s
            if r > 0:
                tris.addVertices(a, b, a + 1)
            if r < rings - 1:
                tris.addVertices(a + 1, b, b + 1)
    np_ = _node("sphere", vdata, tris)
    _fix_winding(np_)
    return np_


def primitive(shape: str, top: float = 1.0) -> NodePath:
    if shape == "box":
        return unit_box()
    if shape == "sphere":
        return unit_sphere()
    if shape == "cyl":
        return unit_frustum(round(top, 2))
    if shape == "cone":
        return unit_frustum(0.0)
    raise ValueError(f"unknown shape {shape!r}")


def part(
    parent: NodePath,
    shape: str,
    pos: tuple[float, float, float],
    scale: tuple[float, float, float],
    color: Color | tuple[float, float, float],
    hpr: tuple[float, float, float] = (0.0, 0.0, 0.0),
    *,
    top: float = 1.0,
    texture: Texture | None = None,
) -> NodePath:
    """Attach one coloured primitive to ``parent``.

    Boxes and spheres are centred on ``pos``; cylinders and cones grow from ``pos`` along the part's +Z, so a
    limb is placed at its joint and rotated with ``hpr``.
    """
    node = parent.attachNewNode(shape)
    node.setPos(*pos)
    node.setHpr(*hpr)
    node.setScale(*(max(abs(s), 1e-4) for s in scale))
    primitive(shape, top).instanceTo(node)
    node.setColorScale(*(*tuple(color), 1.0)[:4])
    if texture is not None:
        node.setTexture(texture, 1)
    return node
