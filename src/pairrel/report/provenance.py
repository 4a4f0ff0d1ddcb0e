"""Which study a results folder belongs to, for ``pairrel report --results DIR`` without ``--config``.

A harness experiment folder ``results/{experiment}/`` holds the frozen config its DAG ran with
(``config.yaml``, written by the workflow's config job) beside the mteb cache (``mteb/``). Given
such a folder (or the cache, or a folder inside it), the report loads that study, so that the
same rule decides which results are current as with ``--config`` and in the DAG
(:meth:`pairrel.study.Study.current_revision`: the checkpoint's weights on disk decide, stale
results are left out with a note). A folder of published results has no such config and is read
as it is.
"""

from __future__ import annotations

from pathlib import Path

FROZEN_CONFIG = "config.yaml"
MTEB_DIR = "mteb"


def experiment_folder(results: Path) -> Path | None:
    """``results/{experiment}`` for a path inside a harness experiment folder, else None."""
    path = Path(results).absolute()
    for folder in (path, *path.parents):
        if (folder / FROZEN_CONFIG).is_file() and (folder / MTEB_DIR).is_dir() \
                and (folder == path or (folder / MTEB_DIR) == path or (folder / MTEB_DIR) in path.parents):
            return folder
    return None


def study_of_results(paths: list[Path]):
    """The :class:`~pairrel.study.Study` whose frozen config sits above the ``--results``
    folders (one study only), or None. A frozen config that no longer loads is an error naming it."""
    from pairrel.config import ConfigError, load_config
    from pairrel.study import Study

    folders = {folder for folder in map(experiment_folder, paths) if folder is not None}
    if len(folders) != 1:
        return None
    folder = folders.pop()
    config = folder / FROZEN_CONFIG
    try:
        study = Study(load_config(config), root=folder.parent.parent)
    except ConfigError as err:
        raise ConfigError(f"{config} (the study's frozen config, used to leave stale results out): {err}") from None
    if study.results.absolute() != folder:
        return None  # a config copied from elsewhere: its experiment is not this folder
    return study
