from pathlib import Path

from byol_discovery.code_tracking import code_digest, source_files

PACKAGE = Path(__file__).resolve().parents[2] / "workflow" / "byol_discovery"


def _names(paths: list[Path]) -> set[str]:
    return {str(path.relative_to(PACKAGE)) for path in paths if PACKAGE in path.parents}


def test_source_files_follow_imports_inside_functions_too(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text("def main():\n    from byol_discovery import optim\n")
    found = source_files(script)
    assert script.resolve() in found
    assert _names(found) == {"optim.py"}, "optim imports nothing else of the package"


def test_a_stage_depends_on_what_it_runs_not_on_every_stage() -> None:
    found = _names(source_files(PACKAGE / "stages" / "train.py"))
    assert {"training.py", "optim.py", "model.py", "augmentation.py", "io/store.py", "stages/common.py",
            "tensors.py", "checkpoint.py", "resume.py"} <= found
    assert not found & {"anomaly_scores.py", "clustering.py", "active_learning_strategies.py", "stages/cluster.py",
                        "stages/__init__.py"}


def test_the_features_stage_runs_the_checkpoint_and_tensor_code_not_training() -> None:
    found = _names(source_files(PACKAGE / "stages" / "features.py"))
    assert {"stages/features.py", "feature_extraction.py", "checkpoint.py", "tensors.py", "model.py"} <= found
    assert not found & {"training.py", "resume.py", "optim.py", "augmentation.py"}


def test_modules_a_registry_names_for_importlib_count_as_imported() -> None:
    found = _names(source_files(PACKAGE / "stages" / "acquire.py"))
    assert {"sources/registry.py", "sources/simulated/dataset.py", "sources/mirabest.py", "sources/first.py",
            "sources/gz_decals.py", "sources/legacy_fits.py", "sources/download/many_files.py"} <= found


def test_the_code_digest_follows_contents_not_location(tmp_path: Path) -> None:
    """A rule's code param: the same scripts in a checkout moved elsewhere give the same
    digest (nothing reruns); an edit to one gives another."""
    here, there = tmp_path / "here" / "scripts", tmp_path / "there" / "scripts"
    for folder in (here, there):
        folder.mkdir(parents=True)
        (folder / "stage.py").write_text("from byol_discovery import optim\n")
    assert code_digest(here / "stage.py") == code_digest(there / "stage.py")
    (there / "stage.py").write_text("from byol_discovery import optim  # edited\n")
    assert code_digest(here / "stage.py") != code_digest(there / "stage.py")
    assert code_digest(PACKAGE / "stages" / "train.py") != code_digest(PACKAGE / "stages" / "cluster.py")
