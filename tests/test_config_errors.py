"""Every config error names its source (file, variable or command line), the key and the
problem; nothing but ConfigError ever comes out of load_config, which never uses the network."""

from __future__ import annotations

import os
import socket
import typing

import pytest

from icn_node.config import (
    MAX_FILE_BYTES,
    SECTIONS,
    address_errors,
    check_hostport,
    describe_keys,
    load_config,
)
from icn_node.errors import ConfigError


def write(tmp_path, data: str | bytes):
    path = tmp_path / "icnd.toml"
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    return path


def error(path=None, env=None) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path, env=env or {})
    return str(err.value)


# --- the file itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, words",
    [
        (
            b'[mesh]\nlisten = "\xff\xfe"\n',
            "not a TOML file (not UTF-8: byte 0xff at offset 17, line 2)",
        ),
        (bytes(range(256)), "not a TOML file (not UTF-8"),
        (b"\x00\x01\x02binary", "not a TOML file (Invalid statement"),
        (b"[mesh\n", "not a TOML file (Expected ']'"),
        (b"a = " + b"[" * 5000, "not a TOML file (arrays or tables nested too deeply)"),
        (b"a = " + b"{b = " * 3000, "not a TOML file (arrays or tables nested too deeply)"),
        (b"[mesh]\ndegree = " + b"7" * 5000, "not a TOML file (a number too long to read)"),
        (b"# " + b"x" * MAX_FILE_BYTES, f"not a TOML file (larger than {MAX_FILE_BYTES} bytes)"),
    ],
    ids=["utf8", "all-bytes", "nul", "syntax", "deep-array", "deep-table", "long-int", "huge"],
)
def test_a_file_that_is_not_toml_is_named(tmp_path, data, words):
    path = write(tmp_path, data)
    msg = error(path)
    assert msg.startswith(f"{path}: {words}"), msg


def test_a_directory_or_missing_file_is_named(tmp_path):
    assert error(tmp_path) == f"{tmp_path}: is a directory, not a TOML file"
    assert error(tmp_path / "absent.toml") == f"{tmp_path / 'absent.toml'}: no such file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_named(tmp_path):
    path = write(tmp_path, "")
    path.chmod(0)
    assert error(path) == f"{path}: cannot read (Permission denied)"


def test_top_level_shapes_are_named(tmp_path):
    msg = error(write(tmp_path, 'listen = "x"\n'))
    assert "listen = ... is outside any section" in msg, msg
    msg = error(write(tmp_path, "mesh = 5\n"))
    assert msg == f"{tmp_path / 'icnd.toml'}: mesh: must be a table ([mesh]), got 5", msg
    msg = error(write(tmp_path, '"a b" = {x = 1}\n'))
    assert "unknown section ['a b']" in msg, msg
    msg = error(write(tmp_path, "[mesh.sub]\nx = 1\n"))
    assert "mesh.sub: unknown key" in msg, msg


# --- every key's type ------------------------------------------------------------------------

WRONG = {str: "5", int: '"x"', float: '"x"', bool: '"yes"', list: "5", dict: "5"}


def _base(tp):
    return typing.get_origin(tp) or tp


KEYS = [(s, k) for s, k, _d, _doc in describe_keys()]


@pytest.mark.parametrize("section, key", KEYS, ids=[f"{s}.{k}" for s, k in KEYS])
def test_every_wrongly_typed_key_names_section_and_key(tmp_path, section, key):
    tp = typing.get_type_hints(SECTIONS[section])[key]
    path = write(tmp_path, f"[{section}]\n{key} = {WRONG[_base(tp)]}\n")
    msg = error(path)
    assert msg.startswith(f"{path}: {section}.{key}: must be "), msg


@pytest.mark.parametrize(
    "text, words",
    [
        (
            "[compute]\nannounce_interval_s = 1" + "0" * 400,
            "must be a number, got an integer of 401",
        ),
        ("[compute]\nannounce_interval_s = inf", "must be a number, got inf"),
        ("[compute]\nannounce_interval_s = nan", "must be a number, got nan"),
        (
            "[compute]\nmax_attempts = 1" + "0" * 4000,
            "between 1 and 100, got an integer of 4001 digits",
        ),
        ('[log]\nlevel = "' + "x" * 5000 + '"', "got 'xxxxxxxx"),
        ("[mesh]\nlisten = 1979-05-27T07:32:00Z", "must be a string, got datetime"),
        ("[mesh]\nbootstrap = [[1], {a = 1}]", "must be a list of strings, got a list of tables"),
    ],
)
def test_odd_values_are_described_briefly(tmp_path, text, words):
    msg = error(write(tmp_path, text + "\n"))
    assert words in msg and len(msg) < 300, msg


# --- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, words",
    [
        ("not a host:7946", "'not a host' is neither an IP address nor a valid host name"),
        ("nohost", "expected host:port"),
        (":7946", "missing host"),
        ("h:70000", "out of range"),
        ("h:８０", "port must be digits"),
        ("h:8_0", "port must be digits"),
        ("h:+80", "port must be digits"),
        ("::1:7946", "an IPv6 address needs brackets, [::1]:7946"),
        ("[example.com]:1", "only an IPv6 address goes in brackets"),
        ("256.1.1.1:1", "'256.1.1.1' is not a valid IPv4 address"),
        ("a..b:1", "neither an IP address nor a valid host name"),
        ("-a.example:1", "neither an IP address nor a valid host name"),
        ("x" * 64 + ".example:1", "neither an IP address nor a valid host name"),
        ("bücher.example:1", "neither an IP address nor a valid host name"),
    ],
)
def test_bad_addresses_name_the_key(tmp_path, text, words):
    path = write(tmp_path, f'[mesh]\nlisten = "{text}"\n')
    msg = error(path)
    assert msg.startswith(f"{path}: mesh.listen: ") and words in msg, msg


@pytest.mark.parametrize(
    "text",
    ["localhost:1", "example.com.:80", "[::1]:0", "10.0.0.1:7946", "xn--bcher-kva.example:1"],
)
def test_good_addresses(text):
    check_hostport(text, listen=True)


def test_port_zero_only_for_listen_addresses(tmp_path):
    load_config(write(tmp_path, '[mesh]\nlisten = "127.0.0.1:0"\n[metrics]\nlisten = "[::1]:0"\n'))
    msg = error(write(tmp_path, '[mesh]\nbootstrap = ["10.0.0.1:1", "10.0.0.2:0"]\n'))
    assert "mesh.bootstrap: entry 2: port 0 is only meaningful for a listen address" in msg, msg
    msg = error(write(tmp_path, '[mesh]\nadvertise = "10.0.0.1:0"\n'))
    assert "mesh.advertise: port 0" in msg, msg


def test_load_config_never_resolves(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("load_config looked up a name")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    path = write(tmp_path, '[mesh]\nlisten = "nothing.invalid:1"\nbootstrap = ["a.invalid:2"]\n')
    cfg = load_config(path, env={})
    assert cfg.mesh.listen == "nothing.invalid:1"


def fake_resolver(known: set[str]):
    asked = []

    def resolve(host, port):
        asked.append((host, port))
        if host not in known:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve, asked


def test_address_errors_name_source_key_and_entry(tmp_path):
    path = write(
        tmp_path,
        '[mesh]\nlisten = "good.example:7946"\nbootstrap = ["10.0.0.1:1", "bad.example:2"]\n',
    )
    cfg = load_config(path, env={"ICN_METRICS_LISTEN": "gone.example:9464"})
    resolve, asked = fake_resolver({"good.example"})
    errors = [str(e) for e in address_errors(cfg, resolve=resolve)]
    assert errors == [
        "environment ICN_METRICS_LISTEN: metrics.listen: cannot resolve host 'gone.example' in "
        "'gone.example:9464' (Name or service not known)",
        f"{path}: mesh.bootstrap: entry 2: cannot resolve host 'bad.example' in "
        "'bad.example:2' (Name or service not known)",
    ]
    # IP literals are never looked up
    assert sorted(asked) == [("bad.example", 2), ("gone.example", 9464), ("good.example", 7946)]
    resolve, _ = fake_resolver(set())
    assert [e.key for e in address_errors(cfg, ("mesh.listen",), resolve)] == ["mesh.listen"]


# --- environment -------------------------------------------------------------------------------

ENV_WRONG = {int: "abc", float: "abc", bool: "maybe"}
TYPED = [(s, k) for s, k in KEYS if typing.get_type_hints(SECTIONS[s])[k] in ENV_WRONG]


@pytest.mark.parametrize("section, key", TYPED, ids=[f"{s}.{k}" for s, k in TYPED])
def test_every_bad_environment_value_names_the_variable(section, key):
    var = f"ICN_{section.upper()}_{key.upper()}"
    tp = typing.get_type_hints(SECTIONS[section])[key]
    msg = error(env={var: ENV_WRONG[tp]})
    assert msg.startswith(f"environment {var}: {section}.{key}: must be "), msg


@pytest.mark.parametrize(
    "var, text, words",
    [
        ("ICN_MESH_LISTEN", "not a host:1", "mesh.listen: 'not a host' is neither"),
        ("ICN_MESH_BOOTSTRAP", "10.0.0.1:1, bad host:2", "mesh.bootstrap: entry 2:"),
        ("ICN_MESH_MEMBERS", "did:web:x", "mesh.members: not an Ed25519 did:key DID"),
        ("ICN_COMPUTE_EXEC_ALLOWLIST", "bin/true", "compute.exec_allowlist: expected absolute"),
        ("ICN_LOG_LEVEL", "loud", "log.level: must be one of"),
        ("ICN_MESH_DEGREE", "20", "mesh.degree: need degree_low <= degree"),
        ("ICN_MESH_REDIAL_MIN_S", "100", "mesh.redial_min_s: redial_min_s must not exceed"),
        ("ICN_COMPUTE_LEASE_TIMEOUT_S", "nan", "compute.lease_timeout_s: must be a number, got"),
        ("ICN_COMPUTE_LEASE_TIMEOUT_S", "1e999", "compute.lease_timeout_s: must be a number"),
        ("ICN_MESH_DEGREE", "9" * 5000, "mesh.degree: must be an integer, got '9999"),
        ("ICN_TRUST_PEERS", "x", "trust.peers: a table; set it in the config file"),
        ("ICN_MESH_COLOUR", "red", "unknown key mesh.colour"),
    ],
)
def test_environment_errors_name_the_variable(tmp_path, var, text, words):
    path = write(tmp_path, "[mesh]\ndegree = 6\n")
    msg = error(path, env={var: text})
    assert msg.startswith(f"environment {var}: ") and words in msg and len(msg) < 400, msg


def test_cross_checks_name_where_the_value_came_from(tmp_path):
    path = write(tmp_path, "[mesh]\ndegree_low = 7\n")
    assert error(path).startswith(f"{path}: mesh.degree: need degree_low")
    assert error(env={"ICN_MESH_DEGREE_HIGH": "5"}).startswith(
        "environment ICN_MESH_DEGREE_HIGH: mesh.degree:"
    )
    with pytest.raises(ConfigError, match=r"^command line: log\.format: must be one of"):
        load_config(env={}, overrides={"log": {"format": "xml"}})
