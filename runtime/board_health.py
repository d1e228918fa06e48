"""What a board says about itself through /proc and /sys: CPU load, memory,
temperatures, GPU load, power rails, and how it is set to perform.

Every reading comes from a file whose layout a kernel driver documents, found
once by :class:`BoardReader` (under ``root``, so tests build a tree of their
own). A field a machine does not have is absent, never guessed:
:meth:`BoardReader.read` lists it under ``absent``. Sources, per path:

- ``/proc/stat`` (proc_stat(5)): ``cpu`` and ``cpuN`` lines of ticks: user, nice,
  system, idle, iowait, irq, softirq, steal, ...; load = 1 - (idle + iowait) /
  the first eight, between two reads.
- ``/proc/meminfo`` (proc_meminfo(5)): ``MemTotal``, ``MemAvailable`` in kB.
- ``/sys/class/thermal/thermal_zone*/{type,temp}`` (kernel
  Documentation/ABI/testing/sysfs-class-thermal): temp in millidegrees Celsius.
  A zone that cannot be read, reads -256 °C (tegrastats' "offline"), or is a
  PMIC die (a constant 100 °C on Jetson Nano, which jetson_stats drops) is left out.
- ``/sys/class/hwmon/hwmon*/name`` ``ina3221`` (Documentation/hwmon/ina3221.rst):
  ``in[1-3]_label`` rail, ``in[1-3]_input`` bus mV, ``curr[1-3]_input`` mA; the
  driver has no power file, so W = mV x mA / 1e6. Unused channels are labelled
  ``NC``. Jetson Orin NX/Nano: VDD_IN, VDD_CPU_GPU_CV, VDD_SOC.
- ``/sys/class/hwmon/hwmon*/name`` ``ina238``/``ina237``/``ina228``
  (Documentation/hwmon/ina238.rst): ``power1_input`` in µW, named by ``label``.
- ``/sys/bus/i2c/drivers/ina3221x/*/iio:device*/`` (L4T's JetPack 4 driver, as
  jetson_stats reads it): ``rail_name_K``, ``in_powerK_input`` in mW.
- GPU load (jetson_stats, jtop/core/gpu.py): a devfreq device
  (``/sys/class/devfreq/*``) whose ``device/of_node/name`` is a Jetson GPU
  (gv11b, gp10b, ga10b, gb10b, gpu), ``device/load`` in per mille; else
  ``/sys/devices/gpu.0/load`` (Nano) or ``/sys/devices/platform/gpu.0/load``.
- ``/sys/devices/system/cpu/cpuN/cpufreq/scaling_{governor,min_freq,max_freq}``
  (Documentation/admin-guide/pm/cpufreq.rst, kHz): the governor; jetson_clocks is
  on when every online CPU's minimum equals its maximum (jetson_stats' test).
- nvpmodel's mode: ``/var/lib/nvpmodel/status`` (``pmode:0002``) named through
  ``/etc/nvpmodel.conf`` (``< POWER_MODEL ID=2 NAME=15W >``), the files the
  nvpmodel tool keeps; not an NVIDIA-documented interface, so read as a hint.

The board's total power is its input rail (VDD_IN, POM_5V_IN, or a rail the
profile names) when there is one, else the sum of the rails.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JETSON_GPUS = {"gv11b", "gp10b", "ga10b", "gb10b", "gpu"}
INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
_OFFLINE_MILLI_C = -256_000


@dataclass(frozen=True)
class Rail:
    """One power rail: how to read its watts."""

    name: str
    kind: str  # "ina3221" (volts and amps), "power_uw" or "power_mw" (one file)
    files: tuple[Path, ...]

    def watts(self) -> float | None:
        values = [_number(f) for f in self.files]
        if any(v is None for v in values):
            return None
        if self.kind == "ina3221":
            millivolts, milliamps = values
            return millivolts * milliamps / 1e6  # type: ignore[operator]
        scale = 1e-6 if self.kind == "power_uw" else 1e-3
        return values[0] * scale  # type: ignore[operator]


class BoardReader:
    """Finds the board's health files under ``root`` once; :meth:`read` reads them.

    Args:
        root: Where ``/proc`` and ``/sys`` are (a test's own tree, say).
        input_rail: The rail that is the board's total power, when it is none of
            VDD_IN and POM_5V_IN (a profile's ``power.input_rail``).
    """

    def __init__(self, root: str | Path = "/", input_rail: str | None = None) -> None:
        self.root = Path(root)
        self.zones = self._thermal_zones()
        self.rails = self._rails()
        self.input_rail = input_rail or next((r for r in INPUT_RAILS if r in self.rails), None)
        self.gpu_load_file = self._gpu_load_file()
        self.cpus = sorted(  # found once; which are online is read each time (power modes)
            self.root.glob("sys/devices/system/cpu/cpu[0-9]*"), key=lambda p: int(p.name[3:])
        )
        self._last_stat: dict[str, tuple[int, int]] = {}
        self._cpu_percent()  # the first read only sets the baseline of the deltas
        self.absent = self._absent()

    def _absent(self) -> list[str]:
        """The fields this board has no source for."""
        has = set(self.performance())
        has |= {"mem_used_mib"} if self._memory() else set()
        has |= {"cpu_percent"} if self._last_stat.get("cpu") else set()
        has |= {"temp_max_c"} if self.zones else set()
        has |= {"power_w"} if self.rails else set()
        has |= {"gpu_percent"} if self.gpu_load_file is not None else set()
        return [f for f in FIELDS if f not in has]

    # -- discovery ------------------------------------------------------------------

    def _thermal_zones(self) -> dict[str, Path]:
        zones: dict[str, Path] = {}
        for zone in sorted(self.root.glob("sys/class/thermal/thermal_zone*")):
            kind = _text(zone / "type")
            if kind and "PMIC" not in kind and (zone / "temp").exists():
                zones[_unique(kind, zones)] = zone / "temp"
        return zones

    def _rails(self) -> dict[str, Rail]:
        rails: dict[str, Rail] = {}
        for hwmon in sorted(self.root.glob("sys/class/hwmon/hwmon*")):
            chip = _text(hwmon / "name") or ""
            if chip == "ina3221":
                for channel in (1, 2, 3):
                    label = _text(hwmon / f"in{channel}_label")
                    volts, amps = hwmon / f"in{channel}_input", hwmon / f"curr{channel}_input"
                    if label and label != "NC" and volts.exists() and amps.exists():
                        rails[_unique(label, rails)] = Rail(label, "ina3221", (volts, amps))
            elif chip in ("ina238", "ina237", "ina228", "sq52206"):
                power = hwmon / "power1_input"
                if power.exists():
                    label = _text(hwmon / "label") or f"{chip}-{hwmon.name}"
                    rails[_unique(label, rails)] = Rail(label, "power_uw", (power,))
        legacy = "sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_*"
        for name_file in sorted(self.root.glob(legacy)):
            label = _text(name_file)
            power = name_file.parent / f"in_power{name_file.name.removeprefix('rail_name_')}_input"
            if label and label != "NC" and power.exists():
                rails[_unique(label, rails)] = Rail(label, "power_mw", (power,))
        return rails

    def _gpu_load_file(self) -> Path | None:
        for node in sorted(self.root.glob("sys/class/devfreq/*")):
            name = _text(node / "device" / "of_node" / "name") or ""
            if (name in JETSON_GPUS or "gpu" in name) and (node / "device" / "load").exists():
                return node / "device" / "load"
        for known in ("sys/devices/gpu.0/load", "sys/devices/platform/gpu.0/load"):
            if (self.root / known).exists():
                return self.root / known
        return None

    # -- reading ----------------------------------------------------------------------

    def read(self) -> dict[str, Any]:
        """Every field this board has, and ``absent``: those it has no source for. A
        field with a source may still be missing from one reading: the CPU load
        until the kernel counted a tick since the last read, a zone that is
        offline, a file that could not be read."""
        health: dict[str, Any] = {}
        total, per_core = self._cpu_percent()
        if total is not None:
            health["cpu_percent"] = total
            health["cpu_percent_per_core"] = per_core
        memory = self._memory()
        if memory:
            health.update(memory)
        temps = {name: t for name, file in self.zones.items() if (t := _celsius(file)) is not None}
        if temps:
            health["temp_c"] = temps
            health["temp_max_c"] = max(temps.values())
        rails = {name: w for name, rail in self.rails.items() if (w := rail.watts()) is not None}
        if rails:
            health["rails_w"] = rails
            health["power_w"] = (
                rails[self.input_rail] if self.input_rail in rails else sum(rails.values())
            )
        if self.gpu_load_file is not None and (load := _number(self.gpu_load_file)) is not None:
            health["gpu_percent"] = load / 10.0
        health.update(self.performance())
        health["absent"] = list(self.absent)
        return health

    def _cpu_percent(self) -> tuple[float | None, list[float]]:
        text = _text(self.root / "proc" / "stat", strip=False)
        if text is None:
            return None, []
        percents: dict[str, float] = {}
        for line in text.splitlines():
            if not line.startswith("cpu"):
                continue
            name, *fields = line.split()
            ticks = [int(f) for f in fields[:8]]
            busy_total = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
            last = self._last_stat.get(name)
            self._last_stat[name] = busy_total
            if last is not None and busy_total[1] > last[1]:
                delta_busy, delta_total = busy_total[0] - last[0], busy_total[1] - last[1]
                percents[name] = 100.0 * max(0, delta_busy) / delta_total
        if "cpu" not in percents:
            return None, []
        cores = sorted((k for k in percents if k != "cpu"), key=lambda k: int(k[3:]))
        return percents["cpu"], [percents[k] for k in cores]

    def _memory(self) -> dict[str, float]:
        text = _text(self.root / "proc" / "meminfo", strip=False) or ""
        kib = {}
        for line in text.splitlines():
            key, _, value = line.partition(":")
            parts = value.split()
            if parts and parts[0].isdigit():
                kib[key] = int(parts[0])
        if "MemTotal" not in kib or "MemAvailable" not in kib:
            return {}
        return {
            "mem_total_mib": kib["MemTotal"] / 1024,
            "mem_used_mib": (kib["MemTotal"] - kib["MemAvailable"]) / 1024,
        }

    def performance(self) -> dict[str, Any]:
        """How the board is set to perform: CPU governor, jetson_clocks, nvpmodel mode."""
        found: dict[str, Any] = {}
        online = [c for c in self.cpus if _text(c / "online") != "0" and (c / "cpufreq").is_dir()]
        governors = {g for c in online if (g := _text(c / "cpufreq" / "scaling_governor"))}
        if governors:
            found["cpu_governor"] = ",".join(sorted(governors))
        pinned = [
            _number(c / "cpufreq" / "scaling_min_freq")
            == _number(c / "cpufreq" / "scaling_max_freq")
            for c in online
        ]
        if pinned and self.gpu_load_file is not None:  # a Jetson: the test means something
            found["jetson_clocks"] = all(pinned)
        mode = self._power_mode()
        if mode is not None:
            found["power_mode"] = mode
        return found

    def _power_mode(self) -> str | None:
        status = _text(self.root / "var" / "lib" / "nvpmodel" / "status") or ""
        match = re.search(r"pmode:(\d+)", status)
        if match is None:
            return None
        mode = int(match.group(1))
        conf = _text(self.root / "etc" / "nvpmodel.conf") or ""
        for found in re.finditer(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>", conf):
            if int(found.group(1)) == mode:
                return found.group(2)
        return f"mode {mode}"


FIELDS = (
    "cpu_percent", "mem_used_mib", "temp_max_c", "power_w", "gpu_percent",
    "cpu_governor", "jetson_clocks", "power_mode",
)  # fmt: skip
"""The fields a board may lack, as ``absent`` names them."""


def _text(path: Path, strip: bool = True) -> str | None:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = path.read_text()
        return text.strip() if strip else text
    return None


def _number(path: Path) -> float | None:
    text = _text(path)
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _celsius(path: Path) -> float | None:
    milli = _number(path)
    if milli is None or milli <= _OFFLINE_MILLI_C:
        return None
    return milli / 1000.0


def _unique(name: str, taken: dict[str, Any]) -> str:
    """``name``, or ``name#2``, ``name#3``... when taken (two INA3221 chips)."""
    if name not in taken:
        return name
    n = 2
    while f"{name}#{n}" in taken:
        n += 1
    return f"{name}#{n}"
