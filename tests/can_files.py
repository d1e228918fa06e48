"""A small DBC file for the CAN tests: wheel speeds in, a motor command out."""

from __future__ import annotations

from pathlib import Path

DBC = """\
VERSION ""

NS_ :

BS_:

BU_: ECU EDGE

BO_ 256 WheelSpeed: 4 ECU
 SG_ left : 0|16@1- (0.01,0) [-300|300] "rad/s" EDGE
 SG_ right : 16|16@1- (0.01,0) [-300|300] "rad/s" EDGE

BO_ 512 MotorCommand: 2 EDGE
 SG_ torque : 0|16@1- (0.001,0) [-10|10] "N*m" ECU
"""


def write_dbc(folder: Path) -> Path:
    path = folder / "robot.dbc"
    path.write_text(DBC)
    return path
