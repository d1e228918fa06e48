"""Run the camera-follow loop against a simulated serial motor controller.

Makes the target video (a red disc swinging left and right, 320x240 at 30 fps)
when it is missing, starts ``python -m edgeloop.sims.serial_devices motor`` on
a pseudo-terminal at the graph's port, runs ``edgeloop run`` on the graph, stops
the motor and says what it received: the turn commands, then the safe command
the loop sent when it stopped. Writes report.json, report.txt, motor.jsonl and
(with matplotlib) commands.png into --out.

    python examples/camera-follow/run.py [--device 0] [--duration 10] [--out DIR]

Needs the camera and serial extras: pip install -e ".[camera,serial]".
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
VIDEO = HERE / "target.avi"
PORT = "/tmp/edgeloop-camera-follow-motor"  # the graph's motor port, as loop.yaml names it


def make_video(path: Path, seconds: float = 12.0, fps: float = 30.0) -> None:
    import cv2
    import numpy as np

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (320, 240))
    for k in range(int(seconds * fps)):
        frame = np.full((240, 320, 3), 90, dtype=np.uint8)
        x = int(160 + 110 * math.sin(2 * math.pi * k / (4 * fps)))  # one swing in 4 s
        cv2.circle(frame, (x, 120), 18, (40, 40, 220), -1)  # BGR: red
        writer.write(frame)
    writer.release()


def graph_for(device: str | None, folder: Path, port: str) -> Path:
    """The graph, with the motor at ``port`` and the camera pointed at ``device``
    when one is given."""
    text = (HERE / "loop.yaml").read_text()
    if f"port: {PORT}" not in text:
        raise SystemExit(f"loop.yaml no longer names the motor port {PORT}: update run.py")
    text = text.replace(f"port: {PORT}", f"port: {port}")
    if device is not None:
        text = text.replace("source: examples/camera-follow/target.avi", f"source: {device}")
    path = folder / "loop.yaml"
    path.write_text(text)
    return path


def plot(commands: list[dict], out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no commands.png")
        return
    t0 = commands[0]["t"]
    fig, ax = plt.subplots(figsize=(7, 3))
    ax.plot([c["t"] - t0 for c in commands], [c["command"][0] for c in commands], lw=1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("turn command")
    ax.set_title("what the motor controller received (the last one is the safe command)")
    fig.tight_layout()
    fig.savefig(out / "commands.png", dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="a camera (0, /dev/video0) instead of the video")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds to run")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="where to write")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.device is None and not VIDEO.exists():
        make_video(VIDEO)
    log = args.out / "motor.jsonl"
    log.unlink(missing_ok=True)
    folder = tempfile.TemporaryDirectory()
    port = f"{folder.name}/motor"  # a run of its own: another run's motor is elsewhere
    motor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgeloop.sims.serial_devices",
            "motor",
            "--link",
            port,
            "--log",
            str(log),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        ready = motor.stdout.readline()  # the device exists once it says so
        if not ready.startswith("ready"):
            print(f"the simulated motor did not start: {ready!r}")
            return 1
        graph = graph_for(args.device, Path(folder.name), port)
        run = subprocess.run(
            [
                "edgeloop",
                "run",
                str(graph),
                "--duration",
                str(args.duration),
                "--json",
                str(args.out / "report.json"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "120"},
        )
    finally:
        motor.terminate()
        motor.wait(timeout=30)
        folder.cleanup()
    (args.out / "report.txt").write_text(run.stdout)
    print(run.stdout + run.stderr)
    commands = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if not commands:
        print("the motor received no command")
        return 1
    turns = [c["command"][0] for c in commands]
    print(
        f"the motor received {len(commands)} commands, turn from {min(turns):+.2f} to "
        f"{max(turns):+.2f}; the last was {turns[-1]:+.2f} (the safe command)"
    )
    plot(commands, args.out)
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
