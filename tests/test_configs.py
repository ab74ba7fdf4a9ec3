"""Every config in conf/ composes with the app that uses it; featurize configs instantiate.

Generic over apps: each primary config (``conf/*.yaml``) names its groups in its
defaults list; every option of such a group must compose with that primary config.
Groups no primary lists by default (``experiment``, ``hparams_search``: ``# @package
_global_`` presets) must compose with at least one primary config.
"""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate

from featurestore import FeatureStore, FeatureView, Standardizer

CONF = Path(__file__).resolve().parents[1] / "conf"
PRIMARY = sorted(p.stem for p in CONF.glob("*.yaml"))


def _defaults(primary: str) -> dict[str, object]:
    """group -> default option(s) named in a primary config's defaults list."""
    entries = yaml.safe_load((CONF / f"{primary}.yaml").read_text()).get("defaults", [])
    out = {}
    for entry in entries:
        if isinstance(entry, dict):
            for group, option in entry.items():
                out[group.replace("optional ", "").replace("override ", "").strip()] = option
    return out


def _groups() -> list[str]:
    return sorted(str(p.relative_to(CONF)) for p in CONF.rglob("*") if p.is_dir() and any(p.glob("*.yaml")))


def _override(group: str, option: str, default: object) -> str:
    return f"{group}=[{option}]" if isinstance(default, list) else f"{group}={option}"


def _compose(primary: str, overrides: list[str]):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose(primary, overrides=overrides)


CASES = [
    (group, option.stem)
    for group in _groups()
    if not group.startswith("hydra")
    for option in sorted((CONF / group).glob("*.yaml"))
]


@pytest.mark.parametrize("primary", PRIMARY)
def test_primary_config_composes(primary):
    assert _compose(primary, [])


@pytest.mark.parametrize("group, option", CASES)
def test_every_group_option_composes(group, option):
    users = [p for p in PRIMARY if group in _defaults(p)]
    if users:
        for primary in users:
            assert _compose(primary, [_override(group, option, _defaults(primary)[group])])
        return
    errors = []
    for primary in PRIMARY:
        try:
            _compose(primary, [f"+{group}={option}"])
            return
        except Exception as exc:  # composition errors are Hydra/OmegaConf exceptions of several types
            errors.append(f"{primary}: {exc}")
    pytest.fail(f"{group}/{option} composes with no primary config: {errors}")


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "featurizer").glob("*.yaml")))
def test_featurizer_configs_instantiate_registered_views(option):
    view = instantiate(_compose("featurize", [f"featurizer=[{option}]"]).featurizer[option])
    assert isinstance(view, FeatureView) and view.id.startswith(view.featurizer)


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "standardizer").glob("*.yaml")))
def test_standardizer_configs_instantiate(option):
    assert isinstance(instantiate(_compose("featurize", [f"standardizer={option}"]).standardizer), Standardizer)


def test_featurize_defaults_cover_the_shipped_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURESTORE_ROOT", str(tmp_path))
    cfg = _compose("featurize", [])
    assert set(cfg.dataset) == {"esol", "freesolv", "lipophilicity", "moleculeace", "kiba_sample", "drugs", "moses_sample"}
    store = instantiate(cfg.store)
    assert isinstance(store, FeatureStore) and store.root == tmp_path
    for name, spec in cfg.dataset.items():
        for entity in ("molecules", "proteins"):
            for view in spec.get(entity, {}).get("views", []):
                assert view in cfg.featurizer, f"{name} asks for {view}"


@pytest.mark.parametrize("option", sorted(p.stem for p in (CONF / "hydra" / "launcher").glob("*.yaml")))
def test_launcher_configs_compose_onto_the_plugin(option):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("featurize", overrides=[f"hydra/launcher={option}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert cfg.hydra.launcher.array_parallelism > 0 and cfg.hydra.launcher.mem_gb > 0


def _hydra_primary(module: str) -> str | None:
    """The primary config of a ``@hydra.main`` app module (a package: its ``__main__``); None for other modules."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin)
    if spec.submodule_search_locations:
        path = path.with_name("__main__.py")
    found = re.search(r'@hydra\.main\([^)]*config_name="(\w+)"', path.read_text()) if path.is_file() else None
    return found.group(1) if found else None


def _documented_hydra_commands() -> list[tuple[str, str, str]]:
    """``(where, command, primary config)`` for every Hydra app run as ``python -m <app> ...`` in the README and in
    the conf files' header comments: continuation lines joined, ``&&`` chains split, ``<placeholders>`` one word."""
    sources = [("README.md", (CONF.parent / "README.md").read_text())]
    sources += [(f"conf/{p.name}", "\n".join(line.lstrip("#") for line in p.read_text().splitlines()
                                            if line.startswith("#"))) for p in sorted(CONF.glob("*.yaml"))]
    commands = []
    for where, text in sources:
        for line in re.sub(r"\\\n\s*", " ", text).splitlines():
            for segment in line.split("&&"):
                segment = re.sub(r"<[^>]+>", "PLACEHOLDER", segment.strip().strip("`"))
                found = re.match(r"(?:\.venv/bin/)?python3? -m ([\w.]+)", segment)
                primary = _hydra_primary(found.group(1)) if found else None
                if primary is not None:
                    commands.append((where, segment, primary))
    return commands


@pytest.mark.parametrize("where, command, primary", _documented_hydra_commands())
def test_documented_hydra_commands_parse_and_compose(where, command, primary):
    """A command shown to researchers must not fail on Hydra's override grammar (e.g. an unquoted ``=`` in a list)."""
    words = shlex.split(command, comments=True)
    overrides = [w for w in words[3:] if not w.startswith("-")]
    OverridesParser.create().parse_overrides(overrides)
    if not {"-m", "--multirun"} & set(words):  # a sweep is parsed, not composed
        assert _compose(primary, [o for o in overrides if not o.startswith("hydra")]), (where, command)
