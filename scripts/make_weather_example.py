#!/usr/bin/env python3
"""Generate the weather plugin's example data set (synthetic APEX site weather).

The original sisock shipped two weeks of real APEX weather (2017-07-13 to
2017-07-27, UTC). We ship our own stand-in: plausible values for a 5100 m site in
the Chilean winter, generated deterministically (fixed seed) so that running this
script again reproduces the shipped files byte for byte.

Fields, one ``<field>.dat`` file each:

=================  ========  =====  =======================================
field              timeline  units  what it looks like
=================  ========  =====  =======================================
apex_humidity      hourly    %      5-60 %, dry most days, humid storm
apex_pressure      hourly    mBar   ~550 mBar, synoptic drift + tide
apex_temperature   hourly    C      -10..+5 C with a diurnal cycle
apex_radiometer    minutely  mm     PWV 0.3-3 mm, slowly varying
apex_windspeed     minutely  km/h   0-60 km/h, turbulence and gusts
=================  ========  =====  =======================================

File format (see ``docs/data-formats.md``, "weather")::

    # <description>
    # <timeline name>
    # <units>
    # 2017-07-13
    1499904000 -4.21
    ...

``# YYYY-MM-DD`` comment lines mark the start of each UTC day.

Example::

    python scripts/make_weather_example.py            # rewrite the shipped files
    python scripts/make_weather_example.py --out /tmp/w
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import Sequence

import numpy as np

SEED = 20170713
START = 1499904000  # 2017-07-13 00:00 UTC
END = 1501113600  # 2017-07-27 00:00 UTC (exclusive)
DAY = 86400
HOURLY = 3600
MINUTELY = 60
#: APEX is at 67.76 deg W: local solar time is about UTC - 4.5 h.
SOLAR_OFFSET_H = -67.76 / 15.0
#: Centre and width (s) of the one stormy spell in the two weeks.
STORM_CENTRE = START + int(9.4 * DAY)
STORM_WIDTH = 0.9 * DAY

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "sisock_plugins" / "weather" / "example_data"


def smooth_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """Unit-variance Gaussian noise smoothed over ``sigma`` samples (no edge effects)."""
    half = int(np.ceil(4 * sigma))
    k = np.arange(-half, half + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (k / sigma) ** 2)
    kernel /= np.sqrt(np.sum(kernel**2))
    white = rng.standard_normal(n + 2 * half)
    return np.convolve(white, kernel, mode="valid")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def solar_hour(t: np.ndarray) -> np.ndarray:
    """Local solar hour of day (0..24) at APEX for UNIX times ``t``."""
    return np.mod((t - START) / 3600.0 + SOLAR_OFFSET_H, 24.0)


def generate(seed: int = SEED) -> dict[str, dict]:
    """Return ``{field: {description, timeline, units, decimals, t, values}}``."""
    rng = np.random.default_rng(seed)
    t_min = np.arange(START, END, MINUTELY, dtype=np.int64)
    t_hour = np.arange(START, END, HOURLY, dtype=np.int64)
    every = HOURLY // MINUTELY
    n = t_min.size

    # Shared slow "weather state" (humid/dry spells, ~half-day scale) and a storm.
    weather = smooth_noise(rng, n, sigma=12 * 60)
    synoptic = smooth_noise(rng, n, sigma=30 * 60)  # pressure systems, ~days
    storm = np.exp(-0.5 * ((t_min - STORM_CENTRE) / STORM_WIDTH) ** 2)
    hour = solar_hour(t_min.astype(np.float64))
    # Diurnal shape peaking mid-afternoon, with a sharper morning rise.
    diurnal = np.cos(2 * np.pi * (hour - 14.5) / 24) + 0.25 * np.cos(4 * np.pi * (hour - 13.0) / 24)

    # -- minutely -------------------------------------------------------------
    x_pwv = (
        -1.7
        + 0.75 * weather
        + 2.6 * storm
        + 0.12 * diurnal
        + 0.10 * smooth_noise(rng, n, sigma=20)
    )
    pwv = 0.3 + 2.7 * sigmoid(x_pwv) + 0.006 * rng.standard_normal(n)
    pwv = np.clip(pwv, 0.3, 3.0)

    mean_wind = 13.0 + 6.0 * smooth_noise(rng, n, sigma=6 * 60) + 22.0 * storm + 4.0 * diurnal
    mean_wind = np.maximum(mean_wind, 2.0)
    turbulence = 1.0 + 0.18 * smooth_noise(rng, n, sigma=2.5)
    gust_rate = 1.0 / 90.0 * (mean_wind / 13.0)  # about one gust per 1.5 h at 13 km/h
    gusts = np.where(
        rng.random(n) < gust_rate, rng.exponential(4.5, n) * (0.4 + mean_wind / 25.0), 0.0
    )
    gust_shape = np.exp(-np.arange(8) / 2.0)
    gusts = np.convolve(gusts, gust_shape)[:n]
    wind = mean_wind * turbulence + gusts
    wind = np.where(wind > 45.0, 45.0 + 15.0 * np.tanh((wind - 45.0) / 15.0), wind)
    wind = np.clip(wind, 0.0, 60.0)

    # -- hourly (sampled on the hour from the shared minutely state) ----------
    w_h = weather[::every]
    s_h = storm[::every]
    syn_h = synoptic[::every]
    d_h = diurnal[::every]
    h_h = hour[::every]
    m = t_hour.size

    temperature = (
        -2.8
        + 3.6 * d_h
        + 1.3 * syn_h
        - 0.6 * w_h
        - 2.5 * s_h
        + 0.25 * smooth_noise(rng, m, sigma=1.5)
    )
    temperature = np.clip(temperature, -10.0, 5.0)

    x_rh = -1.5 + 0.9 * w_h + 3.0 * s_h - 0.35 * d_h + 0.25 * smooth_noise(rng, m, sigma=2)
    humidity = 5.0 + 55.0 * sigmoid(x_rh)

    pressure = (
        551.5
        + 2.2 * syn_h
        - 3.5 * s_h
        + 0.7 * np.cos(4 * np.pi * (h_h - 10.0) / 24)  # semi-diurnal tide
        + 0.05 * rng.standard_normal(m)
    )

    hourly = dict(timeline="hourly", t=t_hour)
    minutely = dict(timeline="minutely", t=t_min)
    return {
        "apex_humidity": dict(
            hourly,
            description="APEX weather station relative humidity (synthetic example data)",
            units="%",
            decimals=1,
            values=humidity,
        ),
        "apex_pressure": dict(
            hourly,
            description="APEX weather station barometric pressure (synthetic example data)",
            units="mBar",
            decimals=1,
            values=pressure,
        ),
        "apex_temperature": dict(
            hourly,
            description="APEX weather station air temperature (synthetic example data)",
            units="C",
            decimals=2,
            values=temperature,
        ),
        "apex_radiometer": dict(
            minutely,
            description="APEX radiometer precipitable water vapour, PWV (synthetic example data)",
            units="mm",
            decimals=2,
            values=pwv,
        ),
        "apex_windspeed": dict(
            minutely,
            description="APEX weather station wind speed (synthetic example data)",
            units="km/h",
            decimals=1,
            values=wind,
        ),
    }


def render(description: str, timeline: str, units: str, t: np.ndarray, values: np.ndarray,
           decimals: int) -> str:
    """Return the text of one ``.dat`` file, with ``# YYYY-MM-DD`` day markers."""
    # Round first (and add 0.0 to turn -0.0 into 0.0) so "-0.00" never appears.
    values = np.round(np.asarray(values, dtype=np.float64), decimals) + 0.0
    lines = [f"# {description}", f"# {timeline}", f"# {units}"]
    fmt = f"{{}} {{:.{decimals}f}}"
    day = None
    for ti, vi in zip(t.tolist(), values.tolist()):
        this_day = ti // DAY
        if this_day != day:
            day = this_day
            date = dt.datetime.fromtimestamp(day * DAY, tz=dt.timezone.utc).date()
            lines.append(f"# {date.isoformat()}")
        lines.append(fmt.format(ti, vi))
    return "\n".join(lines) + "\n"


def write(out: Path, seed: int = SEED) -> list[Path]:
    """Generate the data set into directory ``out``; return the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for field, spec in generate(seed).items():
        path = out / f"{field}.dat"
        text = render(
            spec["description"], spec["timeline"], spec["units"], spec["t"], spec["values"],
            spec["decimals"],
        )
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(
            "Generate the weather plugin's example data set: synthetic APEX site weather, "
            "2017-07-13 to 2017-07-27 UTC, one <field>.dat file per field. Deterministic: "
            "the same seed gives byte-identical files."
        )
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help="directory to write the .dat files into (created if missing; default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=SEED, help="random seed (default: %(default)s, the shipped set)"
    )
    args = parser.parse_args(argv)
    total = 0
    for path in write(args.out, args.seed):
        size = path.stat().st_size
        total += size
        print(f"wrote {path} ({size} bytes)")
    print(f"total {total} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
