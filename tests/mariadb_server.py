"""A throwaway MariaDB server for tests: a fresh data directory, loopback only, an
ephemeral port, a user with a password; stopped and deleted afterwards.

Needs Debian's mariadb-server package (`apt-get install mariadb-server`); its binaries
live in /usr/sbin, which is not on every PATH. Nothing is installed as a service: the
server runs as a child process of the test.
"""
import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Dict, Optional

SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"])
USER, PASSWORD, DATABASE = "mlmd", "mlmd-test-password", "mlmd"


def _which(*names: str) -> Optional[str]:
  for name in names:
    found = shutil.which(name, path=SEARCH_PATH)
    if found:
      return found
  return None


def missing_reason() -> Optional[str]:
  """Why no server can be started here, or None."""
  if not _which("mariadbd", "mysqld"):
    return "MariaDB is not installed (apt-get install mariadb-server)"
  if not _which("mariadb-install-db", "mysql_install_db"):
    return "mariadb-install-db is missing (apt-get install mariadb-server)"
  return None


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class MariaDB:

  def __init__(self):
    self.dir = tempfile.mkdtemp(prefix="mdb-")  # short: unix socket paths are limited
    self.port = _free_port()
    self.process = None

  def connection(self) -> Dict[str, object]:
    return {"host": "127.0.0.1", "port": self.port, "database": DATABASE, "user": USER,
            "password": PASSWORD}

  def __enter__(self):
    data = os.path.join(self.dir, "data")
    run_as = ["--user=root"] if os.geteuid() == 0 else []  # mariadbd refuses root otherwise
    subprocess.run([_which("mariadb-install-db", "mysql_install_db"), "--no-defaults",
                    f"--datadir={data}", "--auth-root-authentication-method=normal",
                    "--skip-test-db", *run_as], check=True, capture_output=True, timeout=120)
    init = os.path.join(self.dir, "init.sql")
    with open(init, "w") as f:
      f.write(f"CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}';\n"
              f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1';\n"
              f"CREATE DATABASE IF NOT EXISTS {DATABASE};\n")
    self.log = os.path.join(self.dir, "server.log")
    self.process = subprocess.Popen(
        [_which("mariadbd", "mysqld"), "--no-defaults", f"--datadir={data}",
         f"--socket={self.dir}/sock", f"--port={self.port}", "--bind-address=127.0.0.1",
         f"--pid-file={self.dir}/pid", f"--init-file={init}", "--skip-log-bin",
         f"--log-error={self.log}", *run_as],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    self._wait_ready()
    return self

  def _wait_ready(self, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
      if self.process.poll() is not None:
        raise RuntimeError(f"mariadbd exited ({self.process.returncode}): {self._log_tail()}")
      if os.path.exists(self.log) and "ready for connections" in open(self.log).read():
        return
      time.sleep(0.2)
    raise RuntimeError(f"mariadbd not ready after {timeout}s: {self._log_tail()}")

  def _log_tail(self) -> str:
    return open(self.log).read()[-2000:] if os.path.exists(self.log) else "(no log)"

  def __exit__(self, *exc):
    if self.process and self.process.poll() is None:
      self.process.terminate()
      try:
        self.process.wait(timeout=30)
      except subprocess.TimeoutExpired:
        self.process.kill()
        self.process.wait()
    shutil.rmtree(self.dir, ignore_errors=True)
