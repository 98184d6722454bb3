"""Find a Hydra config by name under ``scripts/<stage>/`` so no ``--config-path`` is needed.

``python main_pretrain.py --config-name sqsp_cifar10`` resolves to
``scripts/pretrain/cifar10/sqsp_cifar10.yaml``; ``--config-name cifar10/vicreg_real_cifar10``
names a file inside ``scripts/pretrain``; an explicit ``--config-path`` is left to Hydra, as in
solo-learn.
"""

from __future__ import annotations

import difflib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigNotFoundError(ValueError):
    """No config, or more than one, answers to the requested name."""


def _flag_value(argv: list[str], flag: str) -> tuple[int, str] | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return i, argv[i + 1]
        if arg.startswith(flag + "="):
            return i, arg.split("=", 1)[1]
    return None


def experiment_configs(stage_dir: Path) -> list[Path]:
    """The experiment configs of a stage: ``<dataset>/<name>.yaml`` (config groups such as
    ``<dataset>/augmentations/*.yaml`` or ``wandb/*.yaml`` sit deeper and are not experiments)."""
    return sorted(stage_dir.glob("*/*.yaml"))


def find_config(name: str, stage_dir: Path) -> Path:
    """The single experiment ``<name>.yaml`` below ``stage_dir``; an unknown name is one line
    with the closest names."""
    name = name.removesuffix(".yaml")
    direct = stage_dir / f"{name}.yaml"
    if "/" in name:
        if direct.is_file():
            return direct
        raise ConfigNotFoundError(f"no config {direct}")
    experiments = experiment_configs(stage_dir)
    matches = [p for p in experiments if p.stem == name]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = sorted({p.stem for p in experiments})
        closest = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"closest: {', '.join(closest)}" if closest else f"known: {', '.join(known)}"
        raise ConfigNotFoundError(f"no config named '{name}' under {stage_dir}; {hint}")
    options = ", ".join(str(p.relative_to(stage_dir).with_suffix("")) for p in matches)
    raise ConfigNotFoundError(
        f"config name '{name}' is ambiguous under {stage_dir}: {options}; "
        "pass one of these as --config-name, or add --config-path"
    )


def with_config_path(argv: list[str], stage: str, default_name: str) -> list[str]:
    """Return ``argv`` with ``--config-path``/``--config-name`` filled in for Hydra; an unknown
    name exits with one line."""
    if _flag_value(argv, "--config-path") or _flag_value(argv, "-cp"):
        return argv
    stage_dir = REPO_ROOT / "scripts" / stage
    found = _flag_value(argv, "--config-name") or _flag_value(argv, "-cn")
    rest = list(argv)
    if found is None:
        name = default_name
    else:
        index, name = found
        width = 1 if "=" in rest[index] else 2
        del rest[index : index + width]
    try:
        path = find_config(name, stage_dir)
    except ConfigNotFoundError as error:
        raise SystemExit(f"{Path(argv[0]).name}: {error}") from None
    return [rest[0], "--config-path", str(path.parent), "--config-name", path.stem, *rest[1:]]
