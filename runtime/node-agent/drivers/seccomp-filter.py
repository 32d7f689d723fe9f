"""Writes the process driver's seccomp filter, as the compiled BPF program bwrap's `--seccomp FD`
loads, to stdout. Built with libseccomp's own Python bindings (Debian python3-seccomp), so the
syscall numbers, the architecture check and the BPF are libseccomp's, not ours.

Default allow, like Docker's profile in spirit: the sandbox's command may do what a normal
unprivileged process does; what only serves to attack the shared kernel or escape the namespaces
fails with EPERM. Syscalls of other ABIs (32-bit int 0x80, x32) kill the process (libseccomp's
default bad-architecture action), so the list cannot be sidestepped through them.
"""

import errno
import sys

import seccomp

DENIED = [
    # Kernel keyrings are not namespaced.
    "add_key", "keyctl", "request_key",
    # Kernel-side programs, performance counters and userfaultfd: large attack surface.
    "bpf", "perf_event_open", "userfaultfd",
    # io_uring bypasses seccomp for the operations it performs.
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # Namespaces, mounts and the root: the sandbox gets its namespaces from bwrap, never makes more.
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    # Other processes' memory.
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    # The host itself: modules, kexec, reboot, swap, clocks, accounting, quotas, the kernel log.
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
    "swapon", "swapoff", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "acct",
    "quotactl", "syslog", "iopl", "ioperm", "uselib", "vhangup", "lookup_dcookie",
    "open_by_handle_at", "name_to_handle_at", "fanotify_init", "nfsservctl",
    # personality stays allowed: it changes only the caller's own execution domain (setarch and
    # some runtimes query or set it), and with ASLR it affects only that process.
]

CLONE_NEWUSER = 0x10000000
TIOCSTI = 0x5412
IOCTL_REQUEST_MASK = 0xFFFFFFFF


def main() -> None:
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    for name in DENIED:
        try:
            f.add_rule(seccomp.ERRNO(errno.EPERM), name)
        except (RuntimeError, ValueError, OSError):
            pass  # not a syscall of this architecture (e.g. uselib on arm64)
    # No new user namespace through clone either (bwrap --disable-userns says the same).
    f.add_rule(
        seccomp.ERRNO(errno.EPERM),
        "clone",
        seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER),
    )
    # clone3 passes its flags in memory a filter cannot read: ENOSYS makes libc fall back to clone.
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    # Faking terminal input into whoever holds the terminal. The kernel reads ioctl's request as
    # an unsigned int, so only its low 32 bits count: 0x100005412 is TIOCSTI too. Compare under
    # that mask (Arg(n, MASKED_EQ, mask, value)), not all 64 bits.
    f.add_rule(
        seccomp.ERRNO(errno.EPERM),
        "ioctl",
        seccomp.Arg(1, seccomp.MASKED_EQ, IOCTL_REQUEST_MASK, TIOCSTI),
    )
    f.export_bpf(sys.stdout)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
