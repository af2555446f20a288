"""Training checkpoints: one file holding model (with masks), optimizer, schedule, RNG and loop state.

Written atomically (a temporary file in the same directory, flushed and fsynced, then os.replace),
so a crash leaves either the old checkpoint or the new one, never a torn file; the temporary file a
killed write leaves behind is removed by the next save. Loading a truncated
or corrupt file (including a flipped bit: CRC-32 of every member) raises CheckpointError naming the file.
"""
import os
import random
import secrets
import zipfile

import numpy as np
import torch

FORMAT = "amgp-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, truncated, corrupt or from another program."""


def capture_rng_state():
    """Every RNG a training step may use: torch (CPU and CUDA), Python's random, NumPy's global."""
    mt_name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": {"name": mt_name, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
    }


def restore_rng_state(state):
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
                         numpy_state["has_gauss"], numpy_state["cached"]))


def save_checkpoint(path, state):
    """Atomically write `state` (a dict of tensors / plain Python values) to `path`. The file's
    permissions follow the umask, as for any file the user writes. Temporary files that killed
    writes of this checkpoint left behind are removed once the new one is in place."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    temporary, fd = _create_temporary(directory, os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)
    _remove_stale_temporaries(directory, os.path.basename(path))


def _create_temporary(directory, name):
    """A new file `.{name}.{pid}.{random}.tmp` in `directory`, opened for writing. Unlike
    tempfile.mkstemp (always 0600) it is created 0666 minus the umask, like open() would."""
    while True:
        temporary = os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return temporary, os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue


def _remove_stale_temporaries(directory, name):
    """Delete `.{name}.*.tmp` files whose writer process is gone (a write killed midway); a write of
    the same checkpoint still running in another process keeps its file."""
    prefix = f".{name}."
    for entry in os.listdir(directory):
        if not (entry.startswith(prefix) and entry.endswith(".tmp")):
            continue
        writer = entry[len(prefix):-len(".tmp")].split(".")[0]
        if writer.isdigit() and _process_alive(int(writer)):
            continue
        try:
            os.unlink(os.path.join(directory, entry))
        except FileNotFoundError:  # removed meanwhile by another save
            pass


def _process_alive(pid):
    if pid == os.getpid():
        return False  # this process's own leftovers (its writes are finished or cleaned up)
    if os.name != "posix":
        return True  # no harmless liveness probe (os.kill would signal it): keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _fsync_directory(directory):
    """Make the rename itself durable (not possible on every platform / file system)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_archive(path):
    """torch.load does not verify the zip archive's CRC-32 checksums, so a flipped bit in tensor data
    would load silently as a wrong weight; zipfile verifies every member."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
    except Exception as error:  # BadZipFile, zlib.error, OSError, ... for torn or foreign files
        raise CheckpointError(f"checkpoint {path!r} cannot be read (truncated or corrupt?): "
                              f"{type(error).__name__}: {error}") from error
    if bad_member is not None:
        raise CheckpointError(f"checkpoint {path!r} is corrupt: {bad_member} fails its CRC-32 check")


def load_checkpoint(path, map_location="cpu", required=()):
    """The state dict written by save_checkpoint; CheckpointError if the file is missing,
    truncated, corrupt, not an amgp checkpoint, or lacks one of the `required` keys."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    _check_archive(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for a torn zip / pickle
        raise CheckpointError(f"checkpoint {path!r} cannot be read (truncated or corrupt?): "
                              f"{type(error).__name__}: {error}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path!r} is not an amgp checkpoint (no '{FORMAT}' format marker)")
    if state.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path!r} has version {state.get('version')}, this amgp reads {VERSION}")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path!r} lacks {missing}")
    return state
