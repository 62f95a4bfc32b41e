"""The ptrace + seccomp-bpf syscall sandbox: pure policy and codecs, plus the tracer adapter."""
