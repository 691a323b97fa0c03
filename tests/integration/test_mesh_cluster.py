"""The mesh across real icnd processes on 127.0.0.1.

One cluster serves the whole module (starting processes is the slow part): six members
bootstrapped as a chain, one outsider that knows every member's address but is in nobody's
``members``, and a raw client whose key *is* a member, used to send bad frames after a real
handshake. The tests run in file order; the kill/restart test comes last.
"""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from icn_dev.cluster import LocalCluster
from icn_node import wire
from icn_node.config import parse_hostport
from icn_node.identity import NodeIdentity
from icn_node.mesh import tls

pytestmark = pytest.mark.integration

MEMBERS = 6
OUTSIDER = 6
TOPIC = "itest"
MAX_FRAME = 65536


def wait_until(predicate, timeout: float, what: str, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


class RawClient:
    """A blocking dialer: real TLS, the real channel-bound proof, then any frames we like."""

    def __init__(self, identity: NodeIdentity, address: str) -> None:
        host, port = parse_hostport(address)
        sock = socket.create_connection((host, port), timeout=10)
        self.sock = tls.client_context().wrap_socket(sock, server_hostname=None)
        self.decoder = wire.FrameDecoder(1 << 24)
        der = self.sock.getpeercert(binary_form=True)
        self.peer_did = tls.did_from_certificate(der)
        challenge = self.recv()
        assert isinstance(challenge, wire.Challenge), challenge
        self.send(tls.make_proof(identity, challenge.nonce, der))
        self.send(wire.Hello(wire.PROTOCOL_VERSION))

    def send(self, msg: wire.Message) -> None:
        self.sock.sendall(wire.encode_frame(msg))

    def recv(self) -> wire.Message | None:
        while True:
            body = self.decoder.next_body()
            if body is not None:
                return wire.decode_message(body)
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError("no frame from the node in time") from None
            except OSError:
                return None
            if not data:
                return None
            self.decoder.feed(data)

    def recv_until(self, predicate, timeout: float = 10.0):
        """The first frame matching ``predicate`` (None at EOF); a stray Close fails the test."""
        self.send(wire.Heartbeat())  # we are alive: the node must not drop us for silence
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.recv()
            if msg is None or predicate(msg):
                return msg
            if isinstance(msg, wire.Close):
                raise AssertionError(f"the node closed the link: {msg.reason} {msg.detail}")
        raise AssertionError("no matching frame in time")

    def keepalive(self) -> None:
        """Show the node we are alive (it drops a link silent for liveness_timeout_s)."""
        self.send(wire.Heartbeat())

    def close(self) -> None:
        self.sock.close()


RAW = NodeIdentity.generate()


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="icn-mesh-"))

    def node_config(i, dids):
        mesh = {
            "heartbeat_interval_s": 0.5,
            "liveness_timeout_s": 10.0,
            "redial_min_s": 0.2,
            "redial_max_s": 2.0,
            "max_frame_bytes": MAX_FRAME,
        }
        if i == OUTSIDER:
            mesh["members"] = dids  # it would gladly join...
        else:
            mesh["members"] = [*dids[:MEMBERS], RAW.did]  # ...but no member lists it
        return {"mesh": mesh}

    c = LocalCluster(root, MEMBERS + 1, node_config=node_config, topology="chain")
    c.init()
    everyone = [n.mesh_address for n in c.nodes[:MEMBERS]]
    c.rewrite_config(OUTSIDER, {"mesh": {"bootstrap": everyone}})
    try:
        with c:
            c.start_all()
            yield c
    finally:
        shutil.rmtree(root, ignore_errors=True)


def peer_dids(c: LocalCluster, i: int) -> set[str]:
    return {p["did"] for p in c.rpc(i, "mesh.peers")["peers"] if p["state"] == "active"}


def member_dids(c: LocalCluster) -> set[str]:
    return {n.did for n in c.nodes[:MEMBERS]}


def metric(c: LocalCluster, i: int, name: str, **labels) -> float:
    address = c.rpc(i, "node.status")["listen"]["metrics"]
    text = urllib.request.urlopen(f"http://{address}/metrics", timeout=5).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if m and m.group(1) == name and ",".join(sorted((m.group(2) or "").split(","))) == want:
            return float(m.group(3))
    return 0.0


def delivered(c: LocalCluster, i: int, text: str) -> bool:
    res = c.rpc(i, "mesh.received", {"topic": TOPIC, "limit": 1000})
    return any(m.get("text") == text for m in res["messages"])


def test_six_nodes_from_a_chain_all_see_each_other_and_deliver_to_all(cluster):
    everyone = member_dids(cluster)
    for i in range(MEMBERS):
        wait_until(
            lambda i=i: peer_dids(cluster, i) == everyone - {cluster.nodes[i].did},
            20,
            f"node{i} to link every other member",
        )
    for i in range(MEMBERS):
        assert cluster.rpc(i, "node.status")["peers"] == MEMBERS - 1
        cluster.rpc(i, "mesh.subscribe", {"topic": TOPIC})
    # wait until node0 knows every member follows the topic, so the flood reaches them all
    wait_until(
        lambda: all(
            TOPIC in p["topics"]
            for p in cluster.rpc(0, "mesh.peers")["peers"]
            if p["did"] != RAW.did
        ),
        10,
        "subscriptions to reach node0",
    )
    r = cluster.icnctl(0, "mesh", "publish", TOPIC, "hello mesh")
    assert r.returncode == 0, r.stderr
    for i in range(1, MEMBERS):
        wait_until(lambda i=i: delivered(cluster, i, "hello mesh"), 10, f"node{i} to deliver")
    r = cluster.icnctl(1, "mesh", "peers")
    assert r.returncode == 0 and "active" in r.stdout and "out" in r.stdout, r.stdout
    # every link measured its round-trip time (ping on activation, then with each keepalive)
    rows = [p for p in cluster.rpc(1, "mesh.peers")["peers"] if p["state"] == "active"]
    assert rows and all(0 < p["rtt_ms"] < 1000 for p in rows), rows


def test_a_node_outside_members_is_refused_by_every_member(cluster):
    outsider = cluster.nodes[OUTSIDER].did
    for i in range(MEMBERS):
        wait_until(
            lambda i=i: metric(cluster, i, "icn_mesh_rejected_total", reason="not-member") >= 1,
            15,
            f"node{i} to refuse the outsider",
        )
        assert outsider not in peer_dids(cluster, i)
    # The outsider keeps redialing with backoff: a dial caught mid-handshake is listed until
    # the member's refusal closes it, but no link of its ever becomes active.
    wait_until(
        lambda: cluster.rpc(OUTSIDER, "mesh.peers")["peers"] == [],
        10,
        "the outsider to be left with no link",
    )
    assert '"peer_refused"' in cluster.nodes[0].log_path.read_text()


def join_as_raw_client(cluster: LocalCluster, target: int) -> RawClient:
    """A raw member client linked to ``target``, subscribed and grafted on TOPIC.

    Retried once: on a heavily loaded machine we have seen (rarely, unexplained so far) a fresh
    raw link's subscription not show up in time; a second link has always worked.
    """
    for attempt in (1, 2):
        raw = RawClient(RAW, cluster.nodes[target].mesh_address)
        assert raw.peer_did == cluster.nodes[target].did
        raw.recv_until(lambda m: isinstance(m, wire.Hello))
        raw.send(wire.Subscribe((TOPIC,)))
        raw.send(wire.Graft(TOPIC))  # join the node's mesh for the topic, so it forwards to us
        try:
            wait_until(
                lambda: any(
                    TOPIC in p["topics"] and p["state"] == "active"
                    for p in cluster.rpc(target, "mesh.peers")["peers"]
                    if p["did"] == RAW.did
                ),
                10,
                "the raw client's subscription",
            )
            return raw
        except AssertionError:
            raw.close()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def test_forged_replayed_and_oversized_frames_are_dropped_without_harm(cluster):
    target = 0
    # This test's own preconditions, whatever ran before it: every member linked to every
    # other and known by them to follow TOPIC, so node 2's flood reaches node 0 directly.
    everyone = member_dids(cluster)
    for i in range(MEMBERS):
        cluster.rpc(i, "mesh.subscribe", {"topic": TOPIC})
    for i in range(MEMBERS):
        wait_until(
            lambda i=i: (
                {
                    p["did"]
                    for p in cluster.rpc(i, "mesh.peers")["peers"]
                    if TOPIC in p["topics"] and p["state"] == "active"
                }
                >= everyone - {cluster.nodes[i].did}
            ),
            20,
            f"node{i} to see every member follow the topic",
        )
    raw = join_as_raw_client(cluster, target)
    try:
        # A genuine message from node 2 reaches the raw client; we keep it to replay.
        cluster.rpc(2, "mesh.publish", {"topic": TOPIC, "text": "genuine"})
        genuine = raw.recv_until(lambda m: isinstance(m, wire.Gossip) and m.payload == b"genuine")
        assert genuine is not None and genuine.verify()
        before = {
            r: metric(cluster, target, "icn_gossip_dropped_total", reason=r)
            for r in ("bad-signature", "duplicate", "replay-window")
        }
        now_ms = int(time.time() * 1000)
        victim = cluster.nodes[3].did
        forged = wire.Gossip(TOPIC, victim, 1, now_ms, b"forged", b"\x00" * 64)
        stale = wire.Gossip.sign(RAW, TOPIC, 2, now_ms - 3_600_000, b"stale")
        raw.send(genuine)  # a replay: already seen everywhere
        raw.send(stale)
        for reason in ("duplicate", "replay-window"):
            wait_until(
                lambda reason=reason: (
                    raw.keepalive()  # polling may take a while on a loaded machine
                    or metric(cluster, target, "icn_gossip_dropped_total", reason=reason)
                    > before[reason]
                ),
                10,
                f"a {reason} drop on node{target}",
            )
        # The link survived those. A forgery closes it: honest relays verify before forwarding.
        raw.send(forged)
        close = raw.recv_until(lambda m: isinstance(m, wire.Close))
        assert close is not None and close.reason == "bad-signature", close
        assert (
            metric(cluster, target, "icn_gossip_dropped_total", reason="bad-signature")
            > (before["bad-signature"])
        )
        raw.close()
        # An oversized frame closes a link too, with its reason.
        raw = join_as_raw_client(cluster, target)
        raw.sock.sendall(wire.HEADER.pack(MAX_FRAME + 1) + b"\x00" * 16)
        close = raw.recv_until(lambda m: isinstance(m, wire.Close))
        assert close is not None and close.reason == "frame-too-large"
    except AssertionError:
        logs = cluster.nodes[target].log_path.read_text().splitlines()
        raise AssertionError("\n".join(line for line in logs if RAW.did in line)[-3000:]) from None
    finally:
        raw.close()
    # Nothing forged or stale was delivered anywhere, and the mesh is whole.
    cluster.rpc(4, "mesh.publish", {"topic": TOPIC, "text": "after"})
    everyone = member_dids(cluster)
    for i in range(MEMBERS):
        assert not delivered(cluster, i, "forged") and not delivered(cluster, i, "stale")
        assert peer_dids(cluster, i) >= everyone - {cluster.nodes[i].did}
        if i != 4:
            wait_until(lambda i=i: delivered(cluster, i, "after"), 10, f"node{i} 'after'")


def test_killing_two_nodes_leaves_the_rest_connected_and_restarts_rejoin(cluster):
    everyone = member_dids(cluster)
    killed = (2, 3)
    for i in killed:
        cluster.kill(i)
    alive = [i for i in range(MEMBERS) if i not in killed]
    survivors = {cluster.nodes[i].did for i in alive}
    for i in alive:
        wait_until(
            lambda i=i: peer_dids(cluster, i) == survivors - {cluster.nodes[i].did},
            15,
            f"node{i} to drop the killed nodes and keep the rest",
        )
    for i in killed:
        cluster.start(i)
    for i in range(MEMBERS):
        wait_until(
            lambda i=i: peer_dids(cluster, i) == everyone - {cluster.nodes[i].did},
            20,
            f"node{i} to relink with the restarted nodes",
        )
    for i in killed:
        cluster.rpc(i, "mesh.subscribe", {"topic": TOPIC})
    wait_until(
        lambda: all(TOPIC in p["topics"] for p in cluster.rpc(0, "mesh.peers")["peers"]),
        10,
        "restarted nodes' subscriptions",
    )
    cluster.rpc(0, "mesh.publish", {"topic": TOPIC, "text": "welcome back"})
    for i in killed:
        wait_until(lambda i=i: delivered(cluster, i, "welcome back"), 10, f"node{i} delivery")
