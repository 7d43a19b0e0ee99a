//! A `cmd` step: its container under the isolation policy, on the run's
//! network, with the workspace, its log streamed, retries and timeout.

use futures_util::StreamExt;
use slipway_core::isolation::refuse_unconfined_step;
use slipway_core::tasks::cmdline::parse_cmd;
use slipway_core::tasks::taskfile::{Step, TaskFileError, WORKSPACE};
use slipway_runner::{ContainerSpec, NetworkAttachment, RunnerError};

use super::{resolve_granted_host_mounts, RunEnv, StepOutput, LOG_TAIL_GRACE};
use crate::TaskError;

pub(super) async fn run_cmd(
    env: &RunEnv,
    step: &Step,
    networks: &[(String, bool)],
) -> Result<StepOutput, TaskError> {
    let cmd = step.cmd.as_deref().unwrap_or_default();
    let rc = parse_cmd(cmd)?;
    let name = env.container(&step.id);
    let cred = env.credential_for(&rc.image);
    let pulled = if step.pull {
        env.engine.pull(&rc.image, cred.as_ref()).await
    } else {
        env.engine.ensure_image(&rc.image, cred.as_ref()).await
    };
    pulled.map_err(|e| match e {
        RunnerError::ImageUnavailable { image, message } => {
            TaskError::Step(format!("pull {image}: {message}"))
        }
        other => TaskError::Engine(other.to_string()),
    })?;
    let mut rc = rc;
    let permissions = resolve_granted_host_mounts(&step.id, &mut rc.volumes, &env.permissions)?;
    refuse_unconfined_step(&step.confinement_request(&rc), &permissions)?;
    let network = rc.network.clone().or_else(|| step.network.clone());
    let attachment = match network {
        // Only reachable past the check with stepPermissions.hostNetwork.
        Some(n) if n.eq_ignore_ascii_case("host") => NetworkAttachment::Host,
        n => NetworkAttachment::Named {
            network: match n {
                Some(n) => match networks.iter().find(|(name, _)| *name == n) {
                    Some((_, false)) => env.network(&n),
                    _ => n,
                },
                None => env.network(slipway_core::tasks::taskfile::DEFAULT_NETWORK),
            },
            aliases: vec![step.id.clone()],
        },
    };
    let mut spec = ContainerSpec::new(&name, &rc.image, attachment);
    // Only reachable past the check with stepPermissions.privileged.
    spec.privileged = step.privileged || rc.privileged;
    let granted: Vec<&str> = [
        (spec.privileged, "privileged"),
        (
            spec.network == NetworkAttachment::Host,
            "the host's network",
        ),
        (
            rc.volumes.iter().any(|v| v.starts_with('/')),
            "host folders",
        ),
    ]
    .into_iter()
    .filter_map(|(used, what)| used.then_some(what))
    .collect();
    if !granted.is_empty() {
        env.log
            .line(&format!(
                "Step ID: {} runs with {}: granted by the task's stepPermissions ({})",
                step.id,
                granted.join(", "),
                env.permissions.summary()
            ))
            .await;
    }
    spec.user_namespace = env.user_namespace;
    spec.binds = vec![format!("{}:{WORKSPACE}", env.workspace.display())];
    spec.binds.extend(rc.volumes.iter().cloned());
    for m in &step.volume_mounts {
        spec.binds.push(format!(
            "{}:{}:ro",
            env.volumes_dir.join(&m.name).display(),
            m.mount_path
        ));
    }
    spec.env = step.env.clone();
    spec.env.extend(rc.env.iter().cloned());
    spec.labels = rc.labels.clone().into_iter().collect();
    spec.labels.extend(env.owner_labels());
    spec.exposed_ports = step
        .expose
        .iter()
        .chain(rc.expose.iter())
        .map(|p| {
            if p.contains('/') {
                p.clone()
            } else {
                format!("{p}/tcp")
            }
        })
        .collect();
    for port in step.ports.iter().chain(rc.ports.iter()) {
        let p =
            slipway_core::tasks::cmdline::parse_port(port).map_err(|error| TaskFileError::Cmd {
                step: step.id.clone(),
                error,
            })?;
        spec.port_bindings
            .push((p.container, p.host_ip, p.host_port));
    }
    spec.entrypoint = rc
        .entrypoint
        .clone()
        .or_else(|| step.entry_point.clone())
        .map(|e| vec![e]);
    spec.cmd = (!rc.args.is_empty()).then(|| rc.args.clone());
    spec.working_dir = rc.workdir.clone().or_else(|| step.workdir());
    spec.user = rc.user.clone().or_else(|| step.user.clone());
    spec.extra_hosts = rc.add_hosts.clone();
    if let Some(m) = rc.memory {
        spec.confinement.memory_bytes = m;
    }
    if let Some(c) = rc
        .cpus
        .or_else(|| step.cpus.as_deref().and_then(|c| c.parse().ok()))
    {
        spec.confinement.nano_cpus = (c * 1e9) as i64;
    }
    let _ = env.engine.remove(&name).await;
    env.log
        .line(&format!("Launching container with name: {}", step.id))
        .await;
    env.engine
        .create(&spec)
        .await
        .map_err(|e| TaskError::Step(format!("container {}: {e}", step.id)))?;
    env.engine
        .start_created(&name)
        .await
        .map_err(|e| TaskError::Step(format!("container {}: {e}", step.id)))?;
    if step.detach {
        env.log
            .line(&format!(
                "Successfully started detached container: {}",
                step.id
            ))
            .await;
        return Ok(StepOutput::default());
    }
    let code = {
        let logs = env.engine.follow_output(&name);
        tokio::pin!(logs);
        // (bytes logged, whether the stream ended in an error)
        let drain = async {
            let mut received = 0usize;
            while let Some(item) = logs.next().await {
                match item {
                    Ok(c) => {
                        received += c.len();
                        env.log
                            .raw(&env.scrubber.scrub(&String::from_utf8_lossy(&c)))
                            .await
                    }
                    Err(_) => return (received, true),
                }
            }
            (received, false)
        };
        tokio::pin!(drain);
        // Podman's followed log stream does not always end when a quick
        // container exits (seen in CI: the step's output arrived, the stream
        // stayed open until the step timeout), so the exit is awaited beside
        // it and the stream gets a short grace for its tail.
        let (code, tail) = tokio::select! {
            r = &mut drain => (env.engine.exit_code(&name).await, Some(r)),
            code = env.engine.exit_code(&name) => {
                (code, tokio::time::timeout(LOG_TAIL_GRACE, &mut drain).await.ok())
            }
        };
        let code = code.map_err(|e| TaskError::Engine(e.to_string()))?;
        // A container that exits before the follow attaches makes Podman
        // fail the stream ("failed to obtain logs … no such process") or
        // end it empty: the output is then read from the stopped
        // container's log, past what was already logged.
        if let Some((received, failed)) = tail {
            if failed || received == 0 {
                if let Ok(full) = env.engine.output(&name).await {
                    if let Some(rest) = full.get(received..).filter(|r| !r.is_empty()) {
                        env.log.raw(&env.scrubber.scrub(rest)).await;
                    }
                }
            }
        }
        code
    };
    if !step.keep {
        let _ = env.engine.remove(&name).await;
    }
    if code != 0 {
        return Err(TaskError::Step(format!(
            "container {} exited with status {code}",
            step.id
        )));
    }
    env.log
        .line(&format!("Successfully executed container: {}", step.id))
        .await;
    Ok(StepOutput::default())
}
