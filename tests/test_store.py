import pytest

from icn_node.store import NodeStore, StoreError


def test_records_survive_reopen(tmp_path):
    path = tmp_path / "node.db"
    s = NodeStore(path)
    s.put("tasks", b"\x01" * 32, "negotiating", 1.0, {"a": 1, "b": b"\x00"})
    s.put("tasks", b"\x02" * 32, "completed", 2.0, {"a": 2})
    s.put("tasks", b"\x01" * 32, "running", 3.0, {"a": 3})
    s.set_meta("seq", 41)
    s.close()
    s = NodeStore(path)
    assert s.get("tasks", b"\x01" * 32) == {"a": 3}
    assert [k for k, _ in s.scan("tasks")] == [b"\x01" * 32, b"\x02" * 32]
    assert [d for _, d in s.scan("tasks", states=["completed"])] == [{"a": 2}]
    assert s.count("tasks") == {"running": 1, "completed": 1}
    assert s.get_meta("seq") == 41 and s.get_meta("absent", 7) == 7
    assert s.find_prefix("tasks", b"\x01") == [b"\x01" * 32]
    assert s.get("jobs", b"\x01" * 32) is None


def test_unknown_table_and_schema_version(tmp_path):
    s = NodeStore(tmp_path / "n.db")
    with pytest.raises(ValueError):
        s.put("nope", b"k", "x", 0.0, {})
    s.set_meta("schema_version", 99)
    s.close()
    with pytest.raises(StoreError, match="schema version 99"):
        NodeStore(tmp_path / "n.db")


def test_wal_mode(tmp_path):
    s = NodeStore(tmp_path / "n.db")
    assert s._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
