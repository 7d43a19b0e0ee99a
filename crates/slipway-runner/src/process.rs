//! Helper processes that must not outlive the server (the `podman system
//! service` it starts when no engine answers, the embedded `docker-registry`).

/// Makes the child of `cmd` get `SIGTERM` when the server dies, however it
/// dies (`SIGKILL` and crashes included), through Linux's
/// `prctl(PR_SET_PDEATHSIG)`. If the server is already gone between fork and
/// exec, the child ends at once. Takes a `std` command; pass a tokio one's
/// `as_std_mut()`.
///
/// The signal follows the *thread* that spawns the child: spawn from an async
/// task (runtime threads live as long as the server), or from a blocking
/// thread that waits for the child to exit — never from `spawn_blocking`
/// without waiting, as idle blocking threads exit after seconds.
pub fn end_with_server(cmd: &mut std::process::Command) {
    on_server_death(cmd, libc::SIGTERM);
}

/// Like [`end_with_server`] with `SIGKILL`, for children that block or
/// ignore `SIGTERM` (`unshare --fork` waits for its child with `SIGTERM`
/// blocked).
pub fn killed_with_server(cmd: &mut std::process::Command) {
    on_server_death(cmd, libc::SIGKILL);
}

fn on_server_death(cmd: &mut std::process::Command, signal: libc::c_int) {
    use std::os::unix::process::CommandExt;
    let server = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (prctl, getppid, raise); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != server {
                libc::raise(signal);
            }
            Ok(())
        });
    }
}
