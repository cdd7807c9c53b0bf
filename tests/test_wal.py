"""The write-ahead log on real files: what it appended survives `kill -9` of the writing
process, a torn or corrupt tail is cut on open (never raised), commits delete what lies
below them, the bound refuses and counts, slots keep processes apart, and the group
flush fsyncs."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from shipyard.wal import Position, WriteAheadLog

ROOT = Path(__file__).resolve().parents[1]


def _payloads(log: WriteAheadLog) -> list[bytes]:
    return [payload for _, payload in log.replay()]


def _append(log: WriteAheadLog, payload: bytes) -> Position:
    position = log.append(payload)
    assert position is not None
    return position


def _segments(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.seg"))


def test_appends_replay_in_order_after_reopening(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    with WriteAheadLog(wal) as log:
        positions = [_append(log, b"entry %d" % i) for i in range(100)]
        assert positions == sorted(positions)
        assert log.append(b"") is not None  # an empty payload is an entry too
    with WriteAheadLog(wal) as log:
        replayed = list(log.replay())
    assert [p for p, _ in replayed] == [*positions, replayed[-1][0]]
    assert [e for _, e in replayed] == [b"entry %d" % i for i in range(100)] + [b""]


def test_what_was_appended_survives_kill_9_of_the_process(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    code = f"""
import os, signal, sys
from pathlib import Path
from shipyard.wal import WriteAheadLog
log = WriteAheadLog(Path({str(wal)!r}), segment_bytes=4096)
for i in range(5000):
    assert log.append(b"record %d" % i)
sys.stdout.write("appended\\n"); sys.stdout.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, cwd=ROOT, check=False
    )
    assert out.returncode == -signal.SIGKILL and out.stdout == b"appended\n", out.stderr
    with WriteAheadLog(wal) as log:  # the dead process's flock went with it
        assert _payloads(log) == [b"record %d" % i for i in range(5000)]
    assert len(_segments(wal)) > 1  # it rolled past segment_bytes


def test_a_torn_tail_is_cut_on_open_and_appends_continue(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    with WriteAheadLog(wal) as log:
        for i in range(10):
            log.append(b"whole %d" % i)
    segment = wal / _segments(wal)[-1]
    intact = segment.stat().st_size
    with open(segment, "ab") as f:  # a kill in the middle of a write: half a header + body
        f.write(b"\x40\x00\x00\x00\x12\x34\x56\x78half a pay")
    with WriteAheadLog(wal) as log:
        assert _payloads(log) == [b"whole %d" % i for i in range(10)]
        assert segment.stat().st_size == intact  # cut
        log.append(b"after")
    with WriteAheadLog(wal) as log:
        assert _payloads(log) == [b"whole %d" % i for i in range(10)] + [b"after"]


@pytest.mark.parametrize(
    "damage",
    ["flip a payload byte", "a huge length", "a header cut short", "garbage only"],
)
def test_a_corrupt_tail_never_raises(tmp_path: Path, damage: str) -> None:
    wal = tmp_path / "wal"
    with WriteAheadLog(wal) as log:
        for i in range(5):
            log.append(b"kept %d" % i)
        log.append(b"the last entry")
    segment = wal / _segments(wal)[-1]
    data = bytearray(segment.read_bytes())
    last = len(data) - len(b"the last entry") - 8
    if damage == "flip a payload byte":
        data[-3] ^= 0xFF
    elif damage == "a huge length":
        data[last : last + 4] = (2**31).to_bytes(4, "little")
    elif damage == "a header cut short":
        del data[last + 5 :]
    else:
        data = bytearray(os.urandom(3))
    segment.write_bytes(bytes(data))
    with WriteAheadLog(wal) as log:
        expected = [] if damage == "garbage only" else [b"kept %d" % i for i in range(5)]
        assert _payloads(log) == expected


def test_commit_moves_the_start_and_deletes_segments_wholly_below(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    with WriteAheadLog(wal, segment_bytes=100) as log:
        positions = [_append(log, b"x" * 40 + b"%03d" % i) for i in range(30)]
        before = _segments(wal)
        assert len(before) >= 10
        assert positions[18].segment == positions[19].segment  # two entries a segment
        log.commit(positions[18])
        assert _segments(wal) == [s for s in before if int(s[:-4]) >= positions[18].segment]
        log.commit(positions[19])  # its segment is now wholly committed
        assert _segments(wal) == [s for s in before if int(s[:-4]) > positions[19].segment]
        assert [e[-3:] for e in _payloads(log)] == [b"%03d" % i for i in range(20, 30)]
        log.commit(Position(0, 0))  # an older position changes nothing
        assert len(_payloads(log)) == 10
    with WriteAheadLog(wal, segment_bytes=100) as log:  # the checkpoint holds across opens
        assert [e[-3:] for e in _payloads(log)] == [b"%03d" % i for i in range(20, 30)]
        log.commit(positions[-1])
        assert _payloads(log) == []
    with WriteAheadLog(wal) as log:
        assert _payloads(log) == [] and log.pending_bytes == 0


def test_a_corrupt_checkpoint_replays_everything_left(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    with WriteAheadLog(wal) as log:
        first = _append(log, b"one")
        log.append(b"two")
        log.commit(first)
    (wal / "checkpoint").write_bytes(b"\x00" * 20)
    with WriteAheadLog(wal) as log:
        assert _payloads(log) == [b"one", b"two"]  # more than needed, never less


def test_over_its_bound_the_log_refuses_and_counts_until_a_commit(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    dropped = Counter("wal_dropped", "d", registry=registry)
    with WriteAheadLog(tmp_path / "wal", max_bytes=1000, on_drop=dropped.inc) as log:
        accepted = [p for p in (log.append(b"y" * 92) for _ in range(15)) if p is not None]
        assert len(accepted) == 10 and log.pending_bytes == 1000  # 8-byte header each
        assert log.dropped == 5 and registry.get_sample_value("wal_dropped_total") == 5
        log.commit(accepted[4])
        assert log.pending_bytes == 500
        assert log.append(b"y" * 92) is not None
    with WriteAheadLog(tmp_path / "wal") as log:
        assert len(_payloads(log)) == 6


def test_a_closed_log_refuses(tmp_path: Path) -> None:
    log = WriteAheadLog(tmp_path / "wal")
    log.close()
    assert log.append(b"late") is None and log.dropped == 1
    log.commit(Position(1, 1))  # a commit after close changes nothing
    log.close()  # twice is fine


def test_appends_from_many_threads_are_whole_and_each_has_its_own_position(
    tmp_path: Path,
) -> None:
    wal = tmp_path / "wal"
    got: list[Position] = []
    with WriteAheadLog(wal, segment_bytes=8192) as log:

        def work(t: int) -> None:
            mine = [_append(log, b"t%d-%d|" % (t, i) + b"z" * (i % 50)) for i in range(500)]
            got.extend(mine)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert len(set(got)) == 4000
    with WriteAheadLog(wal) as log:
        replayed = list(log.replay())
    assert sorted(p for p, _ in replayed) == sorted(got)
    per_thread: dict[bytes, list[int]] = {}
    for _, payload in replayed:
        head, _, _ = payload.partition(b"|")
        t, i = head.split(b"-")
        per_thread.setdefault(t, []).append(int(i))
    assert all(v == list(range(500)) for v in per_thread.values())  # each thread in order


def test_the_group_flush_fsyncs_in_the_background(tmp_path: Path) -> None:
    with WriteAheadLog(tmp_path / "off") as log:
        log.append(b"a")
        assert log.syncs == 0  # off by default: the page cache (survives kill -9)
    with WriteAheadLog(tmp_path / "on", fsync_interval=0.01, segment_bytes=64) as log:
        for i in range(200):
            log.append(b"entry %d" % i)
        deadline = time.monotonic() + 30
        while log.syncs == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log.syncs >= 1
        log.append(b"last")
    with WriteAheadLog(tmp_path / "on") as log:  # rolled segments were fsynced and closed
        assert len(_payloads(log)) == 201


def test_private_modes_and_no_symlinks(tmp_path: Path) -> None:
    wal = tmp_path / "deep" / "wal"
    with WriteAheadLog(wal) as log:
        log.commit(_append(log, b"secret-ish"))
    for path in (tmp_path / "deep", wal):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    for path in wal.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    with pytest.raises(NotADirectoryError):
        WriteAheadLog(tmp_path / "link")
    assert list(elsewhere.iterdir()) == []


def test_slots_keep_logs_apart_and_orphans_are_the_unheld_ones(tmp_path: Path) -> None:
    parent = tmp_path / "records"
    first = WriteAheadLog.claim(parent)
    second = WriteAheadLog.claim(parent)
    assert (first.directory.name, second.directory.name) == ("0", "1")
    with pytest.raises(BlockingIOError):
        WriteAheadLog(first.directory)
    second.append(b"left behind")
    second.close()
    orphans = WriteAheadLog.orphans(parent)
    orphan = next(orphans)
    assert orphan.directory.name == "1" and _payloads(orphan) == [b"left behind"]
    assert list(orphans) == []  # slot 0 is held
    with WriteAheadLog.claim(parent) as again:  # the iterator closed the orphan
        assert again.directory.name == "1"
    first.close()


def test_a_slot_held_by_a_live_process_is_not_an_orphan_until_it_dies(tmp_path: Path) -> None:
    parent = tmp_path / "records"
    code = f"""
import sys, time
from pathlib import Path
from shipyard.wal import WriteAheadLog
log = WriteAheadLog.claim(Path({str(parent)!r}))
log.append(b"from the other process")
print(log.directory.name, flush=True)
time.sleep(600)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=ROOT)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"0"
        assert list(WriteAheadLog.orphans(parent)) == []
        with WriteAheadLog.claim(parent) as mine:
            assert mine.directory.name == "1"
    finally:
        proc.kill()
        proc.wait()
    found = [(o.directory.name, _payloads(o)) for o in WriteAheadLog.orphans(parent)]
    assert ("0", [b"from the other process"]) in found
