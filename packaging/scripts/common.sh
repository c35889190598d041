# Shared by the maintainer scripts: build.sh puts it after each script's
# "#!/bin/sh" and "set -e". They must work without a running systemd (a
# container, a chroot, CI) and never start, stop or restart a Sluice that
# Pacemaker runs.

unit=sluice.service

# systemd_running: systemd is PID 1 here, so systemctl may be asked.
systemd_running() {
	[ -d /run/systemd/system ]
}

# pacemaker_manages_sluice: a Pacemaker resource of this cluster runs Sluice
# (ocf:sluice:sluice or systemd:sluice), as the live CIB says or, with the
# cluster stopped on this node, its saved copy.
pacemaker_manages_sluice() {
	pattern='<primitive [^>]*type="sluice(\.service)?"'
	if command -v cibadmin >/dev/null 2>&1 &&
		timeout 10 cibadmin --query --scope resources 2>/dev/null | grep -Eq "$pattern"; then
		return 0
	fi
	if command -v crm_resource >/dev/null 2>&1 &&
		timeout 10 crm_resource --list 2>/dev/null | grep -Eq '(ocf:sluice:sluice|systemd:sluice)'; then
		return 0
	fi
	[ -r /var/lib/pacemaker/cib/cib.xml ] && grep -Eq "$pattern" /var/lib/pacemaker/cib/cib.xml
}

# leave_to_pacemaker: the unit is not enabled (systemd does not start it at
# boot) and a Pacemaker resource runs Sluice: the package leaves it alone.
leave_to_pacemaker() {
	if systemd_running && systemctl is-enabled --quiet "$unit" 2>/dev/null; then
		return 1
	fi
	pacemaker_manages_sluice
}
