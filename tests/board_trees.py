"""Board trees in the layouts the kernel drivers document, for the board health tests
(the units and sources are cited in ``runtime/board_health.py``)."""

from __future__ import annotations

from pathlib import Path


def write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


STAT = (  # ticks: user nice system idle iowait irq softirq steal guest guest_nice
    "cpu  {u} 0 {s} {i} 0 0 0 0 0 0\n"
    "cpu0 {u0} 0 0 {i0} 0 0 0 0 0 0\n"
    "cpu1 {u1} 0 {s} {i1} 0 0 0 0 0 0\n"
)


def orin_nano(root: Path) -> None:
    """An Orin Nano on JetPack 6 as its drivers lay it out (values made up)."""
    write(
        root,
        {
            "proc/stat": STAT.format(u=100, s=50, i=850, u0=50, i0=450, u1=50, i1=400),
            "proc/meminfo": "MemTotal:        7834112 kB\nMemFree:  100 kB\n"
            "MemAvailable:    5737984 kB\n",
            "sys/class/thermal/thermal_zone0/type": "cpu-thermal\n",
            "sys/class/thermal/thermal_zone0/temp": "48531\n",
            "sys/class/thermal/thermal_zone1/type": "gpu-thermal\n",
            "sys/class/thermal/thermal_zone1/temp": "46125\n",
            "sys/class/thermal/thermal_zone2/type": "cv0-thermal\n",  # offline
            "sys/class/thermal/thermal_zone2/temp": "-256000\n",
            "sys/class/thermal/thermal_zone3/type": "PMIC-Die\n",  # a constant 100 C
            "sys/class/thermal/thermal_zone3/temp": "100000\n",
            "sys/class/thermal/thermal_zone4/type": "tj-thermal\n",  # reads empty
            "sys/class/thermal/thermal_zone4/temp": "",
            "sys/class/hwmon/hwmon1/name": "ina3221\n",
            "sys/class/hwmon/hwmon1/in1_label": "VDD_IN\n",
            "sys/class/hwmon/hwmon1/in1_input": "5072\n",  # mV
            "sys/class/hwmon/hwmon1/curr1_input": "1250\n",  # mA
            "sys/class/hwmon/hwmon1/in2_label": "VDD_CPU_GPU_CV\n",
            "sys/class/hwmon/hwmon1/in2_input": "5064\n",
            "sys/class/hwmon/hwmon1/curr2_input": "400\n",
            "sys/class/hwmon/hwmon1/in3_label": "VDD_SOC\n",
            "sys/class/hwmon/hwmon1/in3_input": "5060\n",
            "sys/class/hwmon/hwmon1/curr3_input": "300\n",
            "sys/class/hwmon/hwmon2/name": "nvme\n",  # another chip: not power
            "sys/class/hwmon/hwmon2/temp1_input": "35000\n",
            "sys/class/devfreq/17000000.gpu/device/of_node/name": "ga10b\n",
            "sys/class/devfreq/17000000.gpu/device/load": "537\n",  # per mille
            "var/lib/nvpmodel/status": "pmode:0001 fmode:quiet\n",
            "etc/nvpmodel.conf": "< POWER_MODEL ID=0 NAME=15W >\nCPU_ONLINE CORE_0 1\n"
            "< POWER_MODEL ID=1 NAME=7W >\n< PM_CONFIG DEFAULT=0 >\n",
        },
    )
    for cpu in range(6):
        folder = f"sys/devices/system/cpu/cpu{cpu}"
        write(
            root,
            {
                f"{folder}/online": "0\n" if cpu >= 4 else "1\n",  # 7W takes cores offline
                f"{folder}/cpufreq/scaling_governor": "schedutil\n",
                f"{folder}/cpufreq/scaling_min_freq": "1510400\n",
                f"{folder}/cpufreq/scaling_max_freq": "1510400\n" if cpu < 4 else "1728000\n",
            },
        )
