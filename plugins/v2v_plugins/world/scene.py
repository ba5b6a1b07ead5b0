"""Random street scenes of the synthetic world: the label set, the scene description and its random draw.

A scene is a 2.5D street canyon in world metres (x right, y up, z along the street): a ground plane (road, curb,
sidewalk), one row of building facades on each side (planes x = const) and a row of taller far buildings behind
each, tree billboards (planes z = const), cars as pairs of axis-aligned boxes (body + cabin) driving along z, a sky
at infinity, a sun, and a camera path (forward motion, lateral sway, yaw panning). Every object's motion between
frames is a known rigid transform, which is what lets :mod:`.render` write the exact flow.

Everything here is drawn from one ``numpy.random.Generator`` seeded by ``(seed, index)``, so a scene depends only
on those two numbers, the frame count and the frame rate (the layout covers the camera's whole travel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from v2vcli.data.layout import LabelClass, LabelSet

__all__ = [
    "WORLD_CLASSES",
    "CLASS_ID",
    "FOREGROUND_CLASSES",
    "INSTANCE_FACTOR",
    "world_label_set",
    "Facade",
    "Car",
    "Tree",
    "Lighting",
    "Road",
    "CameraPath",
    "Scene",
    "make_scene",
]

# (name, palette colour); the id is the position. Cityscapes colours where Cityscapes has the class.
WORLD_CLASSES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("sky", (70, 130, 180)),
    ("road", (128, 64, 128)),
    ("lane_marking", (255, 255, 255)),
    ("sidewalk", (244, 35, 232)),
    ("curb", (196, 196, 196)),
    ("building", (70, 70, 70)),
    ("window", (0, 170, 230)),
    ("tree", (107, 142, 35)),
    ("trunk", (150, 100, 50)),
    ("car", (0, 0, 142)),
)
CLASS_ID: dict[str, int] = {name: i for i, (name, _) in enumerate(WORLD_CLASSES)}
FOREGROUND_CLASSES: tuple[str, ...] = ("car",)
# Instance ids follow the Cityscapes convention: stuff pixels hold their class id, car k holds 1000 * car_id + k.
INSTANCE_FACTOR = 1000


def world_label_set() -> LabelSet:
    """The named label set of the synthetic world (written to meta/seg.json)."""
    return LabelSet("world", [LabelClass(i, name, color) for i, (name, color) in enumerate(WORLD_CLASSES)])


# -- scene description -------------------------------------------------------------------------------------------
@dataclass
class Facade:
    """One row of buildings on one side: the plane x = ``x``; building i spans z in [z0[i], z0[i+1])."""

    x: float
    normal: float  # x component of the facade's normal (it faces the street: +1 on the left, -1 on the right)
    z0: np.ndarray  # (N + 1,) building edges along z, increasing
    height: np.ndarray  # (N,)
    color: np.ndarray  # (N, 3) wall albedo
    floor_h: np.ndarray  # (N,) storey height
    win_period: np.ndarray  # (N,) window spacing along z
    win_w: np.ndarray  # (N,) window width
    win_h: np.ndarray  # (N,) window height
    win_sill: np.ndarray  # (N,) window bottom above its storey's floor
    shop: np.ndarray  # (N,) bool: shop windows on the ground floor
    glass: np.ndarray  # (N, 3) glass albedo
    lit_seed: np.ndarray  # (N,) per-building hash seed for lit windows (evenings)
    far: bool = False  # the far row: no ground-floor shops, hazier


@dataclass
class Car:
    """A car: body box + cabin box, centred at x, moving along z at ``speed`` metres per frame."""

    k: int  # instance number (1-based) within the sequence
    x: float
    z0: float  # centre z at frame 0
    speed: float  # metres per frame along +z (negative: oncoming)
    length: float
    width: float
    body_h: float
    cabin_h: float  # top of the cabin
    cabin_front: float  # cabin inset from the +z end
    cabin_back: float  # cabin inset from the -z end
    color: np.ndarray  # (3,)
    lights_red: bool  # the camera-facing (-z) end shows tail lights (same direction) or headlights (oncoming)

    def zc(self, t: int) -> float:
        return self.z0 + self.speed * t

    def boxes(self, t: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """((body min, body max), (cabin min, cabin max)) at frame ``t``; each a (3,) array."""
        zc, hw, hl = self.zc(t), self.width / 2, self.length / 2
        body = (np.array([self.x - hw, 0.0, zc - hl]), np.array([self.x + hw, self.body_h, zc + hl]))
        inset = 0.1
        cabin = (np.array([self.x - hw + inset, self.body_h, zc - hl + self.cabin_back]),
                 np.array([self.x + hw - inset, self.cabin_h, zc + hl - self.cabin_front]))
        return body, cabin


@dataclass
class Tree:
    """A tree billboard in the plane z = ``z``: a trunk and a wobbly elliptic crown."""

    x: float
    z: float
    crown_rx: float
    crown_ry: float
    crown_y: float  # crown centre height
    trunk_w: float
    color: np.ndarray  # (3,) foliage albedo
    wobble: np.ndarray  # (4,) amplitude, phase of two angular harmonics


@dataclass
class Lighting:
    sun: np.ndarray  # (3,) unit vector towards the sun
    sun_color: np.ndarray  # (3,) direct radiance
    ambient: np.ndarray  # (3,) sky light
    sky_horizon: np.ndarray  # (3,)
    sky_zenith: np.ndarray  # (3,)
    haze_dist: float  # metres at which haze reaches 1 - 1/e
    exposure: float
    clouds: float  # cloud cover 0..1
    lit_windows: float  # fraction of windows lit (evenings)


@dataclass
class Road:
    half: float  # x of the curb on each side
    curb_w: float
    facade_x: float  # x of the near facades
    lines: list[tuple[float, float, float, float, bool]]  # (x0, x1, period, dash, yellow)
    crosswalks: list[float]  # z of zebra crossings
    asphalt: np.ndarray  # (3,)
    sidewalk: np.ndarray  # (3,)
    tile: float  # sidewalk tile size
    tracks: list[float]  # x of tyre tracks (darker bands)


@dataclass
class CameraPath:
    """Pinhole camera per frame: position (T, 3), yaw and pitch (T,) in radians; intrinsics in pixels."""

    pos: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    f: float
    cx: float
    cy: float

    def rotation(self, t: int) -> np.ndarray:
        """Camera→world rotation (3, 3); camera axes x right, y up, z forward."""
        cy_, sy_ = math.cos(self.yaw[t]), math.sin(self.yaw[t])
        cp, sp = math.cos(self.pitch[t]), math.sin(self.pitch[t])
        ry = np.array([[cy_, 0.0, sy_], [0.0, 1.0, 0.0], [-sy_, 0.0, cy_]])
        rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, sp], [0.0, -sp, cp]])  # positive pitch looks down
        return ry @ rx


@dataclass
class Scene:
    width: int
    height: int
    frames: int
    fps: float
    road: Road
    facades: list[Facade]  # left, right, far left, far right
    trees: list[Tree]
    cars: list[Car]
    light: Lighting
    camera: CameraPath
    waves: dict[str, np.ndarray] = field(default_factory=dict)  # band-limited noise: (n, 4) ka, kb, phase, amp
    options: dict[str, Any] = field(default_factory=dict)


# -- random draw -------------------------------------------------------------------------------------------------
_WALLS = np.array([
    [0.78, 0.70, 0.55], [0.62, 0.32, 0.24], [0.56, 0.56, 0.56], [0.86, 0.84, 0.79], [0.47, 0.35, 0.27],
    [0.85, 0.77, 0.52], [0.52, 0.57, 0.64], [0.72, 0.52, 0.42], [0.66, 0.68, 0.60],
])
_CARS = np.array([
    [0.85, 0.85, 0.85], [0.08, 0.08, 0.09], [0.55, 0.57, 0.60], [0.65, 0.08, 0.07], [0.10, 0.20, 0.55],
    [0.12, 0.30, 0.18], [0.80, 0.65, 0.15], [0.35, 0.36, 0.38], [0.90, 0.90, 0.92], [0.40, 0.10, 0.30],
])


def _waves(rng: np.random.Generator, n: int, fmin: float, fmax: float) -> np.ndarray:
    """``n`` random plane waves (ka, kb, phase, amp) with frequencies in [fmin, fmax] cycles per unit."""
    freq = np.exp(rng.uniform(math.log(fmin), math.log(fmax), n))
    ang = rng.uniform(0, math.pi, n)
    amp = 1.0 / np.sqrt(freq / fmin)
    amp = amp / np.sqrt(np.sum(amp**2) / 2)  # unit-ish variance
    return np.stack([freq * np.cos(ang), freq * np.sin(ang), rng.uniform(0, 2 * math.pi, n), amp], axis=1)


def _facade(rng: np.random.Generator, x: float, normal: float, z_from: float, z_to: float, far: bool,
            tall: float) -> Facade:
    widths: list[float] = []
    total = 0.0
    while z_from + total < z_to:
        w = float(rng.uniform(14, 40) if far else rng.uniform(8, 24))
        widths.append(w)
        total += w
    n = len(widths)
    z0 = z_from + np.concatenate([[0.0], np.cumsum(widths)])
    if far:
        height = rng.uniform(18, 45, n) * tall
    else:
        height = rng.uniform(6, 24, n) * tall
    color = _WALLS[rng.integers(0, len(_WALLS), n)] * rng.uniform(0.85, 1.1, (n, 1))
    if far:  # distant rows read as bluish-grey blocks
        color = 0.6 * color + 0.4 * np.array([0.55, 0.58, 0.63])
    floor_h = rng.uniform(3.0, 3.6, n)
    win_period = rng.uniform(1.8, 3.4, n)
    win_w = win_period * rng.uniform(0.4, 0.62, n)
    win_h = floor_h * rng.uniform(0.42, 0.6, n)
    win_sill = (floor_h - win_h) * rng.uniform(0.4, 0.65, n)
    shop = (rng.uniform(0, 1, n) < 0.5) & (not far)
    glass = np.array([0.10, 0.13, 0.18]) * rng.uniform(0.8, 1.3, (n, 1)) + rng.uniform(0, 0.05, (n, 3))
    return Facade(x=x, normal=normal, z0=z0, height=height, color=np.clip(color, 0, 1), floor_h=floor_h,
                  win_period=win_period, win_w=win_w, win_h=win_h, win_sill=win_sill, shop=shop, glass=glass,
                  lit_seed=rng.uniform(0, 1000, n), far=far)


def _cars(rng: np.random.Generator, road_lanes: list[tuple[float, int]], parking_x: float | None,
          cam_x: float, cam_speed: float, frames: int, z_cam0: float, fps: float) -> list[Car]:
    cars: list[Car] = []
    travel = cam_speed * frames

    def add(x: float, z: float, speed: float, lights_red: bool) -> None:
        length = float(rng.uniform(3.9, 4.9))
        body_h = float(rng.uniform(0.95, 1.1))
        cars.append(Car(k=len(cars) + 1, x=x, z0=z, speed=speed, length=length, width=float(rng.uniform(1.7, 1.9)),
                        body_h=body_h, cabin_h=body_h + float(rng.uniform(0.4, 0.55)),
                        cabin_front=length * float(rng.uniform(0.3, 0.38)),
                        cabin_back=length * float(rng.uniform(0.14, 0.22)),
                        color=_CARS[rng.integers(0, len(_CARS))] * float(rng.uniform(0.9, 1.05)),
                        lights_red=lights_red))

    for x, direction in road_lanes:
        if direction > 0:
            own = abs(x - cam_x) < 0.5
            speed = cam_speed * float(rng.uniform(0.6, 1.4))
            z = z_cam0 + (float(rng.uniform(14, 30)) if own else float(rng.uniform(-25, 10)))
            if own:  # the car ahead in the camera's lane keeps at least 9 m away over the whole sequence
                speed = max(speed, cam_speed - (z - z_cam0 - 9.0) / max(frames, 1))
            z_end = z_cam0 + travel + 160 + max(0.0, (cam_speed - speed) * frames)
        else:
            speed = -float(rng.uniform(6, 13)) / fps
            z = z_cam0 + float(rng.uniform(8, 30))
            z_end = z_cam0 + 160 + (cam_speed - speed) * frames
        while z < z_end and len(cars) < 60:
            add(x, z, speed, direction > 0)
            z += float(rng.uniform(11, 45))
    if parking_x is not None:
        for side in (-1.0, 1.0):
            z = z_cam0 + float(rng.uniform(-4, 12))
            while z < z_cam0 + travel + 120 and len(cars) < 90:
                if rng.uniform() < 0.7:
                    add(side * parking_x, z, 0.0, side > 0)
                z += float(rng.uniform(5.5, 12))
    return cars


def make_scene(seed: int, index: int, size: tuple[int, int], frames: int, fps: float) -> Scene:
    """Draw the street, buildings, trees, cars, sun and camera path of sequence ``index`` of world ``seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
    width, height = size

    # road: 1 or 2 lanes per direction (3.5 m), optional parking strip, curb, sidewalk
    lanes = int(rng.integers(1, 3))
    parking = bool(rng.uniform() < 0.6)
    drive_half = 3.5 * lanes
    half = drive_half + (2.3 if parking else 0.4)
    curb_w = 0.25
    facade_x = half + curb_w + float(rng.uniform(2.5, 5.0))
    yellow = bool(rng.uniform() < 0.5)
    lines: list[tuple[float, float, float, float, bool]] = [(-0.25, -0.1, 0.0, 0.0, yellow), (0.1, 0.25, 0.0, 0.0, yellow)]
    dash_period, dash = float(rng.uniform(9, 13)), float(rng.uniform(3, 4.5))
    for side in (-1.0, 1.0):
        for lane in range(1, lanes):
            x = side * 3.5 * lane
            lines.append((x - 0.07, x + 0.07, dash_period, dash, False))
        if parking:
            x = side * drive_half
            lines.append((min(x, x + side * 0.15), max(x, x + side * 0.15), 0.0, 0.0, False))
    lane_xs = [(-3.5 * i - 1.75, -1) for i in range(lanes)] + [(3.5 * i + 1.75, 1) for i in range(lanes)]
    tracks = [x + o for x, _ in lane_xs for o in (-0.8, 0.8)]
    asphalt = np.array([0.30, 0.30, 0.32]) * float(rng.uniform(0.8, 1.2))
    sidewalk = np.array([0.62, 0.60, 0.56]) * float(rng.uniform(0.85, 1.15)) + rng.uniform(-0.04, 0.04, 3)

    # camera: drives along +z in a lane, sways, pans
    cam_x = lane_xs[lanes + int(rng.integers(0, lanes))][0]
    speed = float(rng.uniform(6.0, 12.0)) / fps  # metres per frame
    accel = float(rng.uniform(-0.15, 0.15)) * speed / max(frames, 1)
    t = np.arange(frames, dtype=np.float64)
    z = speed * t + 0.5 * accel * t**2
    sway = float(rng.uniform(0.05, 0.35)) * np.sin(2 * math.pi * t / float(rng.uniform(40, 120)) * (15 / fps)
                                                   + rng.uniform(0, 2 * math.pi))
    cam_h = float(rng.uniform(1.35, 1.75))
    pos = np.stack([cam_x + sway, np.full(frames, cam_h), z], axis=1)
    yaw_amp = math.radians(float(rng.uniform(1.0, 8.0)))
    yaw = (math.radians(float(rng.uniform(-4, 4))) + yaw_amp
           * np.sin(2 * math.pi * t / float(rng.uniform(50, 140)) * (15 / fps) + rng.uniform(0, 2 * math.pi)))
    pitch = np.full(frames, math.radians(float(rng.uniform(-1.5, 2.0))))
    f = (width - 1) / 2 / math.tan(math.radians(35.0))
    camera = CameraPath(pos=pos, yaw=yaw, pitch=pitch, f=f, cx=(width - 1) / 2, cy=(height - 1) * 0.45)

    travel = float(z[-1]) if frames else 0.0
    z_from, z_to = -40.0, travel + 700.0
    tall = float(rng.uniform(0.7, 1.3))
    far_gap = float(rng.uniform(12, 35))
    facades = [
        _facade(rng, -facade_x, 1.0, z_from, z_to, False, tall),
        _facade(rng, facade_x, -1.0, z_from, z_to, False, tall),
        _facade(rng, -facade_x - far_gap, 1.0, z_from, z_to, True, tall),
        _facade(rng, facade_x + far_gap, -1.0, z_from, z_to, True, tall),
    ]

    trees: list[Tree] = []
    tree_sides = [s for s in (-1.0, 1.0) if rng.uniform() < 0.75]
    spacing = float(rng.uniform(8, 18))
    for side in tree_sides:
        zt = float(rng.uniform(0, spacing))
        while zt < travel + 250:
            if rng.uniform() < 0.85:
                rx = float(rng.uniform(1.3, 2.4))
                trees.append(Tree(x=side * (half + curb_w + float(rng.uniform(0.8, 1.3))), z=zt, crown_rx=rx,
                                  crown_ry=rx * float(rng.uniform(0.9, 1.3)),
                                  crown_y=float(rng.uniform(3.6, 5.2)), trunk_w=float(rng.uniform(0.22, 0.38)),
                                  color=np.array([0.20, 0.36, 0.12]) * float(rng.uniform(0.75, 1.25))
                                  + rng.uniform(-0.04, 0.04, 3),
                                  wobble=np.array([rng.uniform(0.05, 0.12), rng.uniform(0, 2 * math.pi),
                                                   rng.uniform(0.03, 0.07), rng.uniform(0, 2 * math.pi)])))
            zt += spacing * float(rng.uniform(0.8, 1.25))
    trees.sort(key=lambda tr: -tr.z)  # far to near, only for tidiness: the renderer z-buffers

    cars = _cars(rng, lane_xs, (drive_half + 1.15) if parking else None, cam_x, speed, frames, 0.0, fps)

    # sun and sky: low suns are warm, high suns white; shadows fall across the street
    elev = math.radians(float(rng.uniform(15, 65)))
    azim = float(rng.uniform(0, 2 * math.pi))
    sun = np.array([math.cos(elev) * math.sin(azim), math.sin(elev), math.cos(elev) * math.cos(azim)])
    warm = float(np.clip((math.radians(35) - elev) / math.radians(20), 0, 1))
    sun_color = np.array([1.0, 0.95 - 0.15 * warm, 0.88 - 0.3 * warm]) * float(rng.uniform(0.85, 1.1))
    ambient = np.array([0.36, 0.40, 0.48]) * float(rng.uniform(0.8, 1.15))
    sky_zenith = np.array([0.22, 0.42, 0.80]) * float(rng.uniform(0.85, 1.1))
    sky_horizon = np.array([0.72, 0.80, 0.90]) + warm * np.array([0.15, 0.02, -0.12])
    light = Lighting(sun=sun, sun_color=sun_color, ambient=ambient, sky_horizon=sky_horizon, sky_zenith=sky_zenith,
                     haze_dist=float(rng.uniform(180, 420)), exposure=float(rng.uniform(0.9, 1.1)),
                     clouds=float(rng.uniform(0.0, 0.8)), lit_windows=0.25 * warm)

    crosswalks = [float(zc) for zc in rng.uniform(15, travel + 120, int(rng.integers(0, 3)))]
    road = Road(half=half, curb_w=curb_w, facade_x=facade_x, lines=lines, crosswalks=crosswalks, asphalt=asphalt,
                sidewalk=np.clip(sidewalk, 0, 1), tile=float(rng.uniform(0.6, 1.2)), tracks=tracks)
    waves = {
        "asphalt": _waves(rng, 6, 1.2, 8.0),
        "sidewalk": _waves(rng, 4, 0.3, 2.0),
        "wall": _waves(rng, 5, 0.15, 1.5),
        "foliage": _waves(rng, 12, 0.7, 4.5),
        "clouds": _waves(rng, 6, 0.4, 3.0),
    }
    options = {"seed": int(seed), "index": int(index), "size": [width, height], "frames": int(frames),
               "fps": float(fps)}
    return Scene(width=width, height=height, frames=frames, fps=fps, road=road, facades=facades, trees=trees,
                 cars=cars, light=light, camera=camera, waves=waves, options=options)
