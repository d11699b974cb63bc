"""Console logging of the command-line programs (`vpn_jax.main`, `.evaluate`, `.sample_main`).

Their console shows a progress bar and a results table; orbax, TFDS and JAX log dozens of INFO
lines per checkpoint save and restore, which would bury both. So the programs log warnings and
errors only, unless the user asks for more with absl's `--verbosity` / `-v` (e.g. `-v 0` for
INFO, `-v 1` for DEBUG).
"""

from absl import flags
from absl import logging


def quiet_unless_asked() -> bool:
    """Sets absl's verbosity to WARNING unless `--verbosity` / `-v` was on the command line.

    Call it inside the program's `main`, after absl has parsed the flags. absl's `app.run` sets
    `--verbosity` to 0 (INFO) itself when the user did not give it, so the flag never reads as
    its default there (`using_default_value` is False); `present`, the number of times the flag
    appeared on the command line, tells the two apart. Returns whether it lowered the verbosity.
    """
    if flags.FLAGS['verbosity'].present:
        return False
    logging.set_verbosity(logging.WARNING)
    return True
