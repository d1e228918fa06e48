"""Recordings of runs split into process groups, and recordings a killed run left
behind: each group's part merged into one file, a file cut short rewritten whole.

The groups of a run recording into ``FILE`` write their parts in ``FILE.parts/``
(with ``run.json``: the groups, the run's facts, the supervisor's pid), and the
supervisor merges them at the end. Parts a killed supervisor left behind are
merged by :func:`repair_recording` (``edgeloop recording repair FILE``), and by
``read_recording`` on its own, but never while the run that writes them is alive.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeloop.runtime.errors import RecordingError
from edgeloop.runtime.mcap_records import ChannelInfo, mcap_module, scan

_log = logging.getLogger("edgeloop.recording")


def parts_dir(path: str | Path) -> Path:
    """Where the process groups of a run recording into ``path`` write their parts."""
    path = Path(path)
    return path.with_name(path.name + ".parts")


def merge_recordings(
    parts: list[Path], path: str | Path, metadata: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Merge the recordings of a run's process groups into one file, in log-time
    order (ties in the order of ``parts``); schemas, channels and messages are
    copied byte for byte. A part whose process was killed is read up to its last
    flushed message: that is noted (``cut_short``), not counted as a failure.

    Returns:
        The recording's summary, as a :class:`Recorder` gives it, with
        ``cut_short``: the parts that ended early, and why.
    """
    mcap = mcap_module()
    summary: dict[str, Any] = {"file": str(path), "written": 0, "failed": 0, "last_error": ""}
    cut_short = []
    with Path(path).open("wb") as file:
        out = mcap.writer.Writer(file, use_chunking=False)
        out.start(profile="", library="edgeloop")
        schemas: dict[tuple[str, str, bytes], int] = {}
        channels: dict[ChannelInfo, int] = {}

        def channel_of(info: ChannelInfo) -> int:
            if info not in channels:
                schema_id = 0
                if info.schema_name:
                    key = (info.schema_name, info.schema_encoding, info.schema)
                    if key not in schemas:
                        schemas[key] = out.register_schema(*key)
                    schema_id = schemas[key]
                channels[info] = out.register_channel(
                    info.topic, info.message_encoding, schema_id, dict(info.metadata)
                )
            return channels[info]

        readers = []
        clock: dict[str, str] = {}
        for k, part in enumerate(parts):
            try:
                found = scan(part)
            except RecordingError as exc:
                summary["failed"] += 1
                summary["last_error"] = exc.message
                continue
            if found.stopped:
                cut_short.append(f"{part.name}: {found.stopped}")
            clock = clock or found.metadata.get("edgeloop.clock", {})
            readers.append([(m.log_time, k, info, m) for info, m in found.messages])
        if clock:  # the first part's: the groups of a run share their clock
            out.add_metadata("edgeloop.clock", clock)
        for _, _, info, message in heapq.merge(*readers, key=lambda item: item[:2]):
            out.add_message(
                channel_of(info),
                log_time=message.log_time,
                data=message.data,
                publish_time=message.publish_time,
                sequence=message.sequence,
            )
            summary["written"] += 1
        if metadata:
            out.add_metadata("edgeloop.run", {k: str(v) for k, v in metadata.items()})
        out.finish()
    return {**summary, "cut_short": cut_short}


def repair_recording(path: str | Path, *, only_parts: bool = False) -> dict[str, Any] | None:
    """Make ``path`` a whole recording again after a killed run.

    Parts left in ``path``'s parts folder (a killed supervisor) are merged into
    ``path``, with the run facts they saved, and the folder removed. Otherwise a
    file cut short (a killed single process) is rewritten with everything it
    holds and a proper summary, unless ``only_parts``.

    Returns:
        The repaired recording's summary (with ``cut_short``), or None when
        there was nothing to repair.

    Raises:
        RecordingError: neither the file nor its parts exist, or the file is not
            an MCAP recording.
    """
    path = Path(path)
    folder = parts_dir(path)
    if folder.is_dir():
        facts = folder / "run.json"
        info = json.loads(facts.read_text()) if facts.exists() else {}
        writer = info.get("supervisor_pid")
        if isinstance(writer, int) and _still_running(writer):
            raise RecordingError(
                f"{path} is still being written by the run in process {writer} (its "
                f"parts are in {folder})",
                fix="read it when that run ends; it merges the parts itself",
            )
        order = {name: i for i, name in enumerate(info.get("groups", []))}

        def rank(part: Path) -> tuple[int, int, str]:
            group, _, restart = part.stem.rpartition(".")
            number = int(restart) if restart.isdigit() else 0
            return (order.get(group, len(order)), number, part.name)

        parts = sorted(folder.glob("*.mcap"), key=rank)
        summary = merge_recordings(parts, path, info.get("metadata"))
        shutil.rmtree(folder, ignore_errors=True)
        _log.warning("%s: merged from %d part(s) a stopped run left behind", path, len(parts))
        return summary
    if only_parts:
        return None
    found = scan(path)
    if found.complete:
        return None
    temporary = path.with_name(path.name + ".repairing")
    temporary.unlink(missing_ok=True)
    path.rename(temporary)
    try:
        summary = merge_recordings([temporary], path, found.metadata.get("edgeloop.run"))
    except BaseException:
        temporary.rename(path)  # nothing lost: the original comes back
        raise
    temporary.unlink()
    summary["cut_short"] = [s.replace(temporary.name, path.name) for s in summary["cut_short"]]
    return summary


def _still_running(pid: int) -> bool:
    """Whether ``pid`` is an edgeloop process still running (not a reused pid)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's: not our run
        return False
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # no /proc (macOS): alive is all we know
        return True
    return not command or b"edgeloop" in command  # empty while it execs: alive, unknown
