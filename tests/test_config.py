import tomllib
from pathlib import Path

import pytest

from icn_node.config import (
    Config,
    describe_keys,
    format_hostport,
    load_config,
    parse_hostport,
)
from icn_node.errors import ConfigError
from icn_node.identity import NodeIdentity

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, text):
    path = tmp_path / "icnd.toml"
    path.write_text(text)
    return path


def test_defaults_validate():
    cfg = load_config(env={})
    assert cfg.compute.min_trust_execute == 0.3
    assert cfg.mesh.max_frame_bytes == 1 << 20
    assert cfg.rpc_socket == Path("/var/lib/icn/icnd.sock")


def test_shipped_config_lists_every_key_with_its_default():
    path = ROOT / "config" / "icnd.toml"
    shipped = tomllib.loads(path.read_text())
    for section, key, default, _doc in describe_keys():
        if isinstance(default, dict):
            assert key in shipped[section], f"[{section}.{key}] missing from {path}"
            continue
        assert key in shipped.get(section, {}), f"{section}.{key} missing from {path}"
        assert shipped[section][key] == default, f"{section}.{key} default differs in {path}"
    assert load_config(path, env={}) == Config(source=str(path))


def test_dev_config_is_valid():
    cfg = load_config(ROOT / "config" / "dev.toml", env={})
    assert cfg.mesh.open


def test_environment_overrides_file(tmp_path):
    path = write(tmp_path, '[mesh]\nlisten = "127.0.0.1:1000"\n')
    cfg = load_config(
        path,
        env={
            "ICN_MESH_LISTEN": "127.0.0.1:2000",
            "ICN_MESH_OPEN": "yes",
            "ICN_COMPUTE_MAX_ATTEMPTS": "5",
            "ICN_MESH_BOOTSTRAP": "127.0.0.1:1, [::1]:2",
            "ICN_SOCKET": "/ignored/by/daemon",
        },
    )
    assert cfg.mesh.listen == "127.0.0.1:2000"
    assert cfg.mesh.open is True
    assert cfg.compute.max_attempts == 5
    assert cfg.mesh.bootstrap == ["127.0.0.1:1", "[::1]:2"]


@pytest.mark.parametrize(
    "text, key, words",
    [
        ("[mesh]\nlisten = 5\n", "mesh.listen", "must be a string"),
        ('[mesh]\nlisten = "nohost"\n', "mesh.listen", "host:port"),
        ('[mesh]\nlisten = "h:70000"\n', "mesh.listen", "out of range"),
        ('[mesh]\nmembers = ["did:web:x"]\n', "mesh.members", "did:key"),
        ("[mesh]\nbogus = 1\n", "mesh.bogus", "unknown key"),
        ("[compute]\nmin_trust_execute = 1.5\n", "compute.min_trust_execute", "between"),
        ("[compute]\nmax_attempts = 2.5\n", "compute.max_attempts", "integer"),
        ('[mesh]\nopen = "yes"\n', "mesh.open", "true or false"),
        ('[log]\nformat = "xml"\n', "log.format", "one of"),
        ("[capacity]\ncpu_cores = -1\n", "capacity.cpu_cores", "negative"),
        ("[mesh]\ndegree = 20\n", "mesh.degree", "degree_low"),
        ('[trust.peers]\n"did:key:bad" = 0.5\n', "trust.peers", "did:key"),
    ],
)
def test_bad_values_name_file_key_and_problem(tmp_path, text, key, words):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path, env={})
    msg = str(err.value)
    assert str(path) in msg and key in msg and words in msg, msg


def test_trust_table_out_of_range(tmp_path):
    did = NodeIdentity.generate().did
    path = write(tmp_path, f'[trust.peers]\n"{did}" = 1.2\n')
    with pytest.raises(ConfigError, match="between 0 and 1"):
        load_config(path, env={})
    path = write(tmp_path, f'[trust]\ndefault = 0.1\n[trust.peers]\n"{did}" = 0.9\n')
    cfg = load_config(path, env={})
    assert cfg.trust_in(did) == 0.9
    assert cfg.trust_in(NodeIdentity.generate().did) == 0.1


def test_unknown_section_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section \[nodes\]"):
        load_config(write(tmp_path, "[nodes]\n"), env={})
    with pytest.raises(ConfigError, match="not a TOML file"):
        load_config(write(tmp_path, "[mesh\n"), env={})
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml", env={})


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError, match="environment ICN_MESH_DEGREE: mesh.degree"):
        load_config(env={"ICN_MESH_DEGREE": "six"})
    with pytest.raises(ConfigError, match="unknown key mesh.colour"):
        load_config(env={"ICN_MESH_COLOUR": "red"})


def test_config_is_frozen():
    cfg = load_config(env={})
    with pytest.raises(AttributeError):
        cfg.mesh.open = True  # type: ignore[misc]
    changed = cfg.replace(mesh={"open": True})
    assert changed.mesh.open and not cfg.mesh.open


@pytest.mark.parametrize(
    "text, expected",
    [("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:0", ("::1", 0)), ("host:65535", ("host", 65535))],
)
def test_hostport_round_trip(text, expected):
    assert parse_hostport(text) == expected
    assert format_hostport(*expected) == text


def test_operations_doc_lists_every_key():
    doc = (ROOT / "docs" / "OPERATIONS.md").read_text()
    missing = [f"{s}.{k}" for s, k, _d, _doc in describe_keys() if f"`{s}.{k}`" not in doc]
    assert not missing, f"document these keys in docs/OPERATIONS.md: {missing}"
