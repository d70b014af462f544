"""A throwaway Samba Active Directory domain controller for tests, in a network namespace of its own.

Usage (a pytest fixture owns the lifetime; see ``samba_dc`` in ``tests/conftest.py``)::

    dc = start_samba_dc(tmp_path)
    try:
        ...  # dc.url (ldaps://127.0.0.1:<port>), dc.base_dn, dc.service_dn / dc.service_password
    finally:
        dc.stop()

Steps:

1. ``samba-tool domain provision --server-role=dc --dns-backend=NONE --use-rfc2307`` into ``<tmp>/dc``
   with its own ``etc/smb.conf`` (``server services = ldap`` only; pid, lock, state, cache and log
   directories all under ``<tmp>``), about 4 s.
2. Offline, with Samba's own Python bindings (``python3-samba``): the OUs ``OU=people`` and
   ``OU=groups`` and a service account ``svc-tenure`` holding only the rights the README lists for
   Tenure's bind account (create/delete users in the people OU, write their properties, reset their
   password; write ``member`` on the groups in the groups OU), as ACEs on the two OUs.
3. ``ip netns add tenure-dc-<random>`` with its loopback up, and ``samba -i -M single`` started in it
   with ``ip netns exec`` (it ``exec``\\ s, so the PID we hold is Samba's). Samba's ports are fixed
   (389/636/88/445…), hence the namespace: two runs on one machine never collide, and nothing is
   listening outside it.
4. The test reaches it through :mod:`tests.support.netns_relay`, started the same way and handed
   listening sockets bound on the host's ``127.0.0.1`` (a socket keeps the namespace it was made in):
   ``url`` is LDAPS (636), ``plain_url`` plain LDAP (389, where Samba refuses simple binds:
   "strong auth required").

Both processes run in interactive mode with a pipe as standard input: Samba (``-i``) and the relay exit
when it closes, so neither can outlive the test process. :meth:`SambaDC.stop` ends them by PID, ends any
process still in the namespace and deletes the namespace.

When this machine cannot run it (not root, no ``ip netns``, Samba not installed),
:class:`SambaDCUnavailable` says why: the fixture skips outside CI and fails in CI (``CI=true``). A DC
that is installed but does not come up raises :class:`SambaDCError` with Samba's output: never a skip.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Self

__all__ = ["SambaDC", "SambaDCError", "SambaDCUnavailable", "skip_or_fail", "start_samba_dc"]

SAMBA = "/usr/sbin/samba"
SAMBA_TOOL = "/usr/bin/samba-tool"
SYSTEM_PYTHON = "/usr/bin/python3"  # the interpreter python3-samba is built for
RELAY = Path(__file__).with_name("netns_relay.py")
REALM = "TENURE.TEST"
DOMAIN = "TENURE"
SERVICE_ACCOUNT = "svc-tenure"
OUS = ("people", "groups")

# Schema GUIDs (MS-ADA1/MS-ADSC) and the Reset Password extended right (MS-ADTS 5.1.3.2.1).
USER_CLASS = "bf967aba-0de6-11d0-a285-00aa003049e2"
GROUP_CLASS = "bf967a9c-0de6-11d0-a285-00aa003049e2"
MEMBER_ATTRIBUTE = "bf9679c0-0de6-11d0-a285-00aa003049e2"
RESET_PASSWORD = "00299570-246d-11d0-a768-00aa006e0529"

# Run with the system python3 (Samba's bindings): OUs, the service account and its delegated rights.
_SETUP_SCRIPT = f"""
import sys
from samba.auth import system_session
from samba.dcerpc import security
from samba.ndr import ndr_unpack
from samba.param import LoadParm
from samba.samdb import SamDB
from samba.sd_utils import SDUtils

conf, account, password = sys.argv[1:4]
lp = LoadParm()
lp.load(conf)
db = SamDB(url=lp.samdb_url(), session_info=system_session(), lp=lp)
base = str(db.domain_dn())
for ou in {OUS!r}:
    db.create_ou(f"OU={{ou}},{{base}}")
db.newuser(account, password)
found = db.search(base, expression=f"(sAMAccountName={{account}})", attrs=["objectSid"])
sid = str(ndr_unpack(security.dom_sid, found[0]["objectSid"][0]))
people = [
    f"(OA;CI;CCDC;{USER_CLASS};;{{sid}})",  # create and delete user objects
    f"(OA;CIIO;RPWP;;{USER_CLASS};{{sid}})",  # read/write the properties of the users below
    f"(OA;CIIO;CR;{RESET_PASSWORD};{USER_CLASS};{{sid}})",  # reset their password
]
groups = [f"(OA;CIIO;WP;{MEMBER_ATTRIBUTE};{GROUP_CLASS};{{sid}})"]  # write member on the groups below
sd = SDUtils(db)
for ou, aces in (("people", people), ("groups", groups)):
    sd.dacl_add_ace(f"OU={{ou}},{{base}}", "".join(aces))
"""


class SambaDCUnavailable(RuntimeError):
    """This machine cannot run a throwaway DC (not root, no network namespaces, Samba not installed)."""


class SambaDCError(RuntimeError):
    """Samba was there but did not provision or start; the message carries its output."""


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a test that needs the DC on a machine that cannot run one, but fail it in CI (``CI=true``),
    where a skipped AD suite would hide a missing install step."""
    import pytest

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI must run the Samba AD DC tests: {reason}")
    pytest.skip(f"no Samba AD DC here: {reason}")


def _password() -> str:
    """A random password meeting AD's default complexity (three of four character classes)."""
    return f"Tn-{secrets.token_urlsafe(18)}-9a"


def _run(cmd: list[str], what: str, *, timeout: float = 120) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()[-3000:]
        raise SambaDCError(f"{what} failed (exit {proc.returncode}): {output}")


def _ip() -> str:
    found = shutil.which("ip") or "/usr/sbin/ip"
    if not os.access(found, os.X_OK):
        raise SambaDCUnavailable("the `ip` command (iproute2) is missing: no network namespace possible")
    return found


def _preflight() -> str:
    if os.geteuid() != 0:
        raise SambaDCUnavailable("a Samba DC in a network namespace needs root (ip netns add)")
    for binary in (SAMBA, SAMBA_TOOL, SYSTEM_PYTHON):
        if not os.access(binary, os.X_OK):
            raise SambaDCUnavailable(
                f"{binary} not found: run scripts/install-peers.sh (Debian samba, samba-ad-dc)"
            )
    return _ip()


def _stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """Close its stdin (it exits on EOF), then terminate it by PID, then kill it."""
    if proc is None:
        return
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass
class SambaDC:
    """A running DC; ``stop()`` ends its processes by PID, removes the namespace, and is safe twice."""

    url: str
    plain_url: str
    base_dn: str
    realm: str
    admin_dn: str
    admin_password: str = field(repr=False)
    service_dn: str
    service_password: str = field(repr=False)
    namespace: str
    workdir: Path
    _ip: str = field(repr=False)
    _samba: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _relay: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _namespace_made: bool = field(default=True, repr=False)

    @property
    def pids(self) -> list[int]:
        """Samba's and the relay's PIDs while they run (empty once stopped)."""
        return [proc.pid for proc in (self._samba, self._relay) if proc is not None]

    @property
    def people_dn(self) -> str:
        return f"OU=people,{self.base_dn}"

    @property
    def groups_dn(self) -> str:
        return f"OU=groups,{self.base_dn}"

    @property
    def upn_suffix(self) -> str:
        return self.realm.lower()

    def connection(self, user: str, password: str, *, url: str | None = None) -> Any:
        """A bound ldap3 connection (LDAPS, certificate not checked: the DC's is self-signed); ldap3's
        exception when the bind is refused."""
        import ssl

        import ldap3

        tls = ldap3.Tls(validate=ssl.CERT_NONE)
        server = ldap3.Server(url or self.url, get_info=ldap3.NONE, connect_timeout=5, tls=tls)
        conn = ldap3.Connection(
            server, user=user, password=password, raise_exceptions=True, receive_timeout=30
        )
        try:
            conn.bind()
        except BaseException:
            with contextlib.suppress(Exception):
                conn.unbind()
            raise
        return conn

    def admin_connection(self) -> Any:
        """Bound as the domain Administrator, for test set-up and inspection."""
        return self.connection(self.admin_dn, self.admin_password)

    def clear(self) -> int:
        """Delete every entry below the people and groups OUs (deepest first); returns how many went."""
        import ldap3

        conn = self.admin_connection()
        removed = 0
        try:
            for base in (self.people_dn, self.groups_dn):
                conn.search(base, "(objectClass=*)", ldap3.SUBTREE, attributes=[])
                dns = [e["dn"] for e in conn.response if e.get("type") == "searchResEntry"]
                for dn in sorted(dns, key=lambda d: d.count(","), reverse=True):
                    if dn.lower() != base.lower():
                        conn.delete(dn)
                        removed += 1
        finally:
            conn.unbind()
        return removed

    def stop(self) -> None:
        """End the relay and Samba by PID, then anything left in the namespace, then the namespace."""
        relay, samba, self._relay, self._samba = self._relay, self._samba, None, None
        _stop_process(relay)
        _stop_process(samba)
        if not self._namespace_made:
            return
        self._namespace_made = False
        pids = subprocess.run(
            [self._ip, "netns", "pids", self.namespace], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:  # only our processes can be in our namespace
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run([self._ip, "netns", "del", self.namespace], capture_output=True, check=False)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _provision(workdir: Path, admin_password: str) -> Path:
    dc = workdir / "dc"
    for sub in ("run", "ncalrpc", "log"):
        (dc / sub).mkdir(parents=True, exist_ok=True)
    options = {
        "server services": "ldap",
        "pid directory": dc / "run",
        "ncalrpc dir": dc / "ncalrpc",
        "log file": dc / "log" / "log.%m",
        "interfaces": "lo",
        "bind interfaces only": "yes",
    }
    _run(
        [
            SAMBA_TOOL,
            "domain",
            "provision",
            "--server-role=dc",
            "--dns-backend=NONE",
            "--use-rfc2307",
            f"--realm={REALM}",
            f"--domain={DOMAIN}",
            "--host-name=dc1",
            f"--adminpass={admin_password}",
            f"--targetdir={dc}",
            *(f"--option={name} = {value}" for name, value in options.items()),
        ],
        "samba-tool domain provision",
    )
    return dc / "etc" / "smb.conf"


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def _wait_until_answering(dc: SambaDC, log: Path, deadline: float) -> None:
    """Poll until an LDAPS bind as the service account works through the relay."""
    last = "no answer"
    while time.monotonic() < deadline:
        for name, proc in (("samba", dc._samba), ("relay", dc._relay)):
            if proc is not None and proc.poll() is not None:
                raise SambaDCError(f"{name} exited early: {log.read_text(errors='replace')[-3000:]}")
        try:
            dc.connection(dc.service_dn, dc.service_password).unbind()
            return
        except Exception as exc:  # noqa: BLE001 - not listening or not answering yet
            last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
    raise SambaDCError(
        f"Samba did not answer LDAPS in time ({last}): {log.read_text(errors='replace')[-3000:]}"
    )


def start_samba_dc(tmpdir: Path | str, *, start_timeout: float = 90.0) -> SambaDC:
    """Provision a DC under ``tmpdir``, start it in a new network namespace and wait for LDAPS."""
    ip = _preflight()
    workdir = Path(tmpdir).resolve()
    admin_password, service_password = _password(), _password()
    conf = _provision(workdir, admin_password)
    _run(
        [SYSTEM_PYTHON, "-c", _SETUP_SCRIPT, str(conf), SERVICE_ACCOUNT, service_password],
        "delegating Tenure's rights",
    )
    namespace = f"tenure-dc-{secrets.token_hex(4)}"
    made = subprocess.run([ip, "netns", "add", namespace], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        raise SambaDCUnavailable(f"cannot create a network namespace: {made.stderr.strip()}")
    base_dn = ",".join(f"DC={part}" for part in REALM.lower().split("."))
    dc = SambaDC(
        url="",
        plain_url="",
        base_dn=base_dn,
        realm=REALM,
        admin_dn=f"CN=Administrator,CN=Users,{base_dn}",
        admin_password=admin_password,
        service_dn=f"CN={SERVICE_ACCOUNT},CN=Users,{base_dn}",
        service_password=service_password,
        namespace=namespace,
        workdir=workdir,
        _ip=ip,
    )
    log = workdir / "samba.out"
    try:
        _run([ip, "-n", namespace, "link", "set", "lo", "up"], "bringing the namespace's loopback up")
        with log.open("wb") as out:
            dc._samba = subprocess.Popen(
                [ip, "netns", "exec", namespace, SAMBA, "-i", "-M", "single", "-s", str(conf)],
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches pytest, which stops it by PID
            )
            ldaps, ldap = _listening_socket(), _listening_socket()
            try:
                dc.url = f"ldaps://127.0.0.1:{ldaps.getsockname()[1]}"
                dc.plain_url = f"ldap://127.0.0.1:{ldap.getsockname()[1]}"
                dc._relay = subprocess.Popen(
                    [
                        ip,
                        "netns",
                        "exec",
                        namespace,
                        sys.executable,
                        str(RELAY),
                        f"{ldaps.fileno()}:127.0.0.1:636",
                        f"{ldap.fileno()}:127.0.0.1:389",
                    ],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    pass_fds=(ldaps.fileno(), ldap.fileno()),
                    start_new_session=True,
                )
            finally:
                ldaps.close()  # the relay holds them now
                ldap.close()
        _wait_until_answering(dc, log, time.monotonic() + start_timeout)
    except BaseException:
        dc.stop()
        raise
    return dc
