"""Every config in conf/ composes, and every featurizer config instantiates to a registered view."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from featurestore import FeatureStore, FeatureView, Standardizer

CONF = Path(__file__).resolve().parents[1] / "conf"
PRIMARY = sorted(p.stem for p in CONF.glob("*.yaml"))
GROUP_OPTIONS = [
    (group.name, option.stem)
    for group in sorted(p for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")
    for option in sorted(group.glob("*.yaml"))
]


@pytest.mark.parametrize("config_name", PRIMARY)
def test_primary_config_composes(config_name):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(config_name)
    assert cfg


@pytest.mark.parametrize("group, option", GROUP_OPTIONS)
def test_every_group_option_composes(group, option):
    overrides = [f"{group}=[{option}]"] if group in ("dataset", "featurizer") else [f"{group}={option}"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("featurize", overrides=overrides)
    node = cfg[group][option] if group in ("dataset", "featurizer") else cfg[group]
    assert node is not None
    if group == "featurizer":
        assert isinstance(instantiate(node), FeatureView)
    if group == "standardizer":
        assert isinstance(instantiate(node), Standardizer)


def test_featurize_defaults_cover_the_shipped_datasets(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURESTORE_ROOT", str(tmp_path))
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("featurize")
    assert set(cfg.dataset) == {"esol", "freesolv", "lipophilicity", "moleculeace", "kiba_sample", "drugs", "moses_sample"}
    store = instantiate(cfg.store)
    assert isinstance(store, FeatureStore) and store.root == tmp_path
    views = {name: instantiate(node) for name, node in cfg.featurizer.items()}
    for name, spec in cfg.dataset.items():
        for entity in ("molecules", "proteins"):
            for view in spec.get(entity, {}).get("views", []):
                assert view in views, f"{name} asks for {view}"
