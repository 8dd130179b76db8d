// Package seccomp turns the seccomp section of an OCI runtime config (runtime-spec 1.3,
// specs.LinuxSeccomp) into a BPF filter and loads it, the way runc does: libseccomp compiles
// the rules, and the program is handed to seccomp(2) here.
//
// Three entry points, in the order a starter uses them:
//
//   - Validate checks a profile without libseccomp or the kernel (pure Go, so that cgo-free
//     binaries such as kerr can check a profile early).
//   - Compile builds the BPF program with libseccomp and checks that the kernel takes the
//     requested flags; nothing is loaded. Filter.Skipped lists the syscall names libseccomp
//     does not know, for the caller to log.
//   - Filter.Load (or Load, which is Compile then Filter.Load) installs the program.
//
// Compile and Load need cgo and libseccomp; in a build without cgo they return
// ErrUnavailable.
//
// Semantics, where runtime-spec leaves room or runtimes differ:
//
//   - Several args entries on the same index mean OR, entries on different indices mean AND:
//     [{0,EQ,1},{0,EQ,2},{1,EQ,0}] matches (a0==1 || a0==2) && a1==0. One libseccomp rule is
//     added per combination. (runc turns every condition into its own rule as soon as one
//     index repeats, which drops the AND.)
//   - A rule whose action (errno included) equals the default action is dropped, as runc
//     does: libseccomp refuses it and it changes nothing.
//   - Syscall names libseccomp does not know are dropped and listed in Filter.Skipped: one
//     profile serves several kernels, architectures and libseccomp versions.
//   - errnoRet and defaultErrnoRet default to EPERM, as the spec says.
//   - SCMP_CMP_MASKED_EQ takes the mask in value and the datum in valueTwo; libseccomp
//     compares (arg & value) == (valueTwo & value). Other operators ignore valueTwo.
//   - Flags are seccomp(2) flags, passed by this package rather than set as libseccomp
//     attributes: libseccomp-golang turns TSYNC on for every filter, so its loader would
//     always filter every thread. Here SECCOMP_FILTER_FLAG_TSYNC is honoured, and without
//     it the filter goes on the calling thread only. Compile fails on a flag the kernel
//     does not know.
//   - SCMP_ACT_NOTIFY is refused: there is no seccomp agent (listenerPath) support, and
//     listenerPath without NOTIFY is ignored, as the spec says. So
//     SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, which only changes how a notifying syscall
//     waits and which the kernel refuses without a notify listener, is checked against the
//     kernel but not passed.
//   - No -ENOSYS stub is prepended (runc's patchbpf): a syscall newer than the profile gets
//     the default action.
package seccomp
