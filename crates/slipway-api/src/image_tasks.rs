//! Container image tasks over HTTP (ACR Tasks model). DevCenter Admins only.
//!
//! | Route | Body / answer |
//! |---|---|
//! | `GET /imageTasks/registry` | `{loginServer}` of the embedded registry |
//! | `POST /imageTasks/registry/login` | `{loginServer, username, password}`: the embedded registry's user account for `docker login` (audited) |
//! | `PUT /imageTasks/contexts` | a tar (or tar.gz) of a build context, at most 1 GiB → 201 `{context: "upload:<sha256>"}` (ACR `listBuildSourceUploadUrl`) |
//! | `POST /imageTasks/builds` | quick build `{context, contextSecret?, images[], file?, buildArgs[], secretBuildArgs[], target?, platform?, noPush?, timeout?}` → 202 run (`az acr build`) |
//! | `POST /imageTasks/runs` | quick run `{context?, contextSecret?, taskFile?, encodedTask?, valuesFile?, encodedValues?, set[], timeout?}` → 202 run (`az acr run`) |
//! | `PUT /imageTasks/tasks/{t}` | task spec (see `slipway_tasks::TaskSpec`) → 201/200; `GET`, `DELETE`; `GET /imageTasks/tasks` |
//! | `POST /imageTasks/tasks/{t}/runs` | `{set[]}` → 202 run (`az acr task run`) |
//! | `GET /imageTasks/runs?task=&status=&top=` | newest first, `top` default 15 |
//! | `GET /imageTasks/runs/{r}`, `POST /imageTasks/runs/{r}/cancel` | run; cancel → 202, 409 when finished |
//! | `GET /imageTasks/runs/{r}/logs?offset=N` | log text from byte N; header `X-Slipway-Run-Status` (complete when final) |
//! | `POST /imageTasks/webhooks/{t}` | a push delivery from GitHub, Gitea/Forgejo or GitLab for task `t`'s source trigger, authenticated by its signature (`slipway_core::tasks::webhook`) → 202 run, 200 when nothing starts, 401 on a bad signature |
//! | `POST /registry/events` | the embedded registry's notifications (its own bearer token) |

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use slipway_core::access::Permission;
use slipway_core::names::validate_resource_name;
use slipway_tasks::{
    context_key, DockerBuild, RunRequest, TaskService, TaskSpec, TaskView, TIMEOUT_RANGE,
};
use std::sync::Arc;

use crate::auth::Caller;
use crate::logs::{self, LogQuery};
use crate::routing::Routes;
use crate::{put_upload, ApiError, ApiResult, AppState};
use slipway_core::tasks::TaskRunStatus;
use slipway_wire::tasks::{Delivery, RegistryInfo, RegistryLogin, TaskRun, UploadedContext};
use slipway_wire::{CloudError, Paged};

/// The routes.
pub fn routes() -> Routes {
    Routes::new()
        .route("/imageTasks/registry", get(registry_info))
        .route("/imageTasks/registry/login", post(registry_login))
        .route(
            "/imageTasks/contexts",
            put(upload_context).layer(axum::extract::DefaultBodyLimit::max(
                crate::MAX_UPLOAD_BYTES,
            )),
        )
        .route("/imageTasks/builds", post(quick_build))
        .route("/imageTasks/runs", post(quick_run).get(list_runs))
        .route("/imageTasks/tasks", get(list_tasks))
        .route(
            "/imageTasks/tasks/{t}",
            put(put_task).get(get_task).delete(delete_task),
        )
        .route("/imageTasks/tasks/{t}/runs", post(run_task))
        .route("/imageTasks/runs/{r}", get(get_run))
        .route("/imageTasks/runs/{r}/cancel", post(cancel_run))
        .route("/imageTasks/runs/{r}/logs", get(run_logs))
        .route("/imageTasks/webhooks/{t}", post(source_webhook))
        .route("/registry/events", post(registry_events))
}

fn service(state: &AppState, caller: &Caller) -> ApiResult<Arc<TaskService>> {
    caller.require(Permission::AdministerDevCenter)?;
    state.tasks.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ImageTasksUnavailable",
            "image tasks are off: the embedded registry could not start (install docker-registry; see the server log)",
        )
    })
}

fn task_error(e: slipway_tasks::TaskError) -> ApiError {
    match e {
        e if e.is_bad_input() => ApiError::bad_request("InvalidRequest", e.to_string()),
        slipway_tasks::TaskError::Store(s) => ApiError::from(s),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ImageTaskError",
            other.to_string(),
        ),
    }
}

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes, what: &str) -> ApiResult<T> {
    let text = if body.is_empty() {
        &b"{}"[..]
    } else {
        &body[..]
    };
    serde_json::from_slice(text)
        .map_err(|e| ApiError::bad_request("InvalidRequestBody", format!("{what}: {e}")))
}

/// A run as the API shows it: sealed `--set-secret` values left out.
fn run_view(r: &slipway_store::TaskRunRecord) -> TaskRun {
    let mut v = r.clone();
    v.request = slipway_tasks::redacted_request(&r.request);
    v
}

/// Describes the embedded registry.
#[utoipa::path(get, path = "/imageTasks/registry", tag = "imageTasks", responses((status = 200, description = "The embedded registry", body = RegistryInfo), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn registry_info(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<RegistryInfo>> {
    let svc = service(&state, &caller)?;
    Ok(Json(RegistryInfo {
        login_server: svc.registry().to_string(),
    }))
}

/// The user account of the embedded registry, for `docker login`; a POST so
/// that each hand-out is in the audit log.
#[utoipa::path(post, path = "/imageTasks/registry/login", tag = "imageTasks", responses((status = 200, description = "Registry credentials", body = RegistryLogin), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn registry_login(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<RegistryLogin>> {
    let svc = service(&state, &caller)?;
    let login = svc.registry_login().ok_or_else(|| {
        ApiError::not_found(
            "RegistryLoginUnavailable",
            "this server hands out no registry account",
        )
    })?;
    Ok(Json(RegistryLogin {
        login_server: svc.registry().to_string(),
        username: login.username.clone(),
        password: login.password.clone(),
    }))
}

/// Uploads a build context (tar, gzip allowed).
#[utoipa::path(put, path = "/imageTasks/contexts", tag = "imageTasks", request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 201, description = "The uploaded context", body = UploadedContext), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn upload_context(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Response> {
    service(&state, &caller)?;
    let digest = put_upload(
        &state,
        &body,
        context_key,
        "a tar or tar.gz of the build context",
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(UploadedContext {
            context: format!("upload:{digest}"),
            size: body.len() as u64,
        }),
    )
        .into_response())
}

/// The body of `POST /imageTasks/builds` (`az acr build`): a context and
/// the build's settings.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct QuickBuild {
    context: Option<String>,
    #[serde(default)]
    context_secret: Option<String>,
    #[serde(flatten)]
    docker: DockerBuild,
    #[serde(default)]
    timeout: u64,
}

fn check_timeout(t: u64) -> ApiResult<u64> {
    match t {
        0 => Ok(slipway_tasks::DEFAULT_TIMEOUT),
        t if TIMEOUT_RANGE.contains(&t) => Ok(t),
        t => Err(ApiError::bad_request(
            "InvalidRequest",
            format!("property 'timeout' is {t}: expected seconds between 300 and 28800"),
        )),
    }
}

/// Queues a quick build (`az acr build`).
#[utoipa::path(post, path = "/imageTasks/builds", tag = "imageTasks", request_body = QuickBuild, responses((status = "2XX", description = "The queued run", body = TaskRun), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn quick_build(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let svc = service(&state, &caller)?;
    let b: QuickBuild = json_body(&body, "quick build")?;
    if b.context.is_none() {
        return Err(ApiError::bad_request("InvalidRequest", "property 'context' is required: upload one with PUT /imageTasks/contexts, or give a git or tarball URL"));
    }
    let request = RunRequest {
        context: b.context,
        context_secret: b.context_secret,
        docker: Some(b.docker),
        timeout: check_timeout(b.timeout)?,
        ..Default::default()
    };
    queue_manual(&svc, &caller, "QuickBuild", &request).await
}

/// Queues a quick run started by `caller` → 202 with the run.
async fn queue_manual(
    svc: &TaskService,
    caller: &Caller,
    run_type: &str,
    request: &RunRequest,
) -> ApiResult<Response> {
    let run = svc
        .queue(None, run_type, request, manual_trigger(caller))
        .await
        .map_err(task_error)?;
    Ok((StatusCode::ACCEPTED, Json(run_view(&run))).into_response())
}

fn manual_trigger(caller: &Caller) -> Value {
    json!({"type": "manual", "user": caller.user})
}

/// Queues a quick task run (`az acr run`).
#[utoipa::path(post, path = "/imageTasks/runs", tag = "imageTasks", request_body = RunRequest, responses((status = "2XX", description = "The queued run", body = TaskRun), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn quick_run(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Response> {
    let svc = service(&state, &caller)?;
    let mut request: RunRequest = json_body(&body, "quick run")?;
    if request.docker.is_some() {
        return Err(ApiError::bad_request(
            "InvalidRequest",
            "property 'docker' belongs to POST /imageTasks/builds",
        ));
    }
    request.timeout = check_timeout(request.timeout)?;
    if request.context.is_none() && request.encoded_task.is_none() {
        return Err(ApiError::bad_request(
            "InvalidRequest",
            "give 'context' (with 'taskFile', default acb.yaml) or 'encodedTask'",
        ));
    }
    queue_manual(&svc, &caller, "QuickRun", &request).await
}

/// Lists tasks.
#[utoipa::path(get, path = "/imageTasks/tasks", tag = "imageTasks", responses((status = 200, description = "Tasks", body = Paged<TaskView>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_tasks(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Paged<TaskView>>> {
    service(&state, &caller)?;
    let tasks = state
        .store
        .list_image_tasks()
        .await?
        .into_iter()
        .filter_map(|(name, spec)| Some(serde_json::from_value::<TaskSpec>(spec).ok()?.view(&name)))
        .collect();
    Ok(Json(Paged::all(tasks)))
}

/// Creates or updates a task.
#[utoipa::path(put, path = "/imageTasks/tasks/{t}", tag = "imageTasks", params(("t" = String, Path, description = "Task")), request_body = TaskSpec, responses((status = "2XX", description = "The task", body = TaskView), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn put_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let svc = service(&state, &caller)?;
    validate_resource_name("task", &t)
        .map_err(|e| ApiError::bad_request("InvalidName", e.to_string()))?;
    let spec: TaskSpec = json_body(&body, "task")?;
    let (spec, created) = svc
        .put_task(&t, spec, &caller.user)
        .await
        .map_err(task_error)?;
    let v = spec.view(&t);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(v)).into_response())
}

/// Reads a task.
#[utoipa::path(get, path = "/imageTasks/tasks/{t}", tag = "imageTasks", params(("t" = String, Path, description = "Task")), responses((status = 200, description = "The task", body = TaskView), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(t): Path<String>,
) -> ApiResult<Json<TaskView>> {
    let svc = service(&state, &caller)?;
    let spec = svc
        .task(&t)
        .await
        .map_err(task_error)?
        .ok_or_else(|| ApiError::not_found("TaskNotFound", format!("task '{t}' not found")))?;
    Ok(Json(spec.view(&t)))
}

/// Deletes a task.
#[utoipa::path(delete, path = "/imageTasks/tasks/{t}", tag = "imageTasks", params(("t" = String, Path, description = "Task")), responses((status = 204, description = "Deleted"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn delete_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(t): Path<String>,
) -> ApiResult<StatusCode> {
    let svc = service(&state, &caller)?;
    if svc.delete_task(&t).await.map_err(task_error)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(
            "TaskNotFound",
            format!("task '{t}' not found"),
        ))
    }
}

/// The body of `POST /imageTasks/tasks/{t}/runs`: values for this run.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RunTask {
    /// `name=value` overrides of the task's values.
    #[serde(default)]
    set: Vec<String>,
    /// Secret values (`name=value` or `{name, value}`), masked in the log.
    #[serde(default, rename = "setSecret")]
    set_secret: Vec<slipway_tasks::SecretValue>,
}

/// Queues a run of a task.
#[utoipa::path(post, path = "/imageTasks/tasks/{t}/runs", tag = "imageTasks", params(("t" = String, Path, description = "Task")), request_body = RunTask, responses((status = "2XX", description = "The queued run", body = TaskRun), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn run_task(
    State(state): State<AppState>,
    caller: Caller,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let svc = service(&state, &caller)?;
    let b: RunTask = json_body(&body, "run")?;
    if svc.task(&t).await.map_err(task_error)?.is_none() {
        return Err(ApiError::not_found(
            "TaskNotFound",
            format!("task '{t}' not found"),
        ));
    }
    let run = svc
        .run_task(&t, &b.set, &b.set_secret, manual_trigger(&caller))
        .await
        .map_err(task_error)?;
    Ok((StatusCode::ACCEPTED, Json(run_view(&run))).into_response())
}

/// Query of the listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct RunFilter {
    /// Only runs of this task.
    task: Option<String>,
    /// Only runs in this status.
    status: Option<TaskRunStatus>,
    /// At most this many (default 15, at most 1000).
    top: Option<u32>,
}

/// Lists runs.
#[utoipa::path(get, path = "/imageTasks/runs", tag = "imageTasks", params(RunFilter), responses((status = 200, description = "Runs, newest first", body = Paged<TaskRun>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    Query(f): Query<RunFilter>,
) -> ApiResult<Json<Paged<TaskRun>>> {
    service(&state, &caller)?;
    let runs = state
        .store
        .list_task_runs(f.task.as_deref(), f.status, f.top.unwrap_or(15).min(1000))
        .await?;
    Ok(Json(Paged::all(runs.iter().map(run_view).collect())))
}

async fn run_of(state: &AppState, r: &str) -> ApiResult<slipway_store::TaskRunRecord> {
    state
        .store
        .get_task_run(r)
        .await?
        .ok_or_else(|| ApiError::not_found("RunNotFound", format!("run '{r}' not found")))
}

/// Reads a run.
#[utoipa::path(get, path = "/imageTasks/runs/{r}", tag = "imageTasks", params(("r" = String, Path, description = "Run id")), responses((status = 200, description = "The run", body = TaskRun), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(r): Path<String>,
) -> ApiResult<Json<TaskRun>> {
    service(&state, &caller)?;
    Ok(Json(run_view(&run_of(&state, &r).await?)))
}

/// Cancels a run.
#[utoipa::path(post, path = "/imageTasks/runs/{r}/cancel", tag = "imageTasks", params(("r" = String, Path, description = "Run id")), responses((status = "2XX", description = "Cancel requested"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(r): Path<String>,
) -> ApiResult<StatusCode> {
    let svc = service(&state, &caller)?;
    let run = run_of(&state, &r).await?;
    if svc.cancel(&r).await.map_err(task_error)? {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "RunFinished",
            format!("run '{r}' already finished with status {}", run.status),
        ))
    }
}

/// Reads or follows a run's log.
#[utoipa::path(get, path = "/imageTasks/runs/{r}/logs", tag = "imageTasks", params(("r" = String, Path, description = "Run id"), LogQuery), responses((status = 200, description = "The run's log", body = String, content_type = "text/plain"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn run_logs(
    State(state): State<AppState>,
    caller: Caller,
    Path(r): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    service(&state, &caller)?;
    // Status first: a final status read before the log means the log is complete.
    let run = run_of(&state, &r).await?;
    let path = state
        .store
        .blobs
        .file_path(&slipway_store::Store::task_run_log_key(&r))?;
    if run.log_expired && !path.exists() {
        let text = format!("The log of run {r} was deleted after the retention period (slipway serve --task-log-retention-days).\n");
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response());
    }
    let ended = logs::ended(state.store.clone(), logs::RunRecord::TaskRun(r.clone()));
    let src = logs::LogSource {
        path,
        status: ("x-slipway-run-status", run.status.as_str().to_string()),
        ended,
    };
    logs::respond(src, &q).await
}

/// Receives a signed source push (GitHub, Gitea/Forgejo, GitLab).
#[utoipa::path(post, path = "/imageTasks/webhooks/{t}", tag = "imageTasks", params(("t" = String, Path, description = "Task")), request_body(content = Object, content_type = "application/json"), security(()), responses((status = 202, description = "The run the push started", body = TaskRun), (status = 200, description = "No run started, and why", body = Delivery), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn source_webhook(
    State(state): State<AppState>,
    Path(t): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    use slipway_core::tasks::webhook::{verify, WebhookEvent};
    let svc = state.tasks.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ImageTasksUnavailable",
            "image tasks are off on this server",
        )
    })?;
    // One answer for unknown tasks and missing secrets: no probing of names.
    let secret = svc.webhook_secret(&t).await.map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "WebhookNotFound",
            format!("no task '{t}' with a source trigger webhook secret"),
        )
    })?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (forge, event) = verify(&header, &body, &secret).map_err(|e| match e {
        slipway_core::tasks::webhook::WebhookError::BadPayload(_) => {
            ApiError::bad_request("InvalidWebhookPayload", e.to_string())
        }
        _ => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidWebhookSignature",
            e.to_string(),
        ),
    })?;
    let push = match event {
        WebhookEvent::Push(p) => p,
        WebhookEvent::Ping => {
            return Ok((
                StatusCode::OK,
                Json(Delivery {
                    message: "pong".into(),
                }),
            )
                .into_response())
        }
        WebhookEvent::Other(e) => {
            return Ok((
                StatusCode::OK,
                Json(Delivery {
                    message: format!("event '{e}' ignored: only pushes start runs"),
                }),
            )
                .into_response())
        }
    };
    match svc.on_push(&t, &push, forge.as_str()).await.map_err(task_error)? {
        Some(run) => Ok((StatusCode::ACCEPTED, Json(run_view(&run))).into_response()),
        None => Ok((
            StatusCode::OK,
            Json(Delivery {
                message: format!("push to '{}' at {} starts no run (another branch, a deleted ref, a disabled trigger, or a commit already built)", push.reference, push.commit),
            }),
        )
            .into_response()),
    }
}

/// Receives the embedded registry's push notifications (its own token).
#[utoipa::path(post, path = "/registry/events", tag = "imageTasks", request_body(content = Object, content_type = "application/json"), security(("registry" = [])), responses((status = "2XX", description = "Notifications taken"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn registry_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let expected = format!("Bearer {}", state.registry_events_token);
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if state.registry_events_token.is_empty() || given != Some(expected.as_str()) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "registry notifications need the registry's token",
        ));
    }
    let Some(svc) = state.tasks.clone() else {
        return Ok(StatusCode::OK);
    };
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request("InvalidRequestBody", e.to_string()))?;
    for ev in doc["events"].as_array().into_iter().flatten() {
        let target = &ev["target"];
        let tag = target["tag"].as_str().unwrap_or_default();
        let media = target["mediaType"].as_str().unwrap_or_default();
        if ev["action"] != "push"
            || tag.is_empty()
            || !media.contains("manifest") && !media.contains("index")
        {
            continue;
        }
        let repo = target["repository"].as_str().unwrap_or_default();
        let digest = target["digest"].as_str().unwrap_or_default();
        match svc.on_image_pushed(repo, tag, digest).await {
            Ok(runs) => {
                for r in runs {
                    tracing::info!(run = %r.run_id, task = ?r.task, image = %format!("{repo}:{tag}@{digest}"), "base image updated: run queued");
                }
            }
            Err(e) => tracing::warn!(error = %e, "base-image trigger failed"),
        }
    }
    Ok(StatusCode::OK)
}
