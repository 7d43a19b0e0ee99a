//! A container's life: create (through the isolation policy), start and
//! attach, state, wait and exit code (with Podman's quirks), stop, output,
//! remove.

use std::time::Duration;

use bollard::container::{AttachContainerResults, LogOutput};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StartContainerOptions, StopContainerOptionsBuilder,
    WaitContainerOptions,
};
use futures_util::StreamExt;

use super::{
    is_not_found, message, Attachment, ContainerSpec, ContainerState, Engine, EXIT_RETRIES,
};
use crate::RunnerError;

impl Engine {
    /// Creates (but does not start) the container of `spec`, under the
    /// isolation policy (see [`ContainerSpec`]).
    ///
    /// Errors: [`RunnerError::Engine`] with the engine's own message.
    pub async fn create(&self, spec: &ContainerSpec) -> Result<(), RunnerError> {
        self.docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::new()
                        .name(&spec.name)
                        .build(),
                ),
                spec.config(),
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                RunnerError::Engine(format!("create container {}: {}", spec.name, message(e)))
            })
    }

    /// Starts a created container.
    pub async fn start_created(&self, name: &str) -> Result<(), RunnerError> {
        self.docker
            .start_container(name, None::<StartContainerOptions>)
            .await
            .map_err(|e| RunnerError::Engine(format!("start container {name}: {}", message(e))))
    }

    /// Creates a container, attaches to its output, then starts it with the
    /// image's own ENTRYPOINT. The returned [`Attachment`] ends when the
    /// container exits (attaching before the start means no exit is missed);
    /// `None` when the engine refused the attach three times, in which case
    /// [`Engine::wait`] falls back to the engine's wait endpoint.
    pub async fn start(&self, spec: &ContainerSpec) -> Result<Option<Attachment>, RunnerError> {
        self.create(spec).await?;
        self.attach_and_start(&spec.name).await
    }

    /// Attaches to the created container `name` (so no output or exit is
    /// missed) and starts it: the second half of [`Engine::start`], for
    /// callers that create the container while preparing something else.
    ///
    /// Errors: [`RunnerError::Engine`] with the engine's own message.
    pub async fn attach_and_start(&self, name: &str) -> Result<Option<Attachment>, RunnerError> {
        // Podman sometimes refuses an attach to a just-created container
        // ("preparing container … for attach: write child: broken pipe").
        // Retry a little; without an attachment the exit is still detected
        // through the engine's wait, only more slowly.
        let mut attachment = None;
        for attempt in 1..=3u64 {
            match self
                .docker
                .attach_container(
                    name,
                    Some(
                        AttachContainerOptionsBuilder::new()
                            .stream(true)
                            .stdout(true)
                            .stderr(true)
                            .logs(false)
                            .build(),
                    ),
                )
                .await
            {
                Ok(AttachContainerResults { output, .. }) => {
                    attachment = Some(Attachment { output });
                    break;
                }
                Err(e) => {
                    tracing::warn!(container = name, attempt, error = %e, "attach before start failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * attempt)).await;
                }
            }
        }
        self.start_created(name).await?;
        Ok(attachment)
    }

    /// The container's state; `None` when it does not exist.
    pub async fn state(&self, name: &str) -> Result<Option<ContainerState>, RunnerError> {
        Ok(self
            .inspect_raw(name)
            .await?
            .map(|info| info.state.container_state()))
    }

    /// Waits for the container to exit and returns its exit code.
    ///
    /// With the [`Attachment`] from [`Engine::start`] (attached before the
    /// start, so no exit is missed) the exit is seen as soon as the output
    /// stream closes; Podman's `/wait` polls and adds ~200 ms, and running it
    /// alongside slows Podman's exit handling, so it is only the fallback.
    /// Without an attachment (re-attaching after a restart) `/wait` is used.
    pub async fn wait(
        &self,
        name: &str,
        attachment: Option<Attachment>,
    ) -> Result<i64, RunnerError> {
        if let Some(attachment) = attachment {
            if let Some(code) = self.wait_attached(name, attachment).await? {
                return Ok(code);
            }
        }
        self.exit_code(name).await
    }

    /// Waits for a started container to exit and returns its exit code.
    /// (See [`EXIT_RETRIES`].)
    /// Podman 4's `/wait` can miss an exit that happened just before the
    /// call and then block forever, so the state is read first and again
    /// every 2 s while the engine's wait runs.
    ///
    /// Podman also answers 500 for a moment while a container exits (`read
    /// /proc/<pid>/cgroup: no such process`); such errors are retried for
    /// up to ~1 s.
    ///
    /// Errors: [`RunnerError::Engine`] when the container is gone, or the
    /// engine keeps failing.
    pub async fn exit_code(&self, name: &str) -> Result<i64, RunnerError> {
        let mut failures = 0;
        loop {
            let state = match self.state(name).await {
                Ok(s) => s,
                Err(e) if failures < EXIT_RETRIES => {
                    failures += 1;
                    tracing::debug!(container = name, error = %e, "engine error while waiting; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match state {
                Some(ContainerState::Exited(code) | ContainerState::Stopped(code)) => {
                    return Ok(code)
                }
                None => {
                    return Err(RunnerError::Engine(format!(
                        "wait for {name}: the container is gone"
                    )))
                }
                Some(ContainerState::Running | ContainerState::Created) => {
                    match tokio::time::timeout(Duration::from_secs(2), self.engine_wait(name)).await
                    {
                        Ok(Ok(code)) => return Ok(code),
                        // Read the state again: a transient engine error or
                        // a wait that missed the exit.
                        Ok(Err(_)) if failures < EXIT_RETRIES => {
                            failures += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Ok(Err(e)) => return Err(e),
                        Err(_) => {}
                    }
                }
            }
        }
    }

    /// Drains the attachment, then reads the exit code once the engine has
    /// recorded it; `None` if it does not within ~1 s.
    async fn wait_attached(
        &self,
        name: &str,
        attachment: Attachment,
    ) -> Result<Option<i64>, RunnerError> {
        let Attachment { mut output } = attachment;
        while let Some(item) = output.next().await {
            if item.is_err() {
                break;
            }
        }
        // Podman reports `stopped` for ~30 ms before `exited` with the code
        // (and may answer 500 for a moment meanwhile).
        // `stopped` already carries the exit code (Podman read conmon's
        // exit file); `exited` only follows once `podman container
        // cleanup`, a process of its own, has run (~50 ms).
        for _ in 0..50 {
            match self.state(name).await {
                Ok(Some(ContainerState::Exited(code) | ContainerState::Stopped(code))) => {
                    return Ok(Some(code))
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Ok(_) => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The engine's own `/containers/{name}/wait`.
    async fn engine_wait(&self, name: &str) -> Result<i64, RunnerError> {
        let mut stream = self
            .docker
            .wait_container(name, None::<WaitContainerOptions>);
        match stream.next().await {
            Some(Ok(r)) => Ok(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => {
                // The wait may fail if the container already exited; ask directly.
                match self.state(name).await? {
                    Some(ContainerState::Exited(code)) => Ok(code),
                    _ => Err(RunnerError::Engine(format!("wait for {name}: {e}"))),
                }
            }
            None => match self.state(name).await? {
                Some(ContainerState::Exited(code)) => Ok(code),
                _ => Err(RunnerError::Engine(format!(
                    "wait for {name}: stream ended"
                ))),
            },
        }
    }

    /// Sends SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&self, name: &str, grace: Duration) -> Result<(), RunnerError> {
        match self
            .docker
            .stop_container(
                name,
                Some(
                    StopContainerOptionsBuilder::new()
                        .t(i32::try_from(grace.as_secs()).unwrap_or(i32::MAX))
                        .build(),
                ),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(RunnerError::Engine(format!("stop {name}: {e}"))),
        }
    }

    /// The container's combined stdout and stderr.
    pub async fn output(&self, name: &str) -> Result<String, RunnerError> {
        let mut stream = self.docker.logs(
            name,
            Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()),
        );
        let mut out = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(LogOutput::StdOut { message })
                | Ok(LogOutput::StdErr { message })
                | Ok(LogOutput::Console { message }) => {
                    out.push_str(&String::from_utf8_lossy(&message))
                }
                Ok(_) => {}
                Err(e) => return Err(RunnerError::Engine(format!("logs of {name}: {e}"))),
            }
        }
        Ok(out)
    }

    /// Removes the container (and its anonymous volumes); absent is fine.
    pub async fn remove(&self, name: &str) -> Result<(), RunnerError> {
        match self
            .docker
            .remove_container(
                name,
                Some(
                    RemoveContainerOptionsBuilder::new()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await
        {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(RunnerError::Engine(format!("remove {name}: {e}"))),
        }
    }

    /// The container's output as it is written, until it exits.
    pub fn follow_output(
        &self,
        name: &str,
    ) -> impl futures_util::Stream<Item = Result<Vec<u8>, RunnerError>> + '_ {
        self.docker
            .logs(
                name,
                Some(
                    LogsOptionsBuilder::new()
                        .follow(true)
                        .stdout(true)
                        .stderr(true)
                        .build(),
                ),
            )
            .map(|c| {
                c.map(|c| c.into_bytes().to_vec())
                    .map_err(|e| RunnerError::Engine(message(e)))
            })
    }

    /// The container's environment (`KEY=VALUE` entries).
    ///
    /// Errors: [`RunnerError::Engine`] when it cannot be inspected.
    pub async fn env_of(&self, name: &str) -> Result<Vec<String>, RunnerError> {
        let info = self
            .inspect_raw(name)
            .await?
            .ok_or_else(|| RunnerError::Engine(format!("container {name} is gone")))?;
        Ok(info.config.env.unwrap_or_default())
    }

    /// Whether the kernel killed the container for exceeding its memory limit.
    pub async fn oom_killed(&self, name: &str) -> bool {
        matches!(self.inspect_raw(name).await, Ok(Some(info)) if info.state.oom_killed)
    }
}
