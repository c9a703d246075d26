"""Where recorded training steps are kept between runs (``experiments.recording.cache``): the
folder a setting names, and why a named folder cannot serve. Plain paths, no torch, so that a
run's settings are checked without importing the recording."""
import os
from pathlib import Path
from typing import Optional

#: the environment variable naming the cache's folder, or ``off``
ENVIRONMENT = "ELBO_LAB_RECORDING_CACHE"


def cache_folder(setting: Optional[str] = None) -> Optional[Path]:
    """The cache's folder: ``setting`` (a folder, or ``off``: None), else the environment's
    ``ELBO_LAB_RECORDING_CACHE`` (likewise), else the user's cache folder."""
    setting = setting or os.environ.get(ENVIRONMENT)
    if setting == "off":
        return None
    if setting:
        return Path(setting).expanduser()
    home = os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()
    return Path(home) / "elbo-lab" / "recordings"


def folder_error(setting: Optional[str]) -> Optional[str]:
    """Why a folder named for the cache (``--recording-cache``) cannot hold it, or None: a
    file of that name, or no folder above it that this user may write into."""
    folder = cache_folder(setting) if setting else None
    if folder is None:
        return None
    if folder.exists() and not folder.is_dir():
        return f"--recording-cache {setting} is a file, not a folder: name a folder, or off"
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return (f"--recording-cache {setting}: {existing} cannot be written into; name a folder "
                "you may write, or off")
    return None
