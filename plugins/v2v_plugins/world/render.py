"""Procedural renderer of the synthetic world: frames, labels, instances and the exact backward flow.

Each frame is ray cast against the scene of :mod:`.scene` (numpy, vectorised over pixels): the ground plane, the
facade planes, tree billboards and car boxes are intersected, the nearest hit wins (a z-buffer over surface ids),
and every visible point is shaded from its world position: procedural textures, Lambert lighting from the
sequence's sun, shadows of the buildings across the street, soft shadows under cars, distance haze, a sky with sun
glow and clouds.

Textures are evaluated analytically and box-prefiltered over each pixel's footprint on its surface (periodic
patterns through their antiderivative, noise as plane waves damped by their frequency response), so a pixel is a
sample of a smooth function of the surface point. That is what makes the flow usable: a point P seen at pixel p in
frame t is moved back by its object's known motion (static world: none; a car: its speed along z) and projected
with the camera of frame t-1, which gives the exact backward flow t→t-1; bilinear warping of frame t-1 then
reproduces frame t up to interpolation of the prefiltered texture. Confidence is 255 where the four pixels the
warp reads in frame t-1 show the same planar surface as p (p is neither occluded nor disoccluded, nor out of view)
and 0 elsewhere.

Library use::

    seq = render_sequence(seed=0, size=(128, 64), frames=24)
    seq.frames  # (T, H, W, 3) uint8; seq.seg, seq.inst, seq.flow, seq.conf
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .scene import CLASS_ID, INSTANCE_FACTOR, Facade, Scene, make_scene

__all__ = ["WorldFrame", "WorldSequence", "iter_frames", "render_sequence", "DEFAULT_FPS"]

DEFAULT_FPS = 15.0
NEAR = 0.3  # metres: nearer hits are clipped
FAR_OBJECTS = 350.0  # metres: trees and cars beyond are skipped
MIN_OBJECT_PX = 0.75  # ... and so are those narrower than this on screen
BLUR = 1.5  # prefilter width in pixels: edges ramp over ~1.5 px, which bilinear warping reproduces well

# surface ids: the unit of occlusion. Every id is one plane, so "same id at both ends of the flow" means "same point".
SID_SKY, SID_GROUND, SID_FACADE, SID_TREE, SID_CAR = 0, 1, 2, 100, 100_000
_WHITE = np.array([0.85, 0.85, 0.82])
_YELLOW = np.array([0.85, 0.66, 0.18])
_CURB = np.array([0.66, 0.65, 0.63])
_DARK = np.array([0.04, 0.04, 0.045])


@dataclass
class WorldFrame:
    """One rendered frame: RGB uint8 (H, W, 3), seg uint8 (H, W), inst uint16 (H, W), backward flow t→t-1 float32
    (H, W, 2) in pixels and its confidence uint8 (H, W) (255 = visible in both frames)."""

    rgb: np.ndarray
    seg: np.ndarray
    inst: np.ndarray
    flow: np.ndarray
    conf: np.ndarray


@dataclass
class WorldSequence:
    """A rendered sequence; arrays are stacked over frames."""

    frames: np.ndarray  # (T, H, W, 3) uint8 RGB
    seg: np.ndarray  # (T, H, W) uint8 label ids
    inst: np.ndarray  # (T, H, W) uint16 instance ids
    flow: np.ndarray  # (T, H, W, 2) float32 backward flow t→t-1 (dx, dy) in pixels; frame 0 zero
    conf: np.ndarray  # (T, H, W) uint8; 255 not occluded, 0 occluded/disoccluded/out of view; frame 0 zero
    fps: float
    options: dict[str, Any] = field(default_factory=dict)


# -- prefiltered pattern primitives ------------------------------------------------------------------------------
def _box_interval(x: np.ndarray, fp: np.ndarray, a: Any, b: Any) -> np.ndarray:
    """Indicator of [a, b] averaged over [x - fp/2, x + fp/2]."""
    lo = np.maximum(x - fp / 2, a)
    hi = np.minimum(x + fp / 2, b)
    return np.clip((hi - lo) / fp, 0.0, 1.0)


def _saw(x: np.ndarray, period: Any, duty: Any) -> np.ndarray:
    """Antiderivative of the periodic indicator of [0, duty) mod period."""
    n = np.floor(x / period)
    return n * duty + np.minimum(x - n * period, duty)


def _box_periodic(x: np.ndarray, fp: np.ndarray, period: Any, duty: Any, phase: Any) -> np.ndarray:
    """Periodic indicator of [phase, phase + duty) mod period, averaged over the footprint. Like a mipmap, the
    pattern fades to its mean where a period spans fewer than ~3 footprints: finer patterns alias and would make
    the bilinear warp of the frame inexact."""
    x = x - phase
    box = np.clip((_saw(x + fp / 2, period, duty) - _saw(x - fp / 2, period, duty)) / fp, 0.0, 1.0)
    mean = duty / period
    return mean + (box - mean) * np.clip(period / fp - 2.0, 0.0, 1.0)


def _noise(a: np.ndarray, b: np.ndarray, fa: np.ndarray, fb: np.ndarray, waves: np.ndarray) -> np.ndarray:
    """Sum of plane waves, each damped by a Gaussian prefilter (sigma = footprint / 2). In float32, whose cos/exp
    are several times faster; the phase error at 1 km from the origin is ~1e-3 rad."""
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    fa2, fb2 = (fa.astype(np.float32) ** 2) * np.float32(-0.5 * math.pi**2), (fb.astype(np.float32) ** 2) * np.float32(
        -0.5 * math.pi**2)
    out = np.zeros_like(a32)
    for ka, kb, phase, amp in waves.astype(np.float32):
        damp = np.exp(ka * ka * fa2 + kb * kb * fb2)
        out += amp * damp * np.cos(np.float32(2 * math.pi) * (ka * a32 + kb * b32) + phase)
    return out.astype(np.float64)


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    s = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return s * s * (3 - 2 * s)


# -- camera ------------------------------------------------------------------------------------------------------
@dataclass
class _View:
    """Camera of one frame: rays (3, H, W) in world space (camera-space z = 1, so ray parameter = depth)."""

    pos: np.ndarray
    rot: np.ndarray  # camera→world
    rays: np.ndarray
    du: np.ndarray  # d rays / d u
    dv: np.ndarray  # d rays / d v


def _camera_rays(scene: Scene) -> np.ndarray:
    cam = scene.camera
    u = (np.arange(scene.width, dtype=np.float64) - cam.cx) / cam.f
    v = -(np.arange(scene.height, dtype=np.float64) - cam.cy) / cam.f
    uu, vv = np.meshgrid(u, v)
    return np.stack([uu, vv, np.ones_like(uu)])


def _view(scene: Scene, t: int, cam_rays: np.ndarray) -> _View:
    cam = scene.camera
    rot = cam.rotation(t)
    rays = np.einsum("ij,jhw->ihw", rot, cam_rays)
    return _View(pos=cam.pos[t].copy(), rot=rot, rays=rays, du=rot[:, 0] / cam.f, dv=-rot[:, 1] / cam.f)


def _project(scene: Scene, view: _View, pts: np.ndarray, direction: bool = False) -> tuple[np.ndarray, ...]:
    """World points (3, N) (or directions) → pixel u, v and camera depth (projection clamped in front)."""
    pc = view.rot.T @ (pts if direction else pts - view.pos[:, None])
    depth = pc[2]
    z = np.maximum(depth, 1e-6 if direction else NEAR)
    cam = scene.camera
    return cam.cx + cam.f * pc[0] / z, cam.cy - cam.f * pc[1] / z, depth


_BOX_EDGES = np.array([(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1])
_QUAD_EDGES = np.array([(0, 1), (1, 3), (3, 2), (2, 0)])


def _screen_boxes(scene: Scene, view: _View, corners: np.ndarray, edges: np.ndarray,
                  width: np.ndarray) -> np.ndarray:
    """Screen rectangles (N, 4) rows y0:y1, cols x0:x1 covering the convex objects with ``corners`` (N, K, 3)
    joined by ``edges`` (E, 2), clipped to the near plane; empty (y0 == y1) when out of view, farther than
    FAR_OBJECTS or, at ``width`` metres wide, narrower than MIN_OBJECT_PX."""
    n, k, _ = corners.shape
    h, w = scene.height, scene.width
    if n == 0:
        return np.zeros((0, 4), dtype=np.int64)
    rel = (corners - view.pos) @ view.rot  # camera coordinates (N, K, 3)
    depth = rel[..., 2]
    a, b = rel[:, edges[:, 0]], rel[:, edges[:, 1]]  # (N, E, 3)
    da, db = depth[:, edges[:, 0]], depth[:, edges[:, 1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (NEAR - da) / (db - da)
    cross = (s > 0) & (s < 1)
    pts = np.concatenate([rel, a + np.where(cross, s, 0.0)[..., None] * (b - a)], axis=1)
    keep = np.concatenate([depth >= NEAR, cross], axis=1)
    z = np.maximum(pts[..., 2], NEAR)
    cam = scene.camera
    u = cam.cx + cam.f * pts[..., 0] / z
    v = cam.cy - cam.f * pts[..., 1] / z
    lo_u = np.clip(np.floor(np.where(keep, u, np.inf).min(1)) - 1, 0, w)
    hi_u = np.clip(np.ceil(np.where(keep, u, -np.inf).max(1)) + 2, 0, w)
    lo_v = np.clip(np.floor(np.where(keep, v, np.inf).min(1)) - 1, 0, h)
    hi_v = np.clip(np.ceil(np.where(keep, v, -np.inf).max(1)) + 2, 0, h)
    limit = np.minimum(FAR_OBJECTS, cam.f * width / MIN_OBJECT_PX)
    gone = ~keep.any(1) | (depth.min(1) > limit) | (lo_u >= hi_u) | (lo_v >= hi_v)
    out = np.stack([lo_v, hi_v, lo_u, hi_u], axis=1)
    out[gone] = 0
    return out.astype(np.int64)


def _box_pixels(boxes: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel indices inside each screen box (N, 4) and the box they belong to (concatenated)."""
    rows = np.maximum(boxes[:, 1] - boxes[:, 0], 0)
    cols = np.maximum(boxes[:, 3] - boxes[:, 2], 0)
    area = rows * cols
    obj = np.repeat(np.arange(len(boxes)), area)
    local = np.arange(int(area.sum())) - np.repeat(np.cumsum(area) - area, area)
    width = cols[obj]
    return (boxes[obj, 0] + local // width) * w + boxes[obj, 2] + local % width, obj


def _footprint(t: np.ndarray, d: np.ndarray, axis: np.ndarray, view: _View) -> np.ndarray:
    """World extent (3, N) along x, y, z of each pixel's footprint on its plane (normal ``axis``, hit at depth t),
    times the prefilter width."""
    dn = np.take_along_axis(d, axis[None], 0)[0]
    pu = t * (view.du[:, None] - d * (view.du[axis] / dn))
    pv = t * (view.dv[:, None] - d * (view.dv[axis] / dn))
    return np.maximum((np.abs(pu) + np.abs(pv)) * BLUR, 1e-4)


# -- per-scene tables (so that trees and cars are shaded in one vectorised pass) ---------------------------------
@dataclass
class _Tables:
    tree: dict[str, np.ndarray]
    car: dict[str, np.ndarray]
    building: dict[str, np.ndarray]  # the buildings of all facades, concatenated
    first: list[int]  # index of each facade's first building in ``building``


def _tables(scene: Scene) -> _Tables:
    trees = scene.trees
    tree = {
        "x": np.array([tr.x for tr in trees]), "z": np.array([tr.z for tr in trees]),
        "rx": np.array([tr.crown_rx for tr in trees]), "ry": np.array([tr.crown_ry for tr in trees]),
        "cy": np.array([tr.crown_y for tr in trees]), "tw": np.array([tr.trunk_w for tr in trees]),
        "color": np.array([tr.color for tr in trees]).reshape(-1, 3),
        "wobble": np.array([tr.wobble for tr in trees]).reshape(-1, 4),
    }
    cars = scene.cars
    car: dict[str, np.ndarray] = {name: np.array([getattr(c, name) for c in cars], dtype=np.float64)
                                  for name in ("x", "z0", "speed", "length", "width", "body_h", "cabin_h",
                                               "cabin_front", "cabin_back")}
    car["color"] = np.array([c.color for c in cars]).reshape(-1, 3)
    car["lights_red"] = np.array([c.lights_red for c in cars], dtype=bool)
    car["k"] = np.array([c.k for c in cars], dtype=np.int64)
    facs = scene.facades
    building = {name: np.concatenate([getattr(f, name) for f in facs])
                for name in ("height", "color", "floor_h", "win_period", "win_w", "win_h", "win_sill", "shop",
                             "glass", "lit_seed")}
    building["z0"] = np.concatenate([f.z0[:-1] for f in facs])
    building["z1"] = np.concatenate([f.z0[1:] for f in facs])
    building["facade"] = np.concatenate([np.full(len(f.height), i) for i, f in enumerate(facs)])
    building["normal"] = np.concatenate([np.full(len(f.height), f.normal) for f in facs])
    first = np.cumsum([0] + [len(f.height) for f in facs])[:-1].tolist()
    return _Tables(tree=tree, car=car, building=building, first=first)


def _car_boxes(car: dict[str, np.ndarray], t: int) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) corners, each (N, 2, 3): body and cabin box of every car at frame ``t``."""
    zc = car["z0"] + car["speed"] * t
    hw, hl, x = car["width"] / 2, car["length"] / 2, car["x"]
    zero = np.zeros_like(x)
    body_min = np.stack([x - hw, zero, zc - hl], -1)
    body_max = np.stack([x + hw, car["body_h"], zc + hl], -1)
    cab_min = np.stack([x - hw + 0.1, car["body_h"], zc - hl + car["cabin_back"]], -1)
    cab_max = np.stack([x + hw - 0.1, car["cabin_h"], zc + hl - car["cabin_front"]], -1)
    return np.stack([body_min, cab_min], 1), np.stack([body_max, cab_max], 1)


# -- z-buffer pass -----------------------------------------------------------------------------------------------
def _keep_nearer(depth: np.ndarray, sid: np.ndarray, t: np.ndarray, ids: int) -> None:
    """z-buffer update of the flat buffers with a candidate depth for every pixel."""
    closer = t < depth
    depth[closer] = t[closer]
    sid[closer] = ids


def _keep_nearer_at(depth: np.ndarray, sid: np.ndarray, pix: np.ndarray, t: np.ndarray, ids: np.ndarray) -> None:
    """z-buffer update at flat indices ``pix``, which may repeat: the nearest candidate of each pixel wins."""
    hit = np.isfinite(t)
    pix, t, ids = pix[hit], t[hit], ids[hit]
    order = np.lexsort((t, pix))
    pix, t, ids = pix[order], t[order], ids[order]
    first = np.ones(pix.size, dtype=bool)
    first[1:] = pix[1:] != pix[:-1]
    pix, t, ids = pix[first], t[first], ids[first]
    closer = t < depth[pix]
    depth[pix[closer]] = t[closer]
    sid[pix[closer]] = ids[closer]


def _facade_hit(fac: Facade, pos: np.ndarray, d: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (fac.x - pos[0]) / d[0]
    t = np.where(np.isfinite(t) & (t > NEAR), t, np.inf)
    y = pos[1] + t * d[1]
    z = pos[2] + t * d[2]
    n = len(fac.height)
    idx = np.searchsorted(fac.z0, z, side="right") - 1
    height = fac.height[np.clip(idx, 0, n - 1)]
    return np.where((idx >= 0) & (idx < n) & (y >= 0) & (y < height), t, np.inf)


def _tree_shape(lx: np.ndarray, ly: np.ndarray, rx: Any, ry: Any, cy: Any, trunk_w: Any,
                wobble: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(crown mask, trunk mask, crown radius at the pixel's angle) in a billboard's coordinates; parameters are
    scalars (one tree) or per-pixel arrays (many trees); ``wobble`` is (4,) or (4, N)."""
    dx = lx / rx
    dy = (ly - cy) / ry
    ang = np.arctan2(dy, dx)
    rlim = 1 + wobble[0] * np.sin(5 * ang + wobble[1]) + wobble[2] * np.sin(9 * ang + wobble[3])
    crown = np.hypot(dx, dy) < rlim
    trunk = (np.abs(lx) < trunk_w / 2) & (ly >= 0) & (ly < cy) & ~crown
    return crown, trunk, rlim


def _tree_hit(tree: dict[str, np.ndarray], ti: np.ndarray, pos: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Depth at which rays d (3, M) meet billboards ``ti`` (M,); inf on a miss."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (tree["z"][ti] - pos[2]) / d[2]
    t = np.where(np.isfinite(t) & (t > NEAR), t, np.inf)
    lx = pos[0] + t * d[0] - tree["x"][ti]
    ly = pos[1] + t * d[1]
    crown, trunk, _ = _tree_shape(lx, ly, tree["rx"][ti], tree["ry"][ti], tree["cy"][ti], tree["tw"][ti],
                                  tree["wobble"][ti].T)
    return np.where(crown | trunk, t, np.inf)


def _boxes_hit(bmin: np.ndarray, bmax: np.ndarray, pos: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slab test of rays d (3, M) against per-ray box pairs (M, B, 3): nearest (depth, 6 * box + face), depth inf
    on a miss; face = 2 * axis + 1 for the max face."""
    dd = np.where(np.abs(d) < 1e-12, 1e-12, d).T[:, None, :]  # (M, 1, 3)
    t1 = (bmin - pos) / dd
    t2 = (bmax - pos) / dd
    tmin = np.minimum(t1, t2)
    tnear = tmin.max(axis=2)
    tfar = np.maximum(t1, t2).min(axis=2)
    depth = np.where((tnear <= tfar) & (tnear > NEAR), tnear, np.inf)  # (M, B)
    best = depth.argmin(axis=1)
    rows = np.arange(best.size)
    ax = tmin[rows, best].argmax(axis=1)
    face = 2 * ax + (dd[rows, 0, ax] < 0)
    return depth[rows, best], 6 * best + face


# -- lighting ----------------------------------------------------------------------------------------------------
def _sun_visibility(scene: Scene, p: np.ndarray) -> np.ndarray:
    """Fraction of the sun seen from world points (3, N) past the near buildings (soft street-canyon shadows)."""
    s = scene.light.sun
    if abs(s[0]) < 1e-4:
        return np.ones(p.shape[1])
    fac = scene.facades[1] if s[0] > 0 else scene.facades[0]
    t = (fac.x - p[0]) / s[0]
    y = p[1] + t * s[1]
    z = p[2] + t * s[2]
    soft = 0.15 + 0.012 * np.abs(t)  # penumbra widens with the distance to the occluder
    n = len(fac.height)
    idx = np.searchsorted(fac.z0, z, side="right") - 1
    occ = np.zeros_like(z)
    for off in (-1, 0, 1):
        j = idx + off
        jc = np.clip(j, 0, n - 1)
        cover = _box_interval(z, soft, fac.z0[jc], fac.z0[jc + 1])
        occ += np.where((j >= 0) & (j < n), cover * np.clip((fac.height[jc] - y) / soft + 0.5, 0.0, 1.0), 0.0)
    return np.where(t >= 0, 1.0 - np.clip(occ, 0.0, 1.0), 1.0)


@dataclass
class _Surface:
    """Shading inputs of a group of pixels."""

    albedo: np.ndarray  # (3, n)
    normal: np.ndarray  # (3, n) or (3,)
    label: np.ndarray  # (n,)
    ao: Any = 1.0  # ambient occlusion factor
    shadow: Any = 1.0  # extra factor on the sun (car shadows)
    emit: Any = 0.0  # (3, n) radiance added after lighting (lamps, lit windows)


# A pixel whose lighting changed by more than this since the previous frame (a moving shadow edge crossed it) gets
# zero flow confidence: its colour is not carried over by the motion. Lighting is ~0.4..1.2, albedo < 1.
_LIGHT_CHANGE = 0.01


def _ground(scene: Scene, p: np.ndarray, fp: np.ndarray) -> _Surface:
    road = scene.road
    x, z, fx, fz = p[0], p[2], fp[0], fp[2]
    cov_road = _box_interval(x, fx, -road.half, road.half)
    cov_curb = (_box_interval(x, fx, road.half, road.half + road.curb_w)
                + _box_interval(x, fx, -road.half - road.curb_w, -road.half))
    cov_walk = np.clip(1.0 - cov_road - cov_curb, 0.0, 1.0)

    # each pattern is evaluated only where it can be non-zero (the ground is most of the frame)
    albedo = cov_curb * _CURB[:, None]
    on_road = np.flatnonzero(cov_road > 0)
    xr, zr, fxr, fzr = x[on_road], z[on_road], fx[on_road], fz[on_road]
    asphalt = road.asphalt[:, None] * (1 + 0.08 * _noise(xr, zr, fxr, fzr, scene.waves["asphalt"]))
    sig = np.sqrt(0.3**2 + (fxr / 2) ** 2)
    for xt in road.tracks:  # tyre tracks: Gaussian bands, widened by the (Gaussian) prefilter
        sel = np.flatnonzero(np.abs(xr - xt) < 4 * sig)
        asphalt[:, sel] *= 1 - 0.12 * (0.3 / sig[sel]) * np.exp(-0.5 * ((xr[sel] - xt) / sig[sel]) ** 2)
    mark_r = np.zeros_like(xr)
    yellow = np.zeros_like(xr)
    for x0, x1, period, dash, is_yellow in road.lines:
        sel = np.flatnonzero((xr + fxr / 2 > x0) & (xr - fxr / 2 < x1))
        cov = _box_interval(xr[sel], fxr[sel], x0, x1)
        if period > 0:
            cov = cov * _box_periodic(zr[sel], fzr[sel], period, dash, 0.0)
        mark_r[sel] += cov
        if is_yellow:
            yellow[sel] += cov
    for zc in road.crosswalks:
        sel = np.flatnonzero((zr + fzr / 2 > zc) & (zr - fzr / 2 < zc + 3.0))
        mark_r[sel] += (_box_interval(zr[sel], fzr[sel], zc, zc + 3.0)
                        * _box_periodic(xr[sel], fxr[sel], 1.0, 0.5, 0.25)
                        * _box_interval(xr[sel], fxr[sel], -road.half + 0.4, road.half - 0.4))
    mark_r = np.clip(mark_r, 0.0, 1.0)
    yfrac = np.clip(yellow / np.maximum(mark_r, 1e-6), 0.0, 1.0)
    road_alb = asphalt * (1 - mark_r) + (_WHITE[:, None] * (1 - yfrac) + _YELLOW[:, None] * yfrac) * mark_r
    albedo[:, on_road] += cov_road[on_road] * road_alb
    mark = np.zeros_like(x)
    mark[on_road] = mark_r

    on_walk = np.flatnonzero(cov_walk > 0)
    xw, zw, fxw, fzw = x[on_walk], z[on_walk], fx[on_walk], fz[on_walk]
    grout = 1 - (_box_periodic(xw, fxw, road.tile, road.tile - 0.04, 0.02)
                 * _box_periodic(zw, fzw, road.tile, road.tile - 0.04, 0.02))
    walk_alb = (road.sidewalk[:, None] * (1 + 0.06 * _noise(xw, zw, fxw, fzw, scene.waves["sidewalk"]))
                * (1 - 0.28 * grout))
    albedo[:, on_walk] += cov_walk[on_walk] * walk_alb
    label = np.where(cov_road >= 0.5, np.where(mark >= 0.5, CLASS_ID["lane_marking"], CLASS_ID["road"]),
                     np.where(cov_curb >= cov_walk, CLASS_ID["curb"], CLASS_ID["sidewalk"]))

    return _Surface(albedo, np.array([0.0, 1.0, 0.0]), label)


def _car_shadows(scene: Scene, x: np.ndarray, z: np.ndarray, foot: np.ndarray, by_z: np.ndarray, bmin: np.ndarray,
                 bmax: np.ndarray, cars: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sun factor, ambient factor) on ground points (x, z) from the cars ``cars`` with boxes (bmin, bmax): a soft
    shadow (the car's base swept away from the sun by its height) and contact darkening under the car.
    ``by_z`` sorts the points by z; all (point, car) pairs near each other are evaluated in one batch."""
    shadow = np.ones_like(x)
    ao = np.ones_like(x)
    if cars.size == 0 or x.size == 0:
        return shadow, ao
    sun = scene.light.sun
    flat = math.hypot(sun[0], sun[2])
    away = -np.array([sun[0], sun[2]]) / flat * min(6.0, 1.0 / max(sun[1], 0.15)) if flat > 1e-6 else np.zeros(2)
    lo, hi, top = bmin[cars, 0], bmax[cars, 0], bmax[cars, 1, 1]
    reach = top * math.hypot(*away) + 1.0
    z_sorted = z[by_z]
    first = np.searchsorted(z_sorted, lo[:, 2] - reach)
    count = np.searchsorted(z_sorted, hi[:, 2] + reach) - first
    owner = np.repeat(np.arange(cars.size), count)
    pix = by_z[np.arange(count.sum()) + np.repeat(first - np.cumsum(count) + count, count)]
    near = (x[pix] > lo[owner, 0] - reach[owner]) & (x[pix] < hi[owner, 0] + reach[owner])
    pix, owner = pix[near], owner[near]
    xs, zs, fs = x[pix], z[pix], foot[pix]
    lo, hi, top = lo[owner], hi[owner], top[owner]
    x0, x1, z0, z1 = lo[:, 0] + 0.1, hi[:, 0] - 0.1, lo[:, 2] + 0.2, hi[:, 2] - 0.2
    best = np.full(xs.shape, -np.inf)
    for k in (0.0, 1 / 6, 2 / 6, 3 / 6, 4 / 6, 5 / 6, 1.0):  # the sweep, sampled (the margin is concave in k)
        ox, oz = k * top * away[0], k * top * away[1]
        m = np.minimum(np.minimum(xs - ox - x0, x1 - xs + ox), np.minimum(zs - oz - z0, z1 - zs + oz))
        best = np.maximum(best, m)
    np.multiply.at(shadow, pix, 1 - 0.9 * np.clip(best / (0.25 + fs) + 0.5, 0.0, 1.0))
    m0 = np.minimum(np.minimum(xs - lo[:, 0] + 0.25, hi[:, 0] + 0.25 - xs),
                    np.minimum(zs - lo[:, 2] + 0.25, hi[:, 2] + 0.25 - zs))
    np.multiply.at(ao, pix, 1 - 0.6 * np.clip(m0 / (0.5 + fs) + 0.5, 0.0, 1.0))
    return shadow, ao


def _facade(scene: Scene, bld: dict[str, np.ndarray], idx: np.ndarray, p: np.ndarray, fp: np.ndarray) -> _Surface:
    """Facade pixels of all facades at once; ``idx`` is each pixel's building in the concatenated table."""
    z, y, fz, fy = p[2], p[1], fp[2], fp[1]
    z0, z1, hb = bld["z0"][idx], bld["z1"][idx], bld["height"][idx]
    fh, period, ww, wh, sill = (bld[k][idx] for k in ("floor_h", "win_period", "win_w", "win_h", "win_sill"))

    wall = np.zeros((3, z.size))
    n = len(bld["height"])
    for off in (-1, 0, 1):  # wall colour prefiltered across building edges too
        j = np.clip(idx + off, 0, n - 1)
        cover = np.where(bld["facade"][j] == bld["facade"][idx], _box_interval(z, fz, bld["z0"][j], bld["z1"][j]),
                         0.0)
        wall += bld["color"][j].T * cover
    wall *= 1 + 0.07 * _noise(z, y, fz, fy, scene.waves["wall"])
    ledge = _box_periodic(y, fy, fh, 0.2, fh - 0.2) * _box_interval(y, fy, fh - 0.5, hb - 0.5)
    cornice = _box_interval(y, fy, hb - 0.45, hb + 1.0)
    wall *= 1 - 0.2 * np.clip(ledge + cornice, 0.0, 1.0)

    phase = z0 + 0.7
    windows = (_box_periodic(z, fz, period, ww, phase) * _box_interval(z, fz, z0 + 0.7, z1 - 0.7)
               * _box_periodic(y, fy, fh, wh, sill) * _box_interval(y, fy, fh, hb - 0.9))
    glass_cov = windows
    shop = np.flatnonzero(bld["shop"][idx] & (y < 3.0))  # ground-floor shop windows
    if shop.size:
        ys, fys, zs, fzs = y[shop], fy[shop], z[shop], fz[shop]
        glass_cov = windows.copy()
        glass_cov[shop] += (_box_interval(ys, fys, 0.45, np.minimum(2.7, fh[shop] - 0.35))
                            * _box_periodic(zs, fzs, 4.6, 3.4, z0[shop] + 0.9)
                            * _box_interval(zs, fzs, z0[shop] + 0.9, z1[shop] - 0.9))
        glass_cov = np.clip(glass_cov, 0.0, 1.0)
    frac = np.clip(np.mod(y - sill, fh) / wh, 0.0, 1.0)
    glass = bld["glass"][idx].T * (0.75 + 0.6 * frac)  # brighter towards the top: reflected sky
    albedo = wall * (1 - glass_cov) + glass * glass_cov
    label = np.where(glass_cov >= 0.5, CLASS_ID["window"], CLASS_ID["building"])

    emit: Any = 0.0
    if scene.light.lit_windows > 0:  # evenings: some windows glow (emissive, so constant over time)
        col = np.floor((z - phase + (period - ww) / 2) / period)
        row = np.floor((y - sill + (fh - wh) / 2) / fh)
        h = np.mod(np.sin(col * 12.9898 + row * 78.233 + bld["lit_seed"][idx]) * 43758.5453, 1.0)
        share = scene.light.lit_windows
        # per-window choice, faded to the lit share where the window grid itself fades (see _box_periodic)
        keep = np.clip(np.minimum(period / fz, fh / fy) - 2.0, 0.0, 1.0)
        lit = share + ((h < share) - share) * keep
        emit = np.array([0.9, 0.7, 0.4])[:, None] * (windows * lit)
    normal = np.zeros((3, z.size))
    normal[0] = bld["normal"][idx]
    return _Surface(albedo, normal, label, ao=0.9, emit=emit)


def _tree(scene: Scene, tree: dict[str, np.ndarray], ti: np.ndarray, p: np.ndarray, fp: np.ndarray) -> _Surface:
    rx, ry, cy, tw = tree["rx"][ti], tree["ry"][ti], tree["cy"][ti], tree["tw"][ti]
    lx, ly, fx, fy = p[0] - tree["x"][ti], p[1], fp[0], fp[1]
    crown, _, rlim = _tree_shape(lx, ly, rx, ry, cy, tw, tree["wobble"][ti].T)
    nx = np.clip(lx / rx / rlim, -1, 1)
    ny = np.clip((ly - cy) / ry / rlim, -1, 1)
    nz = -np.sqrt(np.clip(1 - nx**2 - ny**2, 0.0, 1.0))  # a sphere bulging towards the camera (-z)
    leaves = tree["color"][ti].T * (1 + 0.28 * _noise(lx, ly, fx, fy, scene.waves["foliage"]))
    tx = np.clip(2 * lx / tw, -1, 1)
    trunk_n = np.stack([tx, np.zeros_like(tx), -np.sqrt(1 - tx**2)])
    albedo = np.where(crown, leaves, np.array([0.30, 0.22, 0.15])[:, None])
    normal = np.where(crown, np.stack([nx, ny, nz]), trunk_n)
    ao = np.where(crown, 0.55 + 0.45 * (0.5 + 0.5 * ny), 0.8)
    return _Surface(albedo, normal, np.where(crown, CLASS_ID["tree"], CLASS_ID["trunk"]), ao=ao)


def _car(car: dict[str, np.ndarray], ci: np.ndarray, local: np.ndarray, t: int, p: np.ndarray,
         fp: np.ndarray) -> _Surface:
    box, face = local // 6, local % 6
    axis, side = face // 2, face % 2
    zc = car["z0"][ci] + car["speed"][ci] * t
    hw, hl = car["width"][ci] / 2, car["length"][ci] / 2
    body_h, cabin_h = car["body_h"][ci], car["cabin_h"][ci]
    lx, ly, lz = p[0] - car["x"][ci], p[1], p[2] - zc
    fx, fy, fz = fp[0], fp[1], fp[2]
    paint = car["color"][ci].T
    albedo = paint.copy()

    body = box == 0
    # the ends of the body: lamps (tail lights on the -z end of cars going our way), plate, bumper
    ends = body & (axis == 2)
    lamp = _box_interval(np.abs(lx), fx, hw - 0.4, hw - 0.06) * _box_interval(ly, fy, 0.62, 0.8)
    plate = _box_interval(lx, fx, -0.26, 0.26) * _box_interval(ly, fy, 0.34, 0.48)
    bumper = _box_interval(ly, fy, -1.0, 0.3)
    red = (side == 0) == car["lights_red"][ci]
    lamp_col = np.where(red, np.array([0.75, 0.05, 0.04])[:, None], np.array([0.95, 0.93, 0.85])[:, None])
    end_alb = paint * (1 - bumper) + _DARK[:, None] * bumper
    end_alb = end_alb * (1 - plate) + 0.9 * plate
    end_alb = end_alb * (1 - lamp) + lamp_col * lamp
    albedo = np.where(ends, end_alb, albedo)
    emit = np.where(ends, lamp_col * lamp * 0.25, 0.0)
    # the sides of the body: wheels and a dark sill
    wheel = np.zeros_like(lx)
    for sign in (-1.0, 1.0):
        dist = np.hypot(lz - sign * (hl - 0.85), ly - 0.34)
        wheel = np.maximum(wheel, np.clip((0.34 - dist) / np.maximum(fz, fy) + 0.5, 0.0, 1.0))
    sill = np.maximum(wheel, _box_interval(ly, fy, -1.0, 0.2))
    albedo = np.where(body & (axis == 0), paint * (1 - sill) + _DARK[:, None] * sill, albedo)
    # the cabin: glass framed by pillars; its roof is paint
    cabin = (box == 1) & (axis != 1)
    cab_mid = zc - hl + (car["cabin_back"][ci] + car["length"][ci] - car["cabin_front"][ci]) / 2
    cab_half = np.where(axis == 2, hw - 0.1, (car["length"][ci] - car["cabin_front"][ci] - car["cabin_back"][ci]) / 2)
    across = np.where(axis == 2, lx, p[2] - cab_mid)
    glass = (_box_interval(across, np.where(axis == 2, fx, fz), -cab_half + 0.1, cab_half - 0.1)
             * _box_interval(ly, fy, body_h + 0.05, cabin_h - 0.06))
    shine = 0.7 + 0.8 * np.clip((ly - body_h) / (cabin_h - body_h), 0.0, 1.0)
    albedo = np.where(cabin, paint * (1 - glass) + np.array([0.07, 0.09, 0.12])[:, None] * shine * glass, albedo)

    normal = np.zeros((3, lx.size))
    np.put_along_axis(normal, axis[None], np.where(side == 1, 1.0, -1.0)[None], 0)
    label = np.full(lx.size, CLASS_ID["car"])
    return _Surface(albedo, normal, label, ao=0.85, emit=emit)


def _sky(scene: Scene, view: _View, d: np.ndarray) -> np.ndarray:
    """Radiance (3, N) of the sky in directions d (3, N): gradient, clouds, sun glow; only the direction matters."""
    light = scene.light
    norm = np.linalg.norm(d, axis=0)
    dn = d / norm
    e = dn[1]
    mix = 1 - np.exp(-np.maximum(e, 0.0) * 3.5)
    rad = light.sky_horizon[:, None] * (1 - mix) + light.sky_zenith[:, None] * mix
    if light.clouds > 0:
        up = np.maximum(e, 0.02)
        a, b = dn[0] / up, dn[2] / up  # coordinates on a cloud layer at infinity
        fa = np.zeros_like(a)
        fb = np.zeros_like(a)
        for dd in (view.du, view.dv):  # footprint: derivatives of (a, b) along u and v
            dd_n = (dd[:, None] - dn * np.tensordot(dd, dn, axes=(0, 0))) / norm
            fa += np.abs((dd_n[0] * up - dn[0] * dd_n[1]) / up**2)
            fb += np.abs((dd_n[2] * up - dn[2] * dd_n[1]) / up**2)
        n = _noise(a * 0.35, b * 0.35, fa * 0.35 * BLUR, fb * 0.35 * BLUR, scene.waves["clouds"])
        cloud = _smoothstep(0.1, 0.9, 0.45 * n + light.clouds - 0.45) * _smoothstep(0.03, 0.25, e)
        cloud_col = np.array([0.93, 0.93, 0.95])[:, None] * (0.8 + 0.2 * _smoothstep(-1, 1, n))
        rad = rad * (1 - cloud) + cloud_col * cloud
    c = np.tensordot(light.sun, dn, axes=(0, 0))
    return rad + light.sun_color[:, None] * (0.25 * np.exp((c - 1) / 0.02) + 1.2 * np.exp((c - 1) / 0.0006))


# -- frames ------------------------------------------------------------------------------------------------------
@dataclass
class _Raster:
    rgb: np.ndarray
    seg: np.ndarray
    inst: np.ndarray
    sid: np.ndarray  # (H, W) int32 surface ids
    src: np.ndarray  # (3, H*W) each pixel's point at frame t-1 (world), or its direction for the sky
    sky: np.ndarray  # (H*W,) bool
    changed: np.ndarray  # (H*W,) bool: shading differs from frame t-1 (moving shadows)


def _render(scene: Scene, tables: _Tables, t: int, cam_rays: np.ndarray) -> _Raster:
    h, w = scene.height, scene.width
    view = _view(scene, t, cam_rays)
    pos, rays = view.pos, view.rays
    depth = np.full(h * w, np.inf)
    flat_sid = np.zeros(h * w, dtype=np.int32)
    d = rays.reshape(3, -1)

    with np.errstate(divide="ignore", invalid="ignore"):
        tg = np.where(d[1] < -1e-9, -pos[1] / d[1], np.inf)
    _keep_nearer(depth, flat_sid, np.where(tg > NEAR, tg, np.inf), SID_GROUND)
    for i, fac in enumerate(scene.facades):
        _keep_nearer(depth, flat_sid, _facade_hit(fac, pos, d), SID_FACADE + i)
    # trees and cars: only the pixels of their screen rectangles, all objects in one vectorised batch
    tree = tables.tree
    rx, top = tree["rx"] * 1.25, tree["cy"] + tree["ry"] * 1.25
    tree_corners = np.stack([np.stack([tree["x"] + sx * rx, y, tree["z"]], -1)
                             for sx in (-1, 1) for y in (np.zeros_like(top), top)], 1)
    tpix, ti = _box_pixels(_screen_boxes(scene, view, tree_corners, _QUAD_EDGES, 2 * rx), w)
    _keep_nearer_at(depth, flat_sid, tpix, _tree_hit(tree, ti, pos, d[:, tpix]), SID_TREE + ti)
    bmin, bmax = _car_boxes(tables.car, t)
    lo, hi = bmin[:, 0], np.concatenate([bmax[:, 0, :1], bmax[:, 1, 1:2], bmax[:, 0, 2:]], 1)
    car_corners = np.stack([np.stack([xs[:, 0], ys[:, 1], zs[:, 2]], -1)
                            for xs in (lo, hi) for ys in (lo, hi) for zs in (lo, hi)], 1)
    car_boxes = _screen_boxes(scene, view, car_corners, _BOX_EDGES, tables.car["width"])
    cpix, ci = _box_pixels(car_boxes, w)
    tb, local = _boxes_hit(bmin[ci], bmax[ci], pos, d[:, cpix])
    _keep_nearer_at(depth, flat_sid, cpix, tb, SID_CAR + 16 * ci + local)
    seen = np.flatnonzero(car_boxes[:, 1] > car_boxes[:, 0])

    solid = np.flatnonzero(flat_sid != SID_SKY)
    sv = flat_sid[solid]
    tt = depth[solid]
    dd = d[:, solid]
    p = pos[:, None] + tt * dd
    is_tree = (sv >= SID_TREE) & (sv < SID_CAR)
    is_car = sv >= SID_CAR
    axis = np.where(sv == SID_GROUND, 1, np.where(is_tree, 2, 0))
    axis[is_car] = ((sv[is_car] - SID_CAR) % 16 % 6) // 2
    fp = _footprint(tt, dd, axis, view)
    vis = _sun_visibility(scene, p)

    rad = np.zeros((3, solid.size))
    seg = np.full(h * w, CLASS_ID["sky"], dtype=np.uint8)
    inst = np.zeros(h * w, dtype=np.uint16)
    src = p.copy()

    def apply(mask: np.ndarray, surf: _Surface) -> None:
        m = np.flatnonzero(mask)
        normal = surf.normal if surf.normal.ndim == 2 else surf.normal[:, None]
        ndotl = np.clip(np.einsum("i,in->n", light.sun, normal), 0.0, None)
        rad[:, m] = (surf.albedo * (light.ambient[:, None] * surf.ao
                                    + light.sun_color[:, None] * (ndotl * vis[m] * surf.shadow)) + surf.emit)
        seg[solid[m]] = surf.label

    changed = np.zeros(solid.size, dtype=bool)
    light = scene.light
    amb, sun_lum = float(light.ambient.mean()), float(light.sun_color.mean())
    ground = sv == SID_GROUND
    surf = _ground(scene, p[:, ground], fp[:, ground])
    xg, zg, foot = p[0, ground], p[2, ground], np.maximum(fp[0, ground], fp[2, ground])
    near_cars = seen[bmin[seen, 0, 2] - pos[2] < 60.0]
    by_z = np.argsort(zg, kind="stable")
    surf.shadow, surf.ao = _car_shadows(scene, xg, zg, foot, by_z, bmin, bmax, near_cars)
    if t > 0:  # the same ground points one frame earlier, with the cars where they were then
        pmin, pmax = _car_boxes(tables.car, t - 1)
        was_shadow, was_ao = _car_shadows(scene, xg, zg, foot, by_z, pmin, pmax, near_cars)
        sun_g = sun_lum * max(light.sun[1], 0.0) * vis[ground]
        changed[ground] = (np.abs(amb * (surf.ao - was_ao) + sun_g * (surf.shadow - was_shadow))
                           > _LIGHT_CHANGE)
    apply(ground, surf)
    is_facade = (sv >= SID_FACADE) & (sv < SID_FACADE + len(scene.facades))
    if is_facade.any():
        zf, which = p[2, is_facade], sv[is_facade] - SID_FACADE
        idx = np.zeros(zf.size, dtype=np.int64)
        for i, fac in enumerate(scene.facades):
            sel = which == i
            idx[sel] = tables.first[i] + np.clip(np.searchsorted(fac.z0, zf[sel], side="right") - 1, 0,
                                                 len(fac.height) - 1)
        apply(is_facade, _facade(scene, tables.building, idx, p[:, is_facade], fp[:, is_facade]))
    if is_tree.any():
        apply(is_tree, _tree(scene, tree, sv[is_tree] - SID_TREE, p[:, is_tree], fp[:, is_tree]))
    if is_car.any():
        ci = (sv[is_car] - SID_CAR) // 16
        surf_car = _car(tables.car, ci, (sv[is_car] - SID_CAR) % 16, t, p[:, is_car], fp[:, is_car])
        apply(is_car, surf_car)
        inst[solid[is_car]] = INSTANCE_FACTOR * CLASS_ID["car"] + tables.car["k"][ci]
        src[2, is_car] -= tables.car["speed"][ci]  # where the car's point was at t-1
        if t > 0:  # cars driving through the buildings' shadows
            ndotl = np.clip(np.einsum("i,in->n", light.sun, surf_car.normal), 0.0, None)
            was_vis = _sun_visibility(scene, src[:, is_car])
            changed[is_car] = sun_lum * ndotl * np.abs(vis[is_car] - was_vis) > _LIGHT_CHANGE

    haze = np.exp(-tt * np.linalg.norm(dd, axis=0) / scene.light.haze_dist)
    out = np.empty((3, h * w))
    out[:, solid] = rad * haze + scene.light.sky_horizon[:, None] * (1 - haze)
    sky = flat_sid == SID_SKY
    out[:, sky] = _sky(scene, view, d[:, sky])
    stuff = inst == 0
    inst[stuff] = seg[stuff]
    full_src = np.empty((3, h * w))
    full_src[:, solid] = src
    full_src[:, sky] = d[:, sky]
    full_changed = np.zeros(h * w, dtype=bool)
    full_changed[solid] = changed

    rgb = np.clip(np.floor(out * (255.0 * scene.light.exposure) + 0.5), 0, 255).astype(np.uint8)
    return _Raster(rgb=np.ascontiguousarray(rgb.T.reshape(h, w, 3)), seg=seg.reshape(h, w),
                   inst=inst.reshape(h, w), sid=flat_sid.reshape(h, w), src=full_src, sky=sky,
                   changed=full_changed)


def _flow(scene: Scene, cur: _Raster, prev_view: _View, prev_sid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact backward flow of ``cur`` to the previous frame and its occlusion confidence."""
    h, w = scene.height, scene.width
    u = np.empty(h * w)
    v = np.empty(h * w)
    ok = np.ones(h * w, dtype=bool)
    solid = ~cur.sky
    u[solid], v[solid], depth = _project(scene, prev_view, cur.src[:, solid])
    ok[solid] = depth >= NEAR
    u[cur.sky], v[cur.sky], dsky = _project(scene, prev_view, cur.src[:, cur.sky], direction=True)
    ok[cur.sky] = dsky > 1e-6
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    flow = np.stack([u.reshape(h, w) - gx, v.reshape(h, w) - gy], axis=-1)

    # the warp reads the four pixels around (u, v) in frame t-1: all must show this pixel's plane
    ok &= (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1) & ~cur.changed
    x0 = np.floor(np.clip(u, 0, w - 1)).astype(np.int64)
    y0 = np.floor(np.clip(v, 0, h - 1)).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    mine = cur.sid.reshape(-1)
    for yy, xx in ((y0, x0), (y0, x1), (y1, x0), (y1, x1)):
        ok &= prev_sid[yy, xx] == mine
    conf = np.where(ok, 255, 0).astype(np.uint8).reshape(h, w)
    return flow.astype(np.float32), conf


def iter_frames(seed: int, size: tuple[int, int], frames: int, index: int = 0,
                fps: float = DEFAULT_FPS) -> Iterator[WorldFrame]:
    """Render sequence ``index`` of world ``seed`` frame by frame (constant memory for long sequences)."""
    scene = make_scene(seed, index, size, frames, fps)
    tables = _tables(scene)
    cam_rays = _camera_rays(scene)
    prev_sid: np.ndarray | None = None
    for t in range(frames):
        cur = _render(scene, tables, t, cam_rays)
        if prev_sid is None:
            flow = np.zeros((scene.height, scene.width, 2), dtype=np.float32)
            conf = np.zeros((scene.height, scene.width), dtype=np.uint8)
        else:
            flow, conf = _flow(scene, cur, _view(scene, t - 1, cam_rays), prev_sid)
        yield WorldFrame(rgb=cur.rgb, seg=cur.seg, inst=cur.inst, flow=flow, conf=conf)
        prev_sid = cur.sid


def render_sequence(seed: int, size: tuple[int, int], frames: int, index: int = 0,
                    fps: float = DEFAULT_FPS) -> WorldSequence:
    """Render sequence ``index`` of world ``seed`` at ``size`` (W, H): frames, labels, instances, exact flow.

    The same (seed, index, size, frames, fps) always gives the same arrays.
    """
    out = list(iter_frames(seed, size, frames, index, fps))
    w, h = size
    empty = (0, h, w)
    return WorldSequence(
        frames=np.stack([f.rgb for f in out]) if out else np.zeros(empty + (3,), np.uint8),
        seg=np.stack([f.seg for f in out]) if out else np.zeros(empty, np.uint8),
        inst=np.stack([f.inst for f in out]) if out else np.zeros(empty, np.uint16),
        flow=np.stack([f.flow for f in out]) if out else np.zeros(empty + (2,), np.float32),
        conf=np.stack([f.conf for f in out]) if out else np.zeros(empty, np.uint8),
        fps=float(fps),
        options={"seed": int(seed), "index": int(index), "size": [int(w), int(h)], "frames": int(frames),
                 "fps": float(fps)},
    )
