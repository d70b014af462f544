"""A throwaway OpenLDAP ``slapd`` for tests: own cn=config, own mdb database, 127.0.0.1 on a free port.

Usage (a pytest fixture owns the lifetime and stops it by PID)::

    handle = start_slapd(tmp_path)
    try:
        ...  # handle.url, handle.base_dn, handle.admin_dn, handle.admin_password
    finally:
        handle.stop()

The configuration is generated as LDIF and loaded offline with ``slapadd -n0 -F <dir>/slapd.d``
(slapd-config(5)): an mdb database for ``dc=tenure,dc=test`` under the temporary directory, the core,
cosine, nis and inetorgperson schemas from ``/etc/ldap/schema``, and the memberof, refint and lastbind
overlays (modules from ``/usr/lib/ldap``; ``scripts/install-peers.sh`` installs slapd and ldap-utils).
The base entries (the suffix and ``ou=people``, ``ou=groups``, ``ou=disabled``) are loaded with
``slapadd -n1`` before the server starts. slapd runs in the foreground (``-d 0``), so the PID we hold
is slapd's own; :meth:`SlapdHandle.stop` terminates it, then kills it. When slapd cannot start,
:class:`SlapdError` carries its stderr: tests never skip silently.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

__all__ = ["SlapdError", "SlapdHandle", "free_port", "start_slapd"]

SLAPD = "/usr/sbin/slapd"
SLAPADD = "/usr/sbin/slapadd"
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
SCHEMAS = ("core", "cosine", "nis", "inetorgperson")
DEFAULT_BASE_DN = "dc=tenure,dc=test"
BASE_OUS = ("people", "groups", "disabled")


class SlapdError(RuntimeError):
    """slapd (or slapadd) failed; the message carries its stderr."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that the OS reports free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SlapdHandle:
    """A running slapd; ``stop()`` ends it by PID (terminate, then kill) and is safe to call twice."""

    url: str
    base_dn: str
    admin_dn: str
    admin_password: str = field(repr=False)
    pid: int
    port: int
    workdir: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def people_dn(self) -> str:
        return f"ou=people,{self.base_dn}"

    @property
    def groups_dn(self) -> str:
        return f"ou=groups,{self.base_dn}"

    @property
    def disabled_dn(self) -> str:
        return f"ou=disabled,{self.base_dn}"

    def admin_connection(self):  # type: ignore[no-untyped-def]
        """A bound ldap3 connection as the root DN, for test set-up and inspection."""
        import ldap3

        server = ldap3.Server(self.url, get_info=ldap3.NONE, connect_timeout=5)
        return ldap3.Connection(
            server, user=self.admin_dn, password=self.admin_password, auto_bind=True, raise_exceptions=True
        )

    def clear(self, *ous: str) -> int:
        """Delete every entry below ``ou=<name>`` for each name (default: people, disabled, groups);
        returns how many went. Lets one slapd serve a whole module while each test starts from empty OUs."""
        import ldap3

        conn = self.admin_connection()
        removed = 0
        try:
            for ou in ous or ("people", "disabled", "groups"):
                conn.search(f"ou={ou},{self.base_dn}", "(objectClass=*)", ldap3.LEVEL, attributes=[])
                for dn in [e["dn"] for e in conn.response if e.get("type") == "searchResEntry"]:
                    conn.delete(dn)
                    removed += 1
        finally:
            conn.unbind()
        return removed

    def stop(self) -> None:
        """Terminate slapd by PID, wait up to 5 s, then kill it."""
        proc = self._process
        if proc is None:
            return
        self._process = None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _config_ldif(workdir: Path, base_dn: str, admin_dn: str, admin_password: str) -> str:
    includes = "\n".join(f"include: file://{SCHEMA_DIR / name}.ldif" for name in SCHEMAS)
    return f"""\
dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {workdir}/slapd.pid
olcArgsFile: {workdir}/slapd.args
olcLogLevel: none

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: {MODULE_DIR}
olcModuleLoad: back_mdb
olcModuleLoad: memberof
olcModuleLoad: refint
olcModuleLoad: lastbind

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

{includes}

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend
olcSizeLimit: unlimited

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcDbDirectory: {workdir}/data
olcSuffix: {base_dn}
olcRootDN: {admin_dn}
olcRootPW: {admin_password}
olcDbMaxSize: 268435456
olcDbIndex: objectClass eq
olcDbIndex: uid eq
olcDbIndex: cn eq
olcDbIndex: employeeNumber eq
olcDbIndex: entryUUID eq
olcDbIndex: member eq
olcAccess: {{0}}to attrs=userPassword by self write by anonymous auth by * none
olcAccess: {{1}}to * by * read

dn: olcOverlay={{0}}memberof,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOfConfig
olcOverlay: {{0}}memberof
olcMemberOfRefInt: TRUE
olcMemberOfGroupOC: groupOfNames
olcMemberOfMemberAD: member
olcMemberOfMemberOfAD: memberOf

dn: olcOverlay={{1}}refint,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcRefintConfig
olcOverlay: {{1}}refint
olcRefintAttribute: member
olcRefintAttribute: manager

dn: olcOverlay={{2}}lastbind,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcLastBindConfig
olcOverlay: {{2}}lastbind
"""


def _base_ldif(base_dn: str) -> str:
    dc = base_dn.split(",")[0].split("=", 1)[1]
    entries = [f"dn: {base_dn}\nobjectClass: dcObject\nobjectClass: organization\ndc: {dc}\no: {dc}\n"]
    entries += [f"dn: ou={ou},{base_dn}\nobjectClass: organizationalUnit\nou: {ou}\n" for ou in BASE_OUS]
    return "\n".join(entries)


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        raise SlapdError(f"{' '.join(cmd[:3])} failed (exit {proc.returncode}): {proc.stderr.strip()}")


def _wait_until_answering(proc: subprocess.Popen[bytes], port: int, deadline: float) -> None:
    """Poll until slapd accepts a TCP connection and answers an anonymous root DSE read."""
    import ldap3

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SlapdError("slapd exited early")
        try:  # a plain TCP probe first: ldap3 leaves the socket of a refused connect open
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            time.sleep(0.05)
            continue
        server = ldap3.Server(f"ldap://127.0.0.1:{port}", get_info=ldap3.NONE, connect_timeout=1)
        conn = ldap3.Connection(server, receive_timeout=2)
        try:
            conn.bind()
            conn.search("", "(objectClass=*)", search_scope=ldap3.BASE, attributes=["namingContexts"])
            return
        except Exception:  # noqa: BLE001 - listening but not answering yet
            time.sleep(0.05)
        finally:
            conn.unbind()
    raise SlapdError("slapd did not answer within the start timeout")


def start_slapd(
    tmpdir: Path | str,
    *,
    base_dn: str = DEFAULT_BASE_DN,
    admin_password: str | None = None,
    start_timeout: float = 15.0,
) -> SlapdHandle:
    """Generate a cn=config under ``tmpdir``, start slapd on 127.0.0.1:<free port> and wait for it.

    Raises :class:`SlapdError` with slapd's stderr when it does not come up.
    """
    for binary in (SLAPD, SLAPADD):
        if not os.access(binary, os.X_OK):
            raise SlapdError(
                f"{binary} not found: run scripts/install-peers.sh (Debian packages slapd, ldap-utils)"
            )
    workdir = Path(tmpdir).resolve() / "slapd"
    if workdir.exists():
        shutil.rmtree(workdir)
    config_dir = workdir / "slapd.d"
    (workdir / "data").mkdir(parents=True)
    config_dir.mkdir()
    admin_dn = f"cn=admin,{base_dn}"
    admin_password = admin_password or secrets.token_urlsafe(16)
    (workdir / "config.ldif").write_text(_config_ldif(workdir, base_dn, admin_dn, admin_password))
    (workdir / "base.ldif").write_text(_base_ldif(base_dn))
    _run([SLAPADD, "-n0", "-F", str(config_dir), "-l", str(workdir / "config.ldif")])
    _run([SLAPADD, "-n1", "-F", str(config_dir), "-l", str(workdir / "base.ldif")])

    last_error = ""
    for _attempt in range(3):  # the free port may be taken between asking and binding
        port = free_port()
        url = f"ldap://127.0.0.1:{port}"  # ldap3 rejects a trailing slash; slapd -h needs one
        stderr_path = workdir / f"slapd-{port}.stderr"
        stderr_file = stderr_path.open("wb")
        proc = subprocess.Popen(
            [SLAPD, "-F", str(config_dir), "-h", f"{url}/", "-d", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            start_new_session=True,  # a Ctrl-C in the test run reaches pytest, which stops us by PID
        )
        stderr_file.close()
        try:
            _wait_until_answering(proc, port, time.monotonic() + start_timeout)
        except SlapdError as exc:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
            last_error = f"{exc}: {stderr_path.read_text(errors='replace').strip()}"
            continue
        return SlapdHandle(
            url=url,
            base_dn=base_dn,
            admin_dn=admin_dn,
            admin_password=admin_password,
            pid=proc.pid,
            port=port,
            workdir=workdir,
            _process=proc,
        )
    raise SlapdError(f"slapd did not start: {last_error}")
