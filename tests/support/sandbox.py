"""Runs a command inside an approximation of a systemd unit's sandbox, without systemd (which is
not PID 1 in CI containers): `/usr/bin/python3 tests/support/sandbox.py UNIT_FILE -- COMMAND...`, as root,
under `unshare --mount --propagation private`. Used by tests/slow/test_deploy_sandbox.py to show that
the hardening of deploy/systemd/ does not break the app. Needs python3-seccomp (Debian; hence the
system Python) and systemd-analyze (to expand the unit's @syscall groups).

What it reproduces, read from the unit file: ProtectSystem=strict (every mount read-only),
PrivateTmp= (fresh /tmp and /var/tmp), RuntimeDirectory=, StateDirectory=, LogsDirectory= (a
writable folder each, on a fresh tmpfs over /run, /var/lib, /var/log), ProtectProc= and ProcSubset=
(a new procfs with hidepid= and subset=), CapabilityBoundingSet= (emptied), NoNewPrivileges=,
UMask=, SystemCallFilter= with SystemCallErrorNumber= (an allow list minus the ~ lists),
MemoryDenyWriteExecute= and RestrictAddressFamilies= (seccomp, as systemd builds them).
What it does not: User= (the command runs as uid 0 without any capability), ProtectHome= (the
test machine's Python may live under /root), PrivateDevices=, the Protect{Kernel*,Clock,...}=
settings and RestrictNamespaces= (nothing in the app tries those).
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import socket
import subprocess
import sys

import seccomp

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND = 1, 2, 4, 32, 4096
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 38, 24
libc = ctypes.CDLL(None, use_errno=True)


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    if libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                  data.encode() if data else None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def directives(path: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def syscalls(name: str, seen: set[str] | None = None) -> set[str]:
    """The system calls of a name: itself, or every member of an @group (recursively)."""
    if not name.startswith("@"):
        return {name}
    seen = seen if seen is not None else set()
    seen.add(name)
    out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True, text=True,
                         check=True).stdout
    calls: set[str] = set()
    for line in out.splitlines()[1:]:
        tok = line.strip()
        if not tok or tok.startswith("#"):
            continue
        if tok.startswith("@"):
            if tok not in seen:
                calls |= syscalls(tok, seen)
        else:
            calls.add(tok)
    return calls


REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    unit, sep, command = sys.argv[1], sys.argv[2], sys.argv[3:]
    assert sep == "--" and command, "usage: sandbox.py UNIT -- COMMAND..."
    d = directives(unit)
    yes = lambda key: d.get(key, ["no"])[-1] in ("yes", "true", "1", "strict")  # noqa: E731

    if d.get("ProtectSystem", [""])[-1] == "strict":
        for line in open("/proc/self/mountinfo"):
            point = line.split()[4].replace("\\040", " ")
            if not re.match(r"^/(proc|sys|dev)(/|$)", point):
                try:
                    mount("none", point, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
                except OSError as exc:
                    print(f"sandbox: {exc}", file=sys.stderr)
    if yes("PrivateTmp"):
        # The code runs from this checkout. Installed, it lives in /opt/marketplace; a checkout under
        # /tmp (a CI clone, say) must stay visible through the private /tmp, read-only like the rest.
        keep = [(path, os.open(path, os.O_PATH | os.O_DIRECTORY)) for path in (REPOSITORY,)
                if path.startswith(("/tmp/", "/var/tmp/"))]
        for path in ("/tmp", "/var/tmp"):
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
        for path, fd in keep:
            os.makedirs(path, exist_ok=True)
            mount(f"/proc/self/fd/{fd}", path, None, MS_BIND)
            mount("none", path, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
            os.close(fd)
    for key, base in (("RuntimeDirectory", "/run"), ("StateDirectory", "/var/lib"), ("LogsDirectory", "/var/log")):
        if key in d:
            mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
            mode = int(d.get(key + "Mode", ["0755"])[-1], 8)
            for name in d[key][-1].split():
                os.makedirs(os.path.join(base, name), mode=mode)
    proc_options = []
    if "ProtectProc" in d:
        proc_options.append(f"hidepid={d['ProtectProc'][-1]}")
    if d.get("ProcSubset", ["all"])[-1] == "pid":
        proc_options.append("subset=pid")
    if proc_options:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV, ",".join(proc_options))

    if d.get("CapabilityBoundingSet", [None])[-1] == "":
        for cap in range(64):
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    if yes("NoNewPrivileges"):
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    if "UMask" in d:
        os.umask(int(d["UMask"][-1], 8))

    # Two filters, as systemd installs them; the allow list last, since it does not allow seccomp().
    extra = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    if yes("MemoryDenyWriteExecute"):
        w, x = 0x2, 0x4  # PROT_WRITE, PROT_EXEC
        extra.add_rule(seccomp.ERRNO(errno.EPERM), "mmap", seccomp.Arg(2, seccomp.MASKED_EQ, w | x, w | x))
        for call in ("mprotect", "pkey_mprotect"):
            extra.add_rule(seccomp.ERRNO(errno.EPERM), call, seccomp.Arg(2, seccomp.MASKED_EQ, x, x))
        extra.add_rule(seccomp.ERRNO(errno.EPERM), "shmat", seccomp.Arg(2, seccomp.MASKED_EQ, 0o100000, 0o100000))
    if "RestrictAddressFamilies" in d:
        allowed = {getattr(socket, name) for name in d["RestrictAddressFamilies"][-1].split()}
        for family in range(64):
            if family not in allowed:
                extra.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.EQ, family))
    extra.load()
    if "SystemCallFilter" in d:
        # systemd.exec(5): the first assignment decides between an allow list and a deny list
        # (~); later ones of the same kind extend it, later ones of the other kind remove from it.
        err = seccomp.ERRNO(getattr(errno, d.get("SystemCallErrorNumber", ["EPERM"])[-1]))
        deny_list = d["SystemCallFilter"][0].startswith("~")
        listed: set[str] = set()
        for value in d["SystemCallFilter"]:
            names = set().union(*(syscalls(n) for n in value.lstrip("~").split()))
            listed = listed | names if value.startswith("~") == deny_list else listed - names
        calls = seccomp.SyscallFilter(defaction=seccomp.ALLOW if deny_list else err)
        for call in sorted(listed):
            try:
                calls.add_rule(err if deny_list else seccomp.ALLOW, call)
            except (RuntimeError, ValueError, OSError):
                pass  # not a system call of this architecture
        calls.load()
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
