"""Board health read from /proc and /sys trees.

No real Jetson's tree could be recorded on this machine, so the tests build
trees in the layouts the kernel drivers document (the files and units cited in
``runtime/board_health.py``: proc_stat(5), sysfs-class-thermal,
hwmon/ina3221.rst, hwmon/ina238.rst, cpufreq.rst) and jetson_stats reads
(devfreq GPU load, L4T's ina3221x, nvpmodel's files). This machine's own /proc
and /sys are the case where most of a board is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from board_trees import STAT, orin_nano, write

from edgeloop.runtime.board_health import FIELDS, BoardReader


def test_an_orin_nano_tree_reads_whole(tmp_path):
    orin_nano(tmp_path)
    reader = BoardReader(tmp_path)
    write(tmp_path, {"proc/stat": STAT.format(u=160, s=70, i=870, u0=90, i0=460, u1=70, i1=430)})
    health = reader.read()
    # All CPUs: 100 more ticks, 80 busy (60 user + 20 system). cpu0: 40 of 50;
    # cpu1: 20 user + 20 system of 70.
    assert health["cpu_percent"] == pytest.approx(80.0)
    assert health["cpu_percent_per_core"] == pytest.approx([80.0, 100 * 40 / 70])
    assert health["mem_total_mib"] == pytest.approx(7834112 / 1024)
    assert health["mem_used_mib"] == pytest.approx((7834112 - 5737984) / 1024)
    assert health["temp_c"] == {"cpu-thermal": 48.531, "gpu-thermal": 46.125}
    assert health["temp_max_c"] == 48.531
    assert health["rails_w"] == pytest.approx(
        {"VDD_IN": 5.072 * 1.25, "VDD_CPU_GPU_CV": 5.064 * 0.4, "VDD_SOC": 5.06 * 0.3}
    )
    assert health["power_w"] == pytest.approx(5.072 * 1.25)  # the input rail, not the sum
    assert health["gpu_percent"] == pytest.approx(53.7)
    assert health["cpu_governor"] == "schedutil"
    assert health["jetson_clocks"] is True  # every online CPU pinned at its maximum
    assert health["power_mode"] == "7W"
    assert health["absent"] == []


def test_jetson_clocks_is_off_while_an_online_cpu_may_still_scale(tmp_path):
    orin_nano(tmp_path)
    write(tmp_path, {"sys/devices/system/cpu/cpu2/cpufreq/scaling_min_freq": "115200\n"})
    assert BoardReader(tmp_path).read()["jetson_clocks"] is False


def test_an_ina238_and_jetpack_4s_ina3221x_give_their_rails_in_their_own_units(tmp_path):
    write(
        tmp_path,
        {
            "sys/class/hwmon/hwmon0/name": "ina238\n",
            "sys/class/hwmon/hwmon0/label": "VIN\n",
            "sys/class/hwmon/hwmon0/power1_input": "2500000\n",  # µW
            "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/rail_name_0": "POM_5V_IN\n",
            "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_power0_input": "4012\n",  # mW
            "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/rail_name_1": "POM_5V_GPU\n",
            "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0/in_power1_input": "500\n",
            "sys/devices/gpu.0/load": "1000\n",  # a Nano's path
        },
    )
    health = BoardReader(tmp_path).read()
    assert health["rails_w"] == pytest.approx({"VIN": 2.5, "POM_5V_IN": 4.012, "POM_5V_GPU": 0.5})
    assert health["power_w"] == pytest.approx(4.012)
    assert health["gpu_percent"] == 100.0
    # Without an input rail the total is the sum; a profile can name the rail.
    assert BoardReader(tmp_path, input_rail="VIN").read()["power_w"] == pytest.approx(2.5)


def test_an_empty_tree_has_every_field_absent(tmp_path):
    health = BoardReader(tmp_path).read()
    assert health == {"absent": list(FIELDS)}


def test_this_machine_reads_what_it_has_and_names_the_rest_absent():
    health = BoardReader("/").read()
    absent = set(health["absent"])
    zones = [z for z in Path("/sys/class/thermal").glob("thermal_zone*") if (z / "temp").exists()]
    if not zones:  # this VM's /sys/class/thermal is empty
        assert "temp_max_c" in absent and "temp_c" not in health
    assert "mem_used_mib" in health and health["mem_total_mib"] > health["mem_used_mib"] > 0
    # The first read of /proc/stat only sets the baseline; the second has a load.
    reader = BoardReader("/")
    sum(range(200_000))  # some CPU time between the reads
    second = reader.read()
    if "cpu_percent" in second:
        assert 0.0 <= second["cpu_percent"] <= 100.0
    for field in FIELDS:  # never both read and absent
        assert not (field in health and field in absent)
