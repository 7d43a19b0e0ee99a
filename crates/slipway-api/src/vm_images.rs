//! VM image templates over HTTP (Azure VM Image Builder model). DevCenter
//! Admins only.
//!
//! | Route | Body / answer |
//! |---|---|
//! | `PUT /imageTemplates/{t}` | an AIB template document → 201 new / 200 replaced; 400 `ValidationFailed` with the property path |
//! | `GET /imageTemplates/{t}`, `DELETE`, `GET /imageTemplates` | the template with `properties.provisioningState` and `lastRunStatus {startTime, endTime, runState, runSubState, message}` |
//! | `POST /imageTemplates/{t}/run` | → 202 the run, `Location` of the run; 409 while one is in progress |
//! | `POST /imageTemplates/{t}/cancel` | → 202; `runState` goes Canceling → Canceled |
//! | `GET /imageTemplates/{t}/runs`, `/runs/{r}`, `/runs/{r}/log?offset=N` | runs newest first; the run's `customization.log` from byte N (header `X-Slipway-Run-Status`: the run state) |
//! | `GET /imageTemplates/{t}/runOutputs`, `/runOutputs/{o}`, `/runOutputs/{o}/content` | AIB run outputs (`artifactId` / `artifactUri`, `sha256`); the artifact's bytes |
//! | `PUT /imageTemplates/{t}/triggers/{name}` | `{"properties": {"kind": "SourceImage"}}` → 201 new / 200 replaced; 400 when the template's source has no newer versions to follow |
//! | `GET /imageTemplates/{t}/triggers`, `GET`/`DELETE …/triggers/{name}` | triggers with `properties.status {code, message, time}`: what each last did (`Started run r7 for new source image …`, `… for new platform image version …`) |
//! | `PUT /vmImages/artifacts` | a build-artifacts archive, at most 1 GiB → 201 `{uri: "upload:<sha256>"}` for a `File` customizer's `sourceUri` |
//! | `GET /vmImages` | the image store (managed images, gallery image versions) |
//! | `GET /vmImages/platformImages` | built base images (`publisher`, `offer`, `sku`, `version`) |

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Json;
use serde_json::{json, Value};
use slipway_core::access::Permission;
use slipway_store::ImageRunRecord;
use slipway_vm_images::{ImageError, ImageService};

use crate::auth::Caller;
use crate::logs::{self, LogQuery};
use crate::routing::Routes;
use crate::{put_upload, ApiError, ApiResult, AppState};
use slipway_core::images::template::ImageTemplate;
use slipway_wire::vm_images::{
    ImageRun, ImageTemplateResource, ImageTemplateTrigger, LastRunStatus, PlatformImage, RunOutput,
    UploadedArtifact, VmImage,
};
use slipway_wire::{CloudError, Paged};

/// The routes.
pub fn routes() -> Routes {
    Routes::new()
        .route("/imageTemplates", get(list_templates))
        .route(
            "/imageTemplates/{t}",
            put(put_template).get(get_template).delete(delete_template),
        )
        .route("/imageTemplates/{t}/run", post(run_template))
        .route("/imageTemplates/{t}/cancel", post(cancel_run))
        .route("/imageTemplates/{t}/runs", get(list_runs))
        .route("/imageTemplates/{t}/runs/{r}", get(get_run))
        .route("/imageTemplates/{t}/runs/{r}/log", get(run_log))
        .route("/imageTemplates/{t}/triggers", get(list_triggers))
        .route(
            "/imageTemplates/{t}/triggers/{name}",
            put(put_trigger).get(get_trigger).delete(delete_trigger),
        )
        .route("/imageTemplates/{t}/runOutputs", get(list_outputs))
        .route("/imageTemplates/{t}/runOutputs/{o}", get(get_output))
        .route(
            "/imageTemplates/{t}/runOutputs/{o}/content",
            get(output_content),
        )
        .route(
            "/vmImages/artifacts",
            put(upload_artifact).layer(axum::extract::DefaultBodyLimit::max(
                crate::MAX_UPLOAD_BYTES,
            )),
        )
        .route("/vmImages", get(list_images))
        .route("/vmImages/platformImages", get(platform_images))
}

fn service(state: &AppState, caller: &Caller) -> ApiResult<Arc<ImageService>> {
    caller.require(Permission::AdministerDevCenter)?;
    Ok(state.images.clone())
}

fn image_error(e: ImageError) -> ApiError {
    match e {
        ImageError::Validation(v) => ApiError::bad_request(v.code(), v.to_string()),
        ImageError::NotFound { .. } => ApiError::not_found("NotFound", e.to_string()),
        ImageError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "Conflict", m),
        ImageError::Store(s) => ApiError::from(s),
    }
}

fn last_run_status(r: &ImageRunRecord) -> LastRunStatus {
    LastRunStatus {
        run_id: r.run_id.clone(),
        start_time: r
            .start_time
            .clone()
            .unwrap_or_else(|| r.create_time.clone()),
        end_time: r
            .end_time
            .clone()
            .unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
        run_state: r.run_state,
        run_sub_state: r.run_sub_state,
        message: r.message.clone(),
    }
}

async fn template_view(svc: &ImageService, name: &str) -> ApiResult<ImageTemplateResource> {
    let t = svc.template(name).await.map_err(image_error)?;
    let mut properties = json!(t.properties);
    properties["provisioningState"] = json!("Succeeded");
    if let Some(r) = svc.runs(name).await.map_err(image_error)?.first() {
        properties["lastRunStatus"] = json!(last_run_status(r));
    }
    Ok(ImageTemplateResource {
        id: format!("/slipway/imageTemplates/{name}"),
        name: name.to_string(),
        resource_type: "Microsoft.VirtualMachineImages/imageTemplates".to_string(),
        location: t.location,
        tags: (!t.tags.is_empty()).then(|| json!(t.tags)),
        identity: t.identity,
        properties,
    })
}

fn run_view(r: &ImageRunRecord) -> ImageRun {
    ImageRun {
        run_id: r.run_id.clone(),
        template: r.template.clone(),
        run_state: r.run_state,
        run_sub_state: r.run_sub_state,
        message: r.message.clone(),
        staging: r.staging.clone(),
        outputs: r.outputs.clone(),
        source: r.source.clone(),
        cancel_requested: r.cancel_requested,
        create_time: r.create_time.clone(),
        start_time: r.start_time.clone(),
        end_time: r.end_time.clone(),
    }
}

/// Lists image templates.
#[utoipa::path(get, path = "/imageTemplates", tag = "vmImages", responses((status = 200, description = "Image templates", body = Paged<ImageTemplateResource>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_templates(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Paged<ImageTemplateResource>>> {
    let svc = service(&state, &caller)?;
    let mut out = Vec::new();
    for name in state.store.list_image_templates().await? {
        out.push(template_view(&svc, &name).await?);
    }
    Ok(Json(Paged::all(out)))
}

/// Creates or updates an image template (AIB document).
#[utoipa::path(put, path = "/imageTemplates/{t}", tag = "vmImages", params(("t" = String, Path, description = "Image template")), request_body = ImageTemplate, responses((status = "2XX", description = "The template", body = ImageTemplateResource), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn put_template(
    State(state): State<AppState>,
    caller: Caller,
    Path(t): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let svc = service(&state, &caller)?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::bad_request("InvalidRequestBody", "the template must be UTF-8 JSON")
    })?;
    let new = svc.put_template(&t, text).await.map_err(image_error)?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(template_view(&svc, &t).await?)).into_response())
}

/// Reads an image template.
#[utoipa::path(get, path = "/imageTemplates/{t}", tag = "vmImages", params(("t" = String, Path, description = "Image template")), responses((status = 200, description = "The template", body = ImageTemplateResource), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_template(
    State(state): State<AppState>,
    caller: Caller,
    Path(t): Path<String>,
) -> ApiResult<Json<ImageTemplateResource>> {
    let svc = service(&state, &caller)?;
    Ok(Json(template_view(&svc, &t).await?))
}

/// Deletes an image template.
#[utoipa::path(delete, path = "/imageTemplates/{t}", tag = "vmImages", params(("t" = String, Path, description = "Image template")), responses((status = 200, description = "Deleted"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn delete_template(
    State(state): State<AppState>,
    caller: Caller,
    Path(t): Path<String>,
) -> ApiResult<StatusCode> {
    let svc = service(&state, &caller)?;
    svc.delete_template(&t).await.map_err(image_error)?;
    Ok(StatusCode::OK)
}

/// Starts a build of an image template.
#[utoipa::path(post, path = "/imageTemplates/{t}/run", tag = "vmImages", params(("t" = String, Path, description = "Image template")), responses((status = "2XX", description = "The run", body = ImageRun), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn run_template(
    State(state): State<AppState>,
    caller: Caller,
    Path(t): Path<String>,
) -> ApiResult<Response> {
    let svc = service(&state, &caller)?;
    let run = svc.run(&t).await.map_err(image_error)?;
    let mut headers = HeaderMap::new();
    if let Ok(v) = format!("/imageTemplates/{t}/runs/{}", run.run_id).parse() {
        headers.insert(header::LOCATION, v);
    }
    Ok((StatusCode::ACCEPTED, headers, Json(run_view(&run))).into_response())
}

/// Cancels the running build.
#[utoipa::path(post, path = "/imageTemplates/{t}/cancel", tag = "vmImages", params(("t" = String, Path, description = "Image template")), responses((status = "2XX", description = "Cancel requested", body = ImageRun), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(t): Path<String>,
) -> ApiResult<Response> {
    let svc = service(&state, &caller)?;
    let run = svc.cancel(&t).await.map_err(image_error)?;
    Ok((StatusCode::ACCEPTED, Json(run_view(&run))).into_response())
}

fn trigger_view(
    t: &str,
    name: &str,
    properties: slipway_core::images::trigger::TriggerProperties,
) -> ImageTemplateTrigger {
    ImageTemplateTrigger {
        id: format!("/slipway/imageTemplates/{t}/triggers/{name}"),
        name: name.to_string(),
        resource_type: "Microsoft.VirtualMachineImages/imageTemplates/triggers".to_string(),
        properties,
    }
}

/// Creates or replaces a `SourceImage` trigger: the template is rebuilt
/// when a run stores a newer version of its source (a gallery
/// definition's `versions/latest`, a managed image), or when the base-image
/// catalog gains a newer version of its `PlatformImage` (`latest`).
#[utoipa::path(put, path = "/imageTemplates/{t}/triggers/{name}", tag = "vmImages", params(("t" = String, Path, description = "Image template"), ("name" = String, Path, description = "Trigger")), request_body(content = Object, description = "`{\"properties\": {\"kind\": \"SourceImage\"}}`"), responses((status = "2XX", description = "The trigger", body = ImageTemplateTrigger), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn put_trigger(
    State(state): State<AppState>,
    caller: Caller,
    Path((t, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Response> {
    let svc = service(&state, &caller)?;
    let text = std::str::from_utf8(&body).map_err(|_| {
        ApiError::bad_request("InvalidRequestBody", "the trigger must be UTF-8 JSON")
    })?;
    let (new, props) = svc
        .put_trigger(&t, &name, text)
        .await
        .map_err(image_error)?;
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(trigger_view(&t, &name, props))).into_response())
}

/// Reads a trigger.
#[utoipa::path(get, path = "/imageTemplates/{t}/triggers/{name}", tag = "vmImages", params(("t" = String, Path, description = "Image template"), ("name" = String, Path, description = "Trigger")), responses((status = 200, description = "The trigger", body = ImageTemplateTrigger), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_trigger(
    State(state): State<AppState>,
    caller: Caller,
    Path((t, name)): Path<(String, String)>,
) -> ApiResult<Json<ImageTemplateTrigger>> {
    let svc = service(&state, &caller)?;
    let props = svc.trigger(&t, &name).await.map_err(image_error)?;
    Ok(Json(trigger_view(&t, &name, props)))
}

/// Deletes a trigger.
#[utoipa::path(delete, path = "/imageTemplates/{t}/triggers/{name}", tag = "vmImages", params(("t" = String, Path, description = "Image template"), ("name" = String, Path, description = "Trigger")), responses((status = 200, description = "Deleted"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn delete_trigger(
    State(state): State<AppState>,
    caller: Caller,
    Path((t, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let svc = service(&state, &caller)?;
    svc.delete_trigger(&t, &name).await.map_err(image_error)?;
    Ok(StatusCode::OK)
}

/// Lists a template's triggers.
#[utoipa::path(get, path = "/imageTemplates/{t}/triggers", tag = "vmImages", params(("t" = String, Path, description = "Image template")), responses((status = 200, description = "Triggers", body = Paged<ImageTemplateTrigger>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_triggers(
    State(state): State<AppState>,
    caller: Caller,
    Path(t): Path<String>,
) -> ApiResult<Json<Paged<ImageTemplateTrigger>>> {
    let svc = service(&state, &caller)?;
    let triggers = svc.triggers(&t).await.map_err(image_error)?;
    Ok(Json(Paged::all(
        triggers
            .into_iter()
            .map(|(name, p)| trigger_view(&t, &name, p))
            .collect(),
    )))
}

/// Lists a template's runs.
#[utoipa::path(get, path = "/imageTemplates/{t}/runs", tag = "vmImages", params(("t" = String, Path, description = "Image template")), responses((status = 200, description = "Runs", body = Paged<ImageRun>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(t): Path<String>,
) -> ApiResult<Json<Paged<ImageRun>>> {
    let svc = service(&state, &caller)?;
    let runs = svc.runs(&t).await.map_err(image_error)?;
    Ok(Json(Paged::all(runs.iter().map(run_view).collect())))
}

async fn run_of(state: &AppState, t: &str, r: &str) -> ApiResult<ImageRunRecord> {
    state
        .store
        .get_image_run(r)
        .await?
        .filter(|run| run.template == t)
        .ok_or_else(|| {
            ApiError::not_found(
                "NotFound",
                format!("run '{r}' of image template '{t}' was not found"),
            )
        })
}

/// Reads a run.
#[utoipa::path(get, path = "/imageTemplates/{t}/runs/{r}", tag = "vmImages", params(("t" = String, Path, description = "Image template"), ("r" = String, Path, description = "Run id")), responses((status = 200, description = "The run", body = ImageRun), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((t, r)): Path<(String, String)>,
) -> ApiResult<Json<ImageRun>> {
    service(&state, &caller)?;
    Ok(Json(run_view(&run_of(&state, &t, &r).await?)))
}

/// Reads or follows a run's customization log.
#[utoipa::path(get, path = "/imageTemplates/{t}/runs/{r}/log", tag = "vmImages", params(("t" = String, Path, description = "Image template"), ("r" = String, Path, description = "Run id"), LogQuery), responses((status = 200, description = "customization.log", body = String, content_type = "text/plain"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn run_log(
    State(state): State<AppState>,
    caller: Caller,
    Path((t, r)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Response> {
    let svc = service(&state, &caller)?;
    // State first: a final state read before the log means the log is complete.
    let run = run_of(&state, &t, &r).await?;
    let ended = logs::ended(state.store.clone(), logs::RunRecord::ImageRun(r.clone()));
    let src = logs::LogSource {
        path: svc.log_path(&r),
        status: ("x-slipway-run-status", run.run_state.as_str().to_string()),
        ended,
    };
    logs::respond(src, &q).await
}

fn output_view(t: &str, o: &Value) -> RunOutput {
    let name = o["name"].as_str().unwrap_or_default();
    RunOutput {
        name: name.to_string(),
        resource_type: "Microsoft.VirtualMachineImages/imageTemplates/runOutputs".to_string(),
        id: format!("/slipway/imageTemplates/{t}/runOutputs/{name}"),
        properties: o.clone(),
    }
}

/// Lists a template's run outputs.
#[utoipa::path(get, path = "/imageTemplates/{t}/runOutputs", tag = "vmImages", params(("t" = String, Path, description = "Image template")), responses((status = 200, description = "Run outputs", body = Paged<RunOutput>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_outputs(
    State(state): State<AppState>,
    caller: Caller,
    Path(t): Path<String>,
) -> ApiResult<Json<Paged<RunOutput>>> {
    let svc = service(&state, &caller)?;
    let outs = svc.run_outputs(&t).await.map_err(image_error)?;
    Ok(Json(Paged::all(
        outs.iter().map(|o| output_view(&t, o)).collect(),
    )))
}

/// Reads a run output.
#[utoipa::path(get, path = "/imageTemplates/{t}/runOutputs/{o}", tag = "vmImages", params(("t" = String, Path, description = "Image template"), ("o" = String, Path, description = "Run output")), responses((status = 200, description = "The run output", body = RunOutput), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn get_output(
    State(state): State<AppState>,
    caller: Caller,
    Path((t, o)): Path<(String, String)>,
) -> ApiResult<Json<RunOutput>> {
    let svc = service(&state, &caller)?;
    let outs = svc.run_outputs(&t).await.map_err(image_error)?;
    let out = outs
        .iter()
        .find(|x| x["name"] == o.as_str())
        .ok_or_else(|| {
            ApiError::not_found(
                "NotFound",
                format!("run output '{o}' of image template '{t}' was not found"),
            )
        })?;
    Ok(Json(output_view(&t, out)))
}

/// Downloads a run output's image file.
#[utoipa::path(get, path = "/imageTemplates/{t}/runOutputs/{o}/content", tag = "vmImages", params(("t" = String, Path, description = "Image template"), ("o" = String, Path, description = "Run output")), responses((status = 200, description = "The image file", body = Vec<u8>, content_type = "application/octet-stream"), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn output_content(
    State(state): State<AppState>,
    caller: Caller,
    Path((t, o)): Path<(String, String)>,
) -> ApiResult<Response> {
    let svc = service(&state, &caller)?;
    let path = svc.output_file(&t, &o).await.map_err(image_error)?;
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError::not_found("NotFound", format!("artifact {}: {e}", path.display()))
    })?;
    let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = len.to_string().parse() {
        headers.insert(header::CONTENT_LENGTH, v);
    }
    let body = Body::from_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
    Ok((StatusCode::OK, headers, body).into_response())
}

/// Uploads a file a template may name.
#[utoipa::path(put, path = "/vmImages/artifacts", tag = "vmImages", request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses((status = 201, description = "The uploaded artifact", body = UploadedArtifact), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn upload_artifact(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<Response> {
    service(&state, &caller)?;
    let digest = put_upload(
        &state,
        &body,
        slipway_vm_images::upload_key,
        "the artifact's bytes (e.g. a tar.gz)",
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(UploadedArtifact {
            uri: format!("upload:{digest}"),
            sha256: digest,
            size: body.len() as u64,
        }),
    )
        .into_response())
}

/// Lists stored VM images.
#[utoipa::path(get, path = "/vmImages", tag = "vmImages", responses((status = 200, description = "The image store", body = Paged<VmImage>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn list_images(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Paged<VmImage>>> {
    let svc = service(&state, &caller)?;
    Ok(Json(Paged::all(svc.images().await.map_err(image_error)?)))
}

/// Lists the platform images a template may start from.
#[utoipa::path(get, path = "/vmImages/platformImages", tag = "vmImages", responses((status = 200, description = "Platform images", body = Paged<PlatformImage>), (status = "default", description = "ADE `CloudError`", body = CloudError)))]
async fn platform_images(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<Paged<PlatformImage>>> {
    let svc = service(&state, &caller)?;
    let catalog = svc.base_images().clone();
    // Asking the mirror which suites it serves blocks.
    let (available, built) = tokio::task::spawn_blocking(move || {
        let available = catalog.available();
        let built: Vec<_> = slipway_vm_images::base::OFFERS
            .iter()
            .map(|o| catalog.versions(o.publisher, o.offer, o.sku))
            .collect();
        (available, built)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "BaseImageCatalog",
            e.to_string(),
        )
    })?;
    let mut out = Vec::new();
    for (o, vs) in slipway_vm_images::base::OFFERS.iter().zip(built) {
        let vs = vs.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "BaseImageCatalog",
                e.to_string(),
            )
        })?;
        out.push(PlatformImage {
            publisher: o.publisher.to_string(),
            offer: o.offer.to_string(),
            sku: o.sku.to_string(),
            hyper_v_generation: o.firmware.hyper_v_generation().to_string(),
            versions: vs.iter().map(|b| b.version.clone()).collect(),
            available: available.iter().any(|a| a == &o),
        });
    }
    Ok(Json(Paged::all(out)))
}
