"""One training run per workdir: an exclusive `flock` on `workdir/train.lock`.

The lock is held for the run's lifetime on an open file descriptor. The kernel releases it when
the descriptor is closed or the process dies in any way (kill -9 included), so a crashed run
never leaves a workdir locked; the file itself stays and only records the last holder's pid and
host for the message. (flock works on local file systems; on NFS it depends on the mount.)
"""

import fcntl
import os
import socket

LOCK_FILE = 'train.lock'


class WorkdirLockedError(RuntimeError):
    """Another process is training in this workdir."""


class WorkdirLock:
    """Holds `workdir/train.lock` until `release` (or the process's end); a context manager."""

    def __init__(self, workdir: str):
        self.workdir = os.path.abspath(os.path.expanduser(workdir))
        self.path = os.path.join(self.workdir, LOCK_FILE)
        os.makedirs(self.workdir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.pread(fd, 200, 0).decode(errors='replace').strip()
            finally:
                os.close(fd)
            raise WorkdirLockedError(
                f'Another training run is using the workdir {self.workdir} (it holds '
                f'{self.path}{": " + holder if holder else ""}). Wait for it to finish, stop it, '
                'or give another --workdir.') from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f'pid {os.getpid()} on {socket.gethostname()}\n'.encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # Closing the descriptor releases the flock.
            self._fd = None

    def __enter__(self) -> 'WorkdirLock':
        return self

    def __exit__(self, *exc) -> None:
        self.release()
