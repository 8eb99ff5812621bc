"""The result store: atomic, strict-JSON records that verify themselves, and claims that let sweeps share it."""

import json
import math
import os
import socket
import subprocess
import sys
import time

import pytest

from milr_core import ENGINE_VERSION
from milr_core.store import CorruptRecord, ResultStore, content_hash, decode, encode, provenance


def record(depth: int, eta_star: float, loss: float = float("nan")) -> dict:
    cell = {"kind": "eta_star", "dataset": "gaussians", "depth": depth, "width": 16, "seed": 0, "train": {"batch_size": 32}}
    return {
        "hash": content_hash(cell),
        "cell": cell,
        "labels": {"grid": "g", "variant": "base"},
        "result": {"eta_star": eta_star, "bracket": [eta_star, 1.1 * eta_star], "seed": 0},
        "ledger": [
            {"lr": 0.5, "outcome": "success", "seed": 0, "final_loss": 0.3},
            {"lr": 2.0, "outcome": "diverged", "seed": 0, "final_loss": loss},
        ],
        "provenance": provenance("cpu", 1.25),
    }


def test_put_get_roundtrip_strict_json_and_format(tmp_path):
    store = ResultStore(tmp_path / "store")
    given = record(1, 0.75, loss=float("inf"))
    path = store.put(given)
    assert path.name == f"{given['hash']}.json" and store.has(given["hash"])
    back = store.get(given["hash"])
    assert back["ledger"][1]["final_loss"] == math.inf and back["result"] == given["result"]
    assert back["format"] == 2 and len(back["digest"]) == 64
    text = path.read_text()
    json.loads(text, parse_constant=lambda name: pytest.fail(f"non-strict JSON constant {name}"))
    assert '{"$float": "Infinity"}' in text and text.startswith('{\n "cell": {\n')
    assert '  {"final_loss": 0.3, "lr": 0.5, "outcome": "success", "seed": 0},\n' in text  # one probe per line
    with pytest.raises(KeyError, match="no valid record"):
        store.get("0" * 64)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1.5, [1.0, float("nan")], {"a": None}])
def test_non_finite_numbers_survive_encoding(value):
    back = decode(json.loads(json.dumps(encode(value), allow_nan=False)))
    assert json.dumps(back) == json.dumps(value)  # NaN prints as NaN on both sides


@pytest.mark.parametrize("damage", ["edit", "truncate", "empty", "rename"])
def test_a_damaged_record_is_named_moved_aside_and_never_used(tmp_path, damage):
    store = ResultStore(tmp_path / "store")
    good = record(1, 0.75)
    path = store.put(good)
    if damage == "edit":  # eta* x 1000 by hand
        path.write_text(path.read_text().replace('"eta_star": 0.75', '"eta_star": 750.0'))
    elif damage == "truncate":
        path.write_text(path.read_text()[:198])
    elif damage == "empty":
        path.write_text("")
    else:  # a valid record under another cell's name
        path.rename(store.file("f" * 64))
        path = store.file("f" * 64)
    name = path.stem
    with pytest.warns(UserWarning, match=f"record .*{name}.json is damaged"):
        assert not store.has(name)
    assert not path.exists() and (store.path / "quarantine" / path.name).exists()
    assert store.records() == []


def test_verification_names_what_is_wrong():
    from milr_core.store import digest_of, verified

    good = record(1, 0.75) | {"format": 2}
    good["digest"] = digest_of(good)
    assert verified(good, good["hash"]) is good
    with pytest.raises(CorruptRecord, match="digest"):
        verified(good | {"result": {}}, good["hash"])
    with pytest.raises(CorruptRecord, match="lacks digest"):
        verified({k: v for k, v in good.items() if k != "digest"}, good["hash"])


def test_frames_flatten_settings_and_probes(tmp_path):
    store = ResultStore(tmp_path)
    for depth, eta in ((1, 0.75), (2, 0.5)):
        store.put(record(depth, eta))
    frame = store.to_frame()
    assert list(frame.columns[:7]) == ["hash", "grid", "variant", "dataset", "depth", "width", "seed"]
    assert set(frame["eta_star"]) == {0.75, 0.5} and "train.batch_size" in frame and "provenance.torch" in frame
    assert len(store.ledger_frame()) == 4


def test_provenance_fields():
    origin = provenance("cpu", 1.25, seeds_batched=3)
    assert origin["engine_version"] == ENGINE_VERSION and origin["device"].startswith("cpu")
    assert origin["wall_time_s"] == 1.25 and origin["seeds_batched"] == 3 and "git_commit" in origin


def test_leftover_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    leftover = tmp_path / f".abc.{socket.gethostname()}.{int(dead.stdout)}.tmp"
    alive = tmp_path / f".abd.{socket.gethostname()}.{os.getpid()}.tmp"
    leftover.write_text("{")
    alive.write_text("{")
    ResultStore(tmp_path)
    assert not leftover.exists() and alive.exists()


def test_claims_exclude_others_and_stale_claims_are_taken_over(tmp_path):
    store = ResultStore(tmp_path)
    with store.claimed("group") as mine:
        assert mine and store.claim_file("group").exists()
        assert not store.try_claim("group")  # held by a live process (this one)
    assert not store.claim_file("group").exists()
    # A claim left by a process that died on this machine is stale: taken over at once.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    store.claim_file("other").parent.mkdir(exist_ok=True)
    store.claim_file("other").write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout), "since": 0}))
    assert store.try_claim("other")
    # Another machine's claim is stale once its heartbeat stops.
    store.claim_file("remote").write_text(json.dumps({"host": "elsewhere", "pid": 1, "since": 0}))
    assert not store.try_claim("remote")
    old = time.time() - 3600
    os.utime(store.claim_file("remote"), (old, old))
    assert store.try_claim("remote")


def test_records_of_an_earlier_engine_are_ignored_not_moved(tmp_path):
    old = record(3, 0.2)  # format 1: no format, no digest
    path = tmp_path / f"{old['hash']}.json"
    path.write_text(json.dumps(old))
    with pytest.warns(UserWarning, match="earlier engine"):
        assert ResultStore(tmp_path).read(old["hash"]) is None
    assert path.exists() and not (tmp_path / "quarantine").exists()


RACE = """
import json, os, sys, threading, time
from milr_core.store import ResultStore
store, start_at, n = ResultStore(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
wins = []
barrier = threading.Barrier(n)
def claim():
    barrier.wait()
    if store.try_claim("group"):
        wins.append(store.claims.tokens["group"])
threads = [threading.Thread(target=claim) for _ in range(n)]
time.sleep(max(0.0, start_at - time.time()))
for t in threads: t.start()
for t in threads: t.join()
time.sleep(max(0.0, start_at + 3.0 - time.time()))  # the winner stays alive until every racer has tried: a claim
print(json.dumps(wins))                             # whose owner has exited is rightly stale, and taken over
"""


@pytest.mark.parametrize("before", ["free", "stale"])
def test_a_thousand_simultaneous_claims_have_exactly_one_winner(tmp_path, before):
    """4 processes x 250 threads call try_claim on one key at the same instant: one wins, and its claim is on disk.
    With a stale claim already there (its owner died), exactly one of them takes it over."""
    store = ResultStore(tmp_path)
    if before == "stale":
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        store.claims.folder.mkdir(exist_ok=True)
        store.claim_file("group").write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout)}))
    start_at = time.time() + 1.5  # every process has started its threads by then
    racers = [subprocess.Popen([sys.executable, "-c", RACE, str(tmp_path), str(start_at), "250"], stdout=subprocess.PIPE,
                               text=True) for _ in range(4)]  # fmt: skip
    wins = [token for racer in racers for token in json.loads(racer.communicate(timeout=60)[0])]
    assert len(wins) == 1, f"{len(wins)} winners"
    assert json.loads(store.claim_file("group").read_text())["token"] == wins[0]


READER = """
import json, sys, os
path, stop, reads, bad = sys.argv[1], sys.argv[2], 0, 0
while not os.path.exists(stop):
    try:
        text = open(path, "rb").read()
    except FileNotFoundError:
        continue
    reads += 1
    try:
        json.loads(text)["pid"]
    except (ValueError, KeyError):
        bad += 1
print(json.dumps([reads, bad]))
"""


def test_a_claim_is_never_seen_empty_or_partial(tmp_path):
    """Another process reading the claim file while it is taken and released 300 times reads whole claims or nothing."""
    store = ResultStore(tmp_path)
    store.claims.folder.mkdir()
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(store.claim_file("g")), str(stop)], stdout=subprocess.PIPE)
    time.sleep(0.2)
    for _ in range(300):
        assert store.try_claim("g")
        time.sleep(0.001)
        store.release("g")
    stop.touch()
    reads, bad = json.loads(reader.communicate(timeout=30)[0])
    assert reads > 0 and bad == 0


def test_liveness_is_the_pid_and_its_start_time_and_the_heartbeat(tmp_path):
    """A live unrelated process with the claimed pid but another start time is not the owner; a zombie is gone; a
    live owner whose heartbeat stopped for STALE_AFTER_S is taken over; describe_claim says who holds it and the bound."""
    from milr_core.store_claims import STALE_AFTER_S, process_start

    store = ResultStore(tmp_path)
    store.claims.folder.mkdir(exist_ok=True)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        host = socket.gethostname()
        owner = {"host": host, "pid": live.pid, "start": process_start(live.pid)}
        store.claim_file("held").write_text(json.dumps(owner))
        assert not store.try_claim("held") and store.claimed_by_others("held")
        line = store.describe_claim("held")
        assert f"pid {live.pid}" in line and "heartbeat 0 s ago" in line and f"{STALE_AFTER_S:.0f} s old" in line
        store.claim_file("recycled").write_text(json.dumps(owner | {"start": owner["start"] - 1}))
        assert store.try_claim("recycled")  # that pid now belongs to another process
        old = time.time() - STALE_AFTER_S - 1
        os.utime(store.claim_file("held"), (old, old))  # its heartbeat stopped: a hung owner
        assert store.describe_claim("held") is None and store.try_claim("held")
        while process_start(zombie.pid) is not None and open(f"/proc/{zombie.pid}/stat").read().split()[2] != "Z":
            time.sleep(0.01)  # exited, not reaped
        owner = {"host": host, "pid": zombie.pid, "start": process_start(zombie.pid)}
        store.claim_file("zombie").write_text(json.dumps(owner))
        assert store.try_claim("zombie")
    finally:
        live.kill()
        live.wait()
        zombie.wait()


def test_release_leaves_a_claim_someone_else_took_over(tmp_path):
    store, rival = ResultStore(tmp_path), ResultStore(tmp_path)
    assert store.try_claim("g")
    old = time.time() - 3600
    os.utime(store.claim_file("g"), (old, old))
    assert rival.try_claim("g")  # our heartbeat had stopped: taken over
    store.release("g")
    assert store.claim_file("g").exists() and rival.claims.mine("g")
