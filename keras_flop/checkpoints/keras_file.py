"""`load_keras_file`: a `.keras` file loaded with errors that say what is wrong with it.

Keras reports a `.keras` file it cannot open as a zip archive (a copy cut short, a download
interrupted, any other file renamed) as "File not found", and loads damaged weight bytes
without a word (it reads them by seeking into the archive, past the CRC check). Here a missing
file, a directory and a file that is not a complete, intact `.keras` archive are three
different one-line `ValueError`s, each naming the file; the CRC check reads the file once
(about a second per GB).
"""

import os
import zipfile

# What `Model.save("x.keras")` always writes into the archive.
REQUIRED_MEMBERS = ("config.json", "metadata.json")


def keras_file_problem(path, check_data=False):
    """Why `path` is not a complete `.keras` archive, or None: not a zip archive (truncated or
    another file), a member missing, or (`check_data`, which reads the whole file) a member
    whose bytes fail their CRC."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [name for name in REQUIRED_MEMBERS if name not in names]
            if missing:
                return f"no {', '.join(missing)} in the archive"
            if check_data:
                bad = archive.testzip()
                if bad is not None:
                    return f"member {bad} is damaged"
    except zipfile.BadZipFile as error:
        return f"not a zip archive: {error}"
    except (OSError, EOFError, ValueError, NotImplementedError) as error:
        return " ".join(str(error).split()) or type(error).__name__
    return None


def load_keras_file(path, what=None, compile=False):
    """The model saved in the `.keras` file `path` (`keras.saving.load_model`).

    Args:
        path: the `.keras` file.
        what: how the messages name the file (e.g. `"--dense_model"`); default "Keras file".
        compile: restore the training configuration too (default: no).

    Raises:
        ValueError: one line naming the file when it does not exist, is a directory, or is
            not a valid `.keras` file (truncated, or a member failing its CRC). Errors of a
            valid file (e.g. a class that is not registered) are Keras' own.

    Example:
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "model.keras")
    >>> with open(path, "wb") as f:  # a copy cut short
    ...     _ = f.write(b"PK\x03\x04 not the rest")
    >>> try:
    ...     load_keras_file(path, "--dense_model")
    ... except ValueError as error:
    ...     print(str(error).split(" (")[0].replace(path, "PATH"))
    --dense_model PATH is not a valid .keras file
    """
    import keras

    path = os.fspath(path)
    name = f"{what} {path}" if what else f"Keras file {path}"
    if not os.path.exists(path):
        raise ValueError(f"{name} does not exist.")
    if os.path.isdir(path):
        raise ValueError(f"{name} is a directory, not a .keras file.")
    # The CRC of every member is checked first: Keras reads the weights by seeking into the
    # archive, which skips the check, and would load damaged bytes as weights.
    problem = keras_file_problem(path, check_data=True)
    if problem is None:
        return keras.saving.load_model(path, compile=compile)
    raise ValueError(f"{name} is not a valid .keras file (truncated or corrupt: {problem}); "
                     "save or copy it again.") from None
