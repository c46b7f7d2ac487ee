"""Every public import path of ko-hf 0.2 keeps working.

``fixtures/public_names_0.2.json`` was recorded from the ``ko_hf`` sources of ko-hf 0.2 (commit 9e17874): each
module, and each name it defined at top level without a leading underscore (its ``__all__`` where it had one),
plus the names a module served from its ``__getattr__``. The code has moved since (``ko_hf.card``, ``ko_hf.data``,
``ko_hf.run``); the old modules re-export what they had.
"""

import importlib
import json
import warnings
from pathlib import Path

import pytest

PUBLIC_0_2 = json.loads((Path(__file__).parent / "fixtures" / "public_names_0.2.json").read_text(encoding="utf-8"))
PATHS = [(module, name) for module, names in sorted(PUBLIC_0_2.items()) for name in names]


def test_the_record_covers_the_whole_0_2_package():
    assert len(PUBLIC_0_2) == 34 and len(PATHS) == 294
    assert {"ko_hf.modelcard", "ko_hf.data", "ko_hf.plots", "ko_hf.preflight", "ko_hf.compare.runner"} <= set(PUBLIC_0_2)


@pytest.mark.parametrize("module", sorted(PUBLIC_0_2))
def test_every_0_2_module_imports(module):
    importlib.import_module(module)


@pytest.mark.parametrize("module,name", PATHS, ids=[f"{m}.{n}" for m, n in PATHS])
def test_every_0_2_public_name_is_where_it_was(module, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # names kept for 0.2 that 0.3 deprecates
        assert hasattr(importlib.import_module(module), name)


@pytest.mark.parametrize("old,new,name", [
    ("ko_hf.modelcard", "ko_hf.card", "KOModelCardCallback"), ("ko_hf.card_data", "ko_hf.card", "KOModelCardData"),
    ("ko_hf.plots", "ko_hf.card.plots", "plot_condensation_curves"), ("ko_hf.preflight", "ko_hf.run", "FinetuneError"),
    ("ko_hf.run_folder", "ko_hf.run", "RunFolderLock"), ("ko_hf.checkpoints", "ko_hf.run", "CheckpointError"),
])
def test_an_old_path_gives_the_same_object_as_the_new_one(old, new, name):
    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)


def test_a_name_no_release_had_is_an_attribute_error_naming_the_old_module():
    import ko_hf.modelcard

    with pytest.raises(AttributeError, match="'ko_hf.modelcard' has no attribute 'no_such_name'"):
        ko_hf.modelcard.no_such_name  # noqa: B018


def test_deprecated_0_2_group_defaults_say_what_replaces_them():
    from ko_hf import optim, settings

    with pytest.warns(FutureWarning, match="group_settings"):
        assert settings.group_defaults() == settings.group_settings({})
    with pytest.warns(FutureWarning, match="group_settings"):
        assert optim.GROUP_DEFAULTS["collision_step"] == 0
