#!/usr/bin/env bash
# Installs the real local peers the test suite runs against (idempotent, non-interactive):
# OpenLDAP (slapd + ldap-utils), a Samba Active Directory domain controller (samba-tool provisions a throwaway
# domain per test run; iproute2 for the network namespace it runs in), Request Tracker 5 (SQLite, standalone
# server), Chromium for the UI check.
# The services are NOT started here: each test fixture starts its own instance and stops it by PID.
set -euo pipefail
need=()
command -v slapd >/dev/null 2>&1 || [ -x /usr/sbin/slapd ] || need+=(slapd ldap-utils)
[ -x /usr/bin/rt-server ] || [ -x /usr/sbin/rt-server ] || [ -e /usr/share/request-tracker5/libexec/rt-server ] || need+=(request-tracker5 rt5-db-sqlite rt5-standalone)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
{ [ -x /usr/sbin/samba ] && [ -x /usr/bin/samba-tool ] && [ -d /usr/lib/python3/dist-packages/samba ]; } || need+=(samba samba-ad-dc samba-ad-provision samba-dsdb-modules)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
[ ${#need[@]} -eq 0 ] && { echo "peers: all installed"; exit 0; }
export DEBIAN_FRONTEND=noninteractive
debconf-set-selections <<'SEL'
slapd slapd/no_configuration boolean true
request-tracker5 request-tracker5/dbconfig-install boolean true
request-tracker5 request-tracker5/database-type select sqlite3
request-tracker5 request-tracker5/rtname string tenure.test
request-tracker5 request-tracker5/organization string tenure.test
request-tracker5 request-tracker5/correspondaddress string rt@tenure.test
request-tracker5 request-tracker5/commentaddress string rt-comment@tenure.test
request-tracker5 request-tracker5/webbaseurl string http://127.0.0.1
request-tracker5 request-tracker5/webpath string /rt
request-tracker5 request-tracker5/initial-root-password password tenure-rt-root
request-tracker5 request-tracker5/handle-siteconfig-permissions boolean true
request-tracker5 request-tracker5/install-cronjobs boolean false
SEL
echo "peers: installing ${need[*]}"
apt-get update -q >/dev/null 2>&1 || true
apt-get install -y -q --no-install-recommends "${need[@]}" >/tmp/tenure-apt.log 2>&1 || { tail -30 /tmp/tenure-apt.log; exit 1; }
# Debian starts slapd on install; our fixtures run their own slapd, so stop the system one (by its pid file:
# a fixture's slapd, should one be running, is left alone).
if [ -s /run/slapd/slapd.pid ]; then
  service slapd stop >/dev/null 2>&1 || kill "$(cat /run/slapd/slapd.pid)" 2>/dev/null || true
fi
# Likewise Samba's file-server daemons: the tests provision and run their own DC in a network namespace.
for svc in smbd:smbd nmbd:nmbd winbind:winbindd; do
  if [ -e "/run/samba/${svc#*:}.pid" ]; then service "${svc%%:*}" stop >/dev/null 2>&1 || true; fi
done
echo "peers: installed"
